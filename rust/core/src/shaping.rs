//! Reward transforms over candidate sets (algorithms.md §2–3), one set per row.
//!
//! Everything is computed in `f64`; only the shaped rewards handed back are `f32`.
//! The Stackelberg threshold is solved exactly: `F(m) = Σ p_i w_i(m) (r_i − m)` is
//! piecewise linear with breakpoints at the rewards, so after one sort the piece whose
//! ends bracket the sign change is found in a single walk and its linear equation solved.

use std::fmt;

use crate::error::{Error, Result};
use crate::topk::check_matrix;

/// The reward transforms, in the order of algorithms.md §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `r_i` unchanged.
    Raw,
    /// `(r_i − mean r) / max(std r, 1e-6)`, population std, unweighted.
    MeanStd,
    /// `B_eff · (r_i − min r) / (max r − min r)`, 0 where the range is 0.
    MinMax,
    /// `clip(r_i − min r, 0, cap)`.
    Cap,
    /// `B_eff · sigmoid(α (r_i − mean_p r))`: SRS with the probability-weighted mean.
    MeanSoft,
    /// `B_eff · sigmoid(α (r_i − m*))` with the Stackelberg threshold `m*`.
    Srs,
    /// `B_eff · 1[r_i ≥ m*]`.
    SrsHard,
}

/// Every scheme name, as [`Scheme::parse`] accepts them.
pub const SCHEMES: [&str; 7] = [
    "raw", "meanstd", "minmax", "cap", "meansoft", "srs", "srs_hard",
];

impl Scheme {
    /// The scheme called `name` (one of [`SCHEMES`]).
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "raw" => Self::Raw,
            "meanstd" => Self::MeanStd,
            "minmax" => Self::MinMax,
            "cap" => Self::Cap,
            "meansoft" => Self::MeanSoft,
            "srs" => Self::Srs,
            "srs_hard" => Self::SrsHard,
            _ => {
                return Err(Error::Parameter {
                    arg: "scheme",
                    message: format!("unknown scheme {name:?}; expected one of {SCHEMES:?}"),
                })
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::MeanStd => "meanstd",
            Self::MinMax => "minmax",
            Self::Cap => "cap",
            Self::MeanSoft => "meansoft",
            Self::Srs => "srs",
            Self::SrsHard => "srs_hard",
        }
    }

    /// Whether the candidate probabilities change the result.
    pub fn uses_probs(self) -> bool {
        matches!(self, Self::MeanSoft | Self::Srs | Self::SrsHard)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The knobs of the transforms (algorithms.md §2.3). The default is the token-level ARGS
/// setting; `max_weight: None, max_exponent: Some(2.0), spread_ratio: 2.0` is the
/// sequence-level CD one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapeParams {
    /// `B`, the largest reward the provider may hand over.
    pub bound: f64,
    /// `β`, the KL strength of the SRS weight `γ = e^{B_eff/β}`.
    pub beta: f64,
    /// `α`, the sigmoid sharpness of the soft schemes.
    pub alpha: f64,
    /// `ρ` in `B_eff = min(B, ρ · (max r − min r))`.
    pub spread_ratio: f64,
    /// Cap on the SRS weight itself: `γ = min(γ, max_weight)` (ARGS uses 2).
    pub max_weight: Option<f64>,
    /// Cap on the exponent: `γ = e^{min(B/β, max_exponent)}` (CD uses 2).
    pub max_exponent: Option<f64>,
    /// Upper clip of the `cap` scheme.
    pub cap: f64,
}

impl Default for ShapeParams {
    fn default() -> Self {
        Self {
            bound: 12.0,
            beta: 2.0,
            alpha: 1.5,
            spread_ratio: 1.01,
            max_weight: Some(2.0),
            max_exponent: None,
            cap: 1.0,
        }
    }
}

fn knob(arg: &'static str, value: f64, ok: bool, rule: &str) -> Result<()> {
    if value.is_finite() && ok {
        Ok(())
    } else {
        Err(Error::Parameter {
            arg,
            message: format!("must be finite and {rule}, got {value}"),
        })
    }
}

impl ShapeParams {
    /// Reject negative, zero-where-it-divides, NaN and infinite knobs.
    pub fn validate(&self) -> Result<()> {
        knob("bound", self.bound, self.bound >= 0.0, ">= 0")?;
        knob("beta", self.beta, self.beta > 0.0, "> 0")?;
        knob("alpha", self.alpha, self.alpha >= 0.0, ">= 0")?;
        knob(
            "spread_ratio",
            self.spread_ratio,
            self.spread_ratio >= 0.0,
            ">= 0",
        )?;
        if let Some(w) = self.max_weight {
            // γ < 1 would reward the low candidates more than the high ones.
            knob("max_weight", w, w >= 1.0, ">= 1 (or None)")?;
        }
        if let Some(e) = self.max_exponent {
            knob("max_exponent", e, e >= 0.0, ">= 0 (or None)")?;
        }
        knob("cap", self.cap, self.cap >= 0.0, ">= 0")
    }

    /// `B_eff = min(B, ρ · range)`.
    pub fn effective_bound(&self, range: f64) -> f64 {
        self.bound.min(self.spread_ratio * range)
    }

    /// The SRS weight `γ ≥ 1` for a set whose effective bound is `b_eff`, kept finite so
    /// the threshold solve never meets `inf · 0`.
    pub fn srs_weight(&self, b_eff: f64) -> f64 {
        let exponent = match self.max_exponent {
            Some(cap) => (self.bound / self.beta).min(cap),
            None => b_eff / self.beta,
        };
        let mut gamma = exponent.exp();
        if let Some(cap) = self.max_weight {
            gamma = gamma.min(cap);
        }
        gamma.clamp(1.0, f64::MAX)
    }
}

/// One value for every row, or a value per row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PerRow<'a> {
    All(f64),
    Each(&'a [f64]),
}

impl PerRow<'_> {
    /// Check the length of a per-row array and every value with `ok`.
    pub(crate) fn validate(
        &self,
        arg: &'static str,
        rows: usize,
        ok: impl Fn(f64) -> bool,
        rule: &str,
    ) -> Result<()> {
        match *self {
            PerRow::All(value) => knob(arg, value, ok(value), rule),
            PerRow::Each(values) => {
                if values.len() != rows {
                    return Err(Error::Shape {
                        arg,
                        message: format!("has {} values for {rows} rows", values.len()),
                    });
                }
                for (r, &value) in values.iter().enumerate() {
                    if !(value.is_finite() && ok(value)) {
                        return Err(Error::Parameter {
                            arg,
                            message: format!("must be finite and {rule}, got {value} at row {r}"),
                        });
                    }
                }
                Ok(())
            }
        }
    }

    #[inline]
    pub(crate) fn get(&self, row: usize) -> f64 {
        match *self {
            PerRow::All(value) => value,
            PerRow::Each(values) => values[row],
        }
    }
}

/// Fail on the first NaN or infinity of a row.
pub(crate) fn check_finite_row(arg: &'static str, row_index: usize, row: &[f32]) -> Result<()> {
    match row.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(col) => Err(Error::NonFinite {
            arg,
            row: row_index,
            col,
            value: row[col],
        }),
    }
}

/// Validate one row of candidate probabilities (finite, `≥ 0`, positive sum) and copy it
/// to `out` in `f64`. Normalising is left out: every use divides by the sum anyway.
pub(crate) fn load_probs_row(row_index: usize, row: &[f32], out: &mut Vec<f64>) -> Result<()> {
    check_finite_row("probs", row_index, row)?;
    out.clear();
    let mut sum = 0.0;
    for (col, &p) in row.iter().enumerate() {
        if p < 0.0 {
            return Err(Error::Parameter {
                arg: "probs",
                message: format!("must be >= 0, got {p} at row {row_index}, column {col}"),
            });
        }
        sum += f64::from(p);
        out.push(f64::from(p));
    }
    if sum > 0.0 {
        Ok(())
    } else {
        Err(Error::Parameter {
            arg: "probs",
            message: format!("row {row_index} sums to 0"),
        })
    }
}

/// Reusable buffers of the per-row work, so a batch allocates once.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// `(r_i − min r, p_i)` sorted by reward.
    sorted: Vec<(f64, f64)>,
    /// Suffix sums `(Σ p, Σ p·d)` over `sorted[i..]`.
    suffix: Vec<(f64, f64)>,
    /// The row's shaped rewards in `f64`.
    pub(crate) shaped: Vec<f64>,
}

/// Smallest and largest value of a non-empty finite row, in `f64`.
fn min_max(row: &[f32]) -> (f64, f64) {
    let (mut lo, mut hi) = (row[0], row[0]);
    for &x in &row[1..] {
        if x < lo {
            lo = x;
        }
        if x > hi {
            hi = x;
        }
    }
    (f64::from(lo), f64::from(hi))
}

/// The root `m*` of `F(m) = Σ p_i w_i(m) (r_i − m)`, `w_i = γ` where `r_i ≥ m` else 1, for
/// one finite, non-empty row. `probs: None` is uniform. `inv_gamma = 1/γ ∈ (0, 1]`.
///
/// Rewards are shifted by their minimum (so every `d_i ≥ 0` and sums of `p·d` do not
/// cancel) and `F` is multiplied by `1/γ`, which keeps the coefficients bounded for any γ:
/// on the piece `m ∈ (v_{j−1}, v_j]` (consecutive distinct rewards),
/// `F(m)/γ = (Q_L/γ + Q_U) − (P_L/γ + P_U) · m` with `L = {d < v_j}`, `U = {d ≥ v_j}`,
/// `P = Σ p`, `Q = Σ p·d`. F is continuous and strictly decreasing, so the root lies on the
/// first piece whose right end has `F(v_j) ≤ 0`.
pub(crate) fn threshold_row(
    rewards: &[f32],
    probs: Option<&[f64]>,
    inv_gamma: f64,
    scratch: &mut Scratch,
) -> f64 {
    let (lo, hi) = min_max(rewards);
    if lo == hi {
        return lo;
    }
    let sorted = &mut scratch.sorted;
    sorted.clear();
    match probs {
        Some(p) => sorted.extend(rewards.iter().zip(p).map(|(&r, &p)| (f64::from(r) - lo, p))),
        None => sorted.extend(rewards.iter().map(|&r| (f64::from(r) - lo, 1.0))),
    }
    sorted.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));

    // Suffix sums are accumulated from the top so the U sums never come from a difference.
    let suffix = &mut scratch.suffix;
    suffix.clear();
    suffix.resize(sorted.len(), (0.0, 0.0));
    let (mut pu, mut qu) = (0.0, 0.0);
    for i in (0..sorted.len()).rev() {
        let (d, p) = sorted[i];
        pu += p;
        qu += p * d;
        suffix[i] = (pu, qu);
    }

    let top = sorted[sorted.len() - 1].0;
    let (mut pl, mut ql) = (0.0, 0.0);
    let mut previous = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let v = sorted[i].0;
        let (pu, qu) = suffix[i];
        let num = inv_gamma * ql + qu;
        let den = inv_gamma * pl + pu;
        if num - den * v <= 0.0 || v == top {
            // `previous ≤ root ≤ v` in exact arithmetic; the clamp absorbs rounding.
            let root = if den > 0.0 { num / den } else { v };
            return lo + root.clamp(previous, v);
        }
        // Move the whole group of rewards equal to v from U to L.
        while i < sorted.len() && sorted[i].0 == v {
            pl += sorted[i].1;
            ql += sorted[i].1 * sorted[i].0;
            i += 1;
        }
        previous = v;
    }
    // Unreachable: the last group always returns above.
    hi
}

/// The probability-weighted mean of a finite row (`probs: None` is uniform).
fn weighted_mean(rewards: &[f32], probs: Option<&[f64]>, lo: f64) -> f64 {
    let (mut sum_p, mut sum_pd) = (0.0, 0.0);
    match probs {
        Some(p) => {
            for (&r, &p) in rewards.iter().zip(p) {
                sum_p += p;
                sum_pd += p * (f64::from(r) - lo);
            }
        }
        None => {
            for &r in rewards {
                sum_pd += f64::from(r) - lo;
            }
            sum_p = rewards.len() as f64;
        }
    }
    lo + sum_pd / sum_p
}

/// `1 / (1 + e^{−x})` without overflow for either sign of `x`.
#[inline]
pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Shape one finite, non-empty row into `scratch.shaped`. `probs` (already validated) are
/// read only by the schemes that use them.
pub(crate) fn shape_row(
    scheme: Scheme,
    params: &ShapeParams,
    rewards: &[f32],
    probs: Option<&[f64]>,
    scratch: &mut Scratch,
) {
    let (lo, hi) = min_max(rewards);
    let range = hi - lo;
    let b_eff = params.effective_bound(range);
    let mut shaped = std::mem::take(&mut scratch.shaped);
    shaped.clear();
    let values = rewards.iter().map(|&r| f64::from(r));
    match scheme {
        Scheme::Raw => shaped.extend(values),
        Scheme::MeanStd => {
            let n = rewards.len() as f64;
            let mean = lo + rewards.iter().map(|&r| f64::from(r) - lo).sum::<f64>() / n;
            let var = rewards
                .iter()
                .map(|&r| (f64::from(r) - mean).powi(2))
                .sum::<f64>()
                / n;
            let scale = var.sqrt().max(1e-6);
            shaped.extend(values.map(|r| (r - mean) / scale));
        }
        Scheme::MinMax => {
            if range > 0.0 {
                shaped.extend(values.map(|r| b_eff * (r - lo) / range));
            } else {
                shaped.resize(rewards.len(), 0.0);
            }
        }
        Scheme::Cap => shaped.extend(values.map(|r| (r - lo).clamp(0.0, params.cap))),
        Scheme::MeanSoft | Scheme::Srs | Scheme::SrsHard => {
            let threshold = match scheme {
                Scheme::MeanSoft => weighted_mean(rewards, probs, lo),
                _ => threshold_row(rewards, probs, 1.0 / params.srs_weight(b_eff), scratch),
            };
            if scheme == Scheme::SrsHard {
                shaped.extend(values.map(|r| if r >= threshold { b_eff } else { 0.0 }));
            } else {
                let alpha = params.alpha;
                shaped.extend(values.map(|r| b_eff * sigmoid(alpha * (r - threshold))));
            }
        }
    }
    scratch.shaped = shaped;
}

/// The Stackelberg threshold `m*` of every row of the `rows × cols` matrix `rewards`.
///
/// `probs` (same shape, `≥ 0`, positive row sums; renormalised per row) default to
/// uniform; `weight` is γ ≥ 1, for all rows or one per row.
pub fn stackelberg_threshold(
    rewards: &[f32],
    probs: Option<&[f32]>,
    rows: usize,
    cols: usize,
    weight: PerRow<'_>,
) -> Result<Vec<f64>> {
    check_matrix("rewards", rewards.len(), rows, cols)?;
    if let Some(p) = probs {
        check_probs_shape(p, rows, cols)?;
    }
    weight.validate("weight", rows, |w| w >= 1.0, ">= 1")?;
    let mut scratch = Scratch::default();
    let mut probs_row = Vec::with_capacity(cols);
    let mut out = Vec::with_capacity(rows);
    for (r, row) in rewards.chunks_exact(cols).enumerate() {
        check_finite_row("rewards", r, row)?;
        let p = match probs {
            Some(p) => {
                load_probs_row(r, &p[r * cols..(r + 1) * cols], &mut probs_row)?;
                Some(probs_row.as_slice())
            }
            None => None,
        };
        out.push(threshold_row(row, p, 1.0 / weight.get(r), &mut scratch));
    }
    Ok(out)
}

pub(crate) fn check_probs_shape(probs: &[f32], rows: usize, cols: usize) -> Result<()> {
    if probs.len() != rows * cols {
        return Err(Error::Shape {
            arg: "probs",
            message: format!(
                "must have the shape of rewards ({rows}, {cols}), got {} values",
                probs.len()
            ),
        });
    }
    Ok(())
}

/// Shape every row of the `rows × cols` matrix `rewards` with `scheme`.
pub fn shape_rewards(
    rewards: &[f32],
    probs: Option<&[f32]>,
    rows: usize,
    cols: usize,
    scheme: Scheme,
    params: &ShapeParams,
) -> Result<Vec<f32>> {
    check_matrix("rewards", rewards.len(), rows, cols)?;
    if let Some(p) = probs {
        check_probs_shape(p, rows, cols)?;
    }
    params.validate()?;
    let mut scratch = Scratch::default();
    let mut probs_row = Vec::with_capacity(cols);
    let mut out = Vec::with_capacity(rows * cols);
    for (r, row) in rewards.chunks_exact(cols).enumerate() {
        check_finite_row("rewards", r, row)?;
        let p = match probs {
            Some(p) => {
                load_probs_row(r, &p[r * cols..(r + 1) * cols], &mut probs_row)?;
                Some(probs_row.as_slice())
            }
            None => None,
        };
        shape_row(scheme, params, row, p, &mut scratch);
        out.extend(scratch.shaped.iter().map(|&s| s as f32));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(rewards: &[f32], probs: &[f64], gamma: f64, m: f64) -> f64 {
        rewards
            .iter()
            .zip(probs)
            .map(|(&r, &p)| {
                let r = f64::from(r);
                p * if r >= m { gamma } else { 1.0 } * (r - m)
            })
            .sum()
    }

    #[test]
    fn root_zeroes_f_on_random_rows() {
        let mut rng = crate::rng::SplitMix64::new(11);
        let mut scratch = Scratch::default();
        for n in [2usize, 3, 7, 10, 64] {
            for gamma in [1.0, 1.5, 2.0, 20.0, 1e6] {
                let rewards: Vec<f32> = (0..n)
                    .map(|_| (rng.next_f64() * 10.0 - 5.0) as f32)
                    .collect();
                let probs: Vec<f64> = (0..n).map(|_| rng.next_f64()).collect();
                let m = threshold_row(&rewards, Some(&probs), 1.0 / gamma, &mut scratch);
                let value = f(&rewards, &probs, gamma, m);
                assert!(value.abs() < 1e-9 * gamma, "n {n} gamma {gamma} F {value}");
            }
        }
    }

    #[test]
    fn weight_one_gives_the_weighted_mean() {
        let mut scratch = Scratch::default();
        let m = threshold_row(
            &[1.0, 2.0, 4.0],
            Some(&[0.5, 0.25, 0.25]),
            1.0,
            &mut scratch,
        );
        assert!((m - 2.0).abs() < 1e-12);
    }

    #[test]
    fn scheme_names_round_trip() {
        for name in SCHEMES {
            assert_eq!(Scheme::parse(name).unwrap().name(), name);
        }
        assert!(matches!(
            Scheme::parse("bogus"),
            Err(Error::Parameter { arg: "scheme", .. })
        ));
    }

    #[test]
    fn sigmoid_is_stable_at_the_extremes() {
        assert_eq!(sigmoid(1e4), 1.0);
        assert_eq!(sigmoid(-1e4), 0.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
    }
}
