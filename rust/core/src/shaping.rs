//! Reward transforms over candidate sets (docs/algorithms.md §2–3), one set per row.
//!
//! Everything is computed in `f64` but for the sigmoids and the softmax weights, which are
//! taken in `f32`, the precision of the shaped rewards handed back.
//!
//! The Stackelberg threshold is solved exactly: `F(m) = Σ p_i w_i(m) (r_i − m)` is
//! piecewise linear with breakpoints at the rewards, so it suffices to find the piece on
//! which F changes sign and solve its linear equation. Long rows sort once and walk the
//! pieces; short rows (token-level candidate sets) take a few exact Newton steps instead.

use crate::error::{require_finite, Error, Result};
use crate::topk::check_matrix;

/// Declares `Scheme` with its variants, their names and `Scheme::ALL` from one list, so a
/// variant can be neither nameless nor missing from `ALL`.
macro_rules! schemes {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The reward transforms, in the order of docs/algorithms.md §3.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Scheme {
            $($(#[$doc])* $variant,)*
        }

        impl Scheme {
            /// Every scheme, in the order of docs/algorithms.md §3.
            pub const ALL: [Scheme; [$($name),*].len()] = [$(Self::$variant),*];

            /// The scheme's name: the one place the names are written.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

schemes! {
    /// `r_i` unchanged.
    Raw => "raw",
    /// `(r_i − mean r) / max(std r, 1e-6)`, population std, unweighted.
    MeanStd => "meanstd",
    /// `B_eff · (r_i − min r) / (max r − min r)`, 0 where the range is 0.
    MinMax => "minmax",
    /// `clip(r_i − min r, 0, cap)`.
    Cap => "cap",
    /// `B_eff · sigmoid(α (r_i − mean_p r))`: SRS with the probability-weighted mean.
    MeanSoft => "meansoft",
    /// `B_eff · sigmoid(α (r_i − m*))` with the Stackelberg threshold `m*`.
    Srs => "srs",
    /// `B_eff · 1[r_i ≥ m*]`.
    SrsHard => "srs_hard",
}

impl Scheme {
    /// The scheme called `name` (one of [`SCHEMES`]).
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|scheme| scheme.name() == name)
            .ok_or_else(|| Error::Parameter {
                arg: "shaping",
                message: format!("unknown scheme {name:?}; expected one of {SCHEMES:?}"),
            })
    }

    /// Whether the candidate probabilities change the result.
    pub fn uses_probs(self) -> bool {
        matches!(self, Self::MeanSoft | Self::Srs | Self::SrsHard)
    }
}

/// Every scheme name, in the order of [`Scheme::ALL`], as [`Scheme::parse`] accepts them.
pub const SCHEMES: [&str; Scheme::ALL.len()] = {
    let mut names = [""; Scheme::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Scheme::ALL[i].name();
        i += 1;
    }
    names
};

/// The knobs of the transforms (docs/algorithms.md §2.3). The default is the token-level ARGS
/// setting; [`ShapeParams::sequence_level`] gives the sequence-level one (CD targets,
/// best-of-N samples, segments).
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

    /// The same knobs with the sequence-level caps: `B_eff = min(B, 2 · range)`,
    /// `γ = e^{min(B/β, 2)}`, no cap on γ itself (docs/algorithms.md §2.3).
    pub fn sequence_level(self) -> Self {
        Self {
            spread_ratio: 2.0,
            max_weight: None,
            max_exponent: Some(2.0),
            ..self
        }
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
        // The crate's own `exp`: faster than libm, and the same on every platform.
        let mut gamma = exp(exponent);
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
    require_finite(arg, row, |col| (row_index, col))
}

/// Validate one row of candidate probabilities (finite, `≥ 0`, positive sum) and copy it
/// to `out` in `f64`. Normalising is left out: every use divides by the sum anyway.
pub(crate) fn load_probs_row(row_index: usize, row: &[f32], out: &mut Vec<f64>) -> Result<()> {
    check_probs_row(row_index, row)?;
    out.clear();
    out.extend(row.iter().map(|&p| f64::from(p)));
    Ok(())
}

/// Validate one row of candidate probabilities: finite, `≥ 0`, positive sum.
pub(crate) fn check_probs_row(row_index: usize, row: &[f32]) -> Result<()> {
    check_finite_row("probs", row_index, row)?;
    let mut sum = 0.0;
    for (col, &p) in row.iter().enumerate() {
        if p < 0.0 {
            return Err(Error::Parameter {
                arg: "probs",
                message: format!("must be >= 0, got {p} at row {row_index}, column {col}"),
            });
        }
        sum += f64::from(p);
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
    /// `r_i − min r`.
    shifted: Vec<f64>,
    /// Uniform probabilities when none are given.
    ones: Vec<f64>,
    /// `(r_i − min r, p_i)` sorted by reward.
    sorted: Vec<(f64, f64)>,
    /// Suffix sums `(Σ p, Σ p·d)` over `sorted[i..]`.
    suffix: Vec<(f64, f64)>,
}

/// Smallest and largest value of a non-empty finite row, in `f64`.
fn min_max(row: &[f32]) -> (f64, f64) {
    // Selects (minss / maxss), not branches: a new extreme is data-dependent.
    let lo = row
        .iter()
        .fold(row[0], |lo, &x| if x < lo { x } else { lo });
    let hi = row
        .iter()
        .fold(row[0], |hi, &x| if x > hi { x } else { hi });
    (f64::from(lo), f64::from(hi))
}

/// Rows up to this length find their piece of `F` without sorting (see
/// [`root_by_newton`]), which is faster for the short rows of token-level decoding.
const SMALL_ROW: usize = 16;

/// The root `m*` of `F(m) = Σ p_i w_i(m) (r_i − m)`, `w_i = γ` where `r_i ≥ m` else 1, for
/// one finite, non-empty row. `probs: None` is uniform. `inv_gamma = 1/γ ∈ (0, 1]`.
///
/// Rewards are shifted by their minimum (so every `d_i ≥ 0` and sums of `p·d` do not
/// cancel) and `F` is multiplied by `1/γ`, which keeps the coefficients bounded for any γ:
/// on the piece `m ∈ (a, b]` between consecutive distinct rewards,
/// `G(m) = F(m)/γ = (Q_L/γ + Q_U) − (P_L/γ + P_U) · m` with `L = {d < b}`, `U = {d ≥ b}`,
/// `P = Σ p`, `Q = Σ p·d`. F is continuous and strictly decreasing, so the root lies on the
/// piece whose right end `b` is the smallest reward with `F(b) ≤ 0`.
pub(crate) fn threshold_row(
    rewards: &[f32],
    probs: Option<&[f64]>,
    inv_gamma: f64,
    scratch: &mut Scratch,
) -> f64 {
    let (lo, hi) = min_max(rewards);
    threshold_row_within(rewards, probs, inv_gamma, scratch, lo, hi)
}

/// [`threshold_row`] for a row whose smallest and largest rewards are known.
#[inline(always)]
fn threshold_row_within(
    rewards: &[f32],
    probs: Option<&[f64]>,
    inv_gamma: f64,
    scratch: &mut Scratch,
    lo: f64,
    hi: f64,
) -> f64 {
    if lo == hi {
        return lo;
    }
    let d = &mut scratch.shifted;
    d.clear();
    d.extend(rewards.iter().map(|&r| f64::from(r) - lo));
    let p = match probs {
        Some(p) => p,
        None => {
            scratch.ones.clear();
            scratch.ones.resize(rewards.len(), 1.0);
            &scratch.ones
        }
    };
    let root = if rewards.len() <= SMALL_ROW {
        root_by_newton(d, p, inv_gamma)
    } else {
        root_by_sorting(d, p, inv_gamma, &mut scratch.sorted, &mut scratch.suffix)
    };
    lo + root
}

/// Small rows: Newton's method from the smallest reward, which is exact here. `G` is
/// convex (its slope `−(P_U + P_L/γ)` rises as rewards leave `U`) and decreasing, so from
/// the left each Newton step lands at or before the root, and every step that does not
/// finish passes at least one reward: at most n steps, usually two or three. A step uses
/// the line of the piece `(a, b]` holding the current point; if that line's root is
/// `≤ b`, it is the root. Each step is one short pass, and no sort: measured faster than
/// sorting for the rows of token-level decoding.
#[inline(always)]
fn root_by_newton(d: &[f64], p: &[f64], inv_gamma: f64) -> f64 {
    newton_steps(d, p, inv_gamma).0
}

/// [`root_by_newton`] and the number of steps it took.
#[inline(always)]
fn newton_steps(d: &[f64], p: &[f64], inv_gamma: f64) -> (f64, usize) {
    let top = d.iter().fold(0.0, |m: f64, &x| if x > m { x } else { m });
    let (mut total_p, mut total_q) = (0.0, 0.0);
    for (&d, &p) in d.iter().zip(p) {
        total_p += p;
        total_q += p * d;
    }
    // The first step, from the smallest reward (all rewards in U), lands on the mean.
    let mut m = total_q / total_p;
    if m <= 0.0 {
        return (0.0, 1);
    }
    for step in 2..=d.len() + 1 {
        // Only U's sums are accumulated; L's are the totals minus them. The difference
        // may cancel when L is nearly empty, but then `P_U` dominates the denominator and
        // `Q_U` the numerator, so the root keeps its precision.
        let (mut pu, mut qu) = (0.0, 0.0);
        let mut b = f64::INFINITY;
        for (&d, &p) in d.iter().zip(p) {
            let upper = d >= m;
            let pu_i = if upper { p } else { 0.0 };
            pu += pu_i;
            qu += pu_i * d;
            let candidate = if upper { d } else { f64::INFINITY };
            b = if candidate < b { candidate } else { b };
        }
        let (pl, ql) = (total_p - pu, total_q - qu);
        let den = inv_gamma * pl + pu;
        let next = if den > 0.0 {
            ((inv_gamma * ql + qu) / den).min(top)
        } else {
            m
        };
        if next <= b {
            // Rounding can put `next` a hair below `m`; the root is never left of it.
            return (if next > m { next } else { m }, step);
        }
        m = next;
    }
    // Unreachable: every step that does not return passes a reward.
    (m, d.len() + 2)
}

/// Larger rows: sort once and walk the pieces from the bottom with running sums.
fn root_by_sorting(
    d: &[f64],
    p: &[f64],
    inv_gamma: f64,
    sorted: &mut Vec<(f64, f64)>,
    suffix: &mut Vec<(f64, f64)>,
) -> f64 {
    sorted.clear();
    sorted.extend(d.iter().copied().zip(p.iter().copied()));
    sorted.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));

    // Suffix sums are accumulated from the top so the U sums never come from a difference.
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
            return root.clamp(previous, v);
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
    top
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

/// `e^x` in plain arithmetic, so a loop over it vectorises (a libm call does not) and the
/// result is the same bit for bit on every platform (libms differ in the last place, which
/// could flip a seeded draw). Relative error below 1e-12 on `[-708, 709]`; below -708
/// (where the true value is subnormal or zero, and `-inf`) it returns exactly 0, above 709
/// it saturates at `e^709` (the SRS weight it feeds is capped far below). Not for NaN.
///
/// Cody-Waite reduction `x = n ln2 + r`, `|r| ≤ ln2 / 2`, then the Taylor polynomial of
/// degree 10 (truncation error 2.2e-13), times `2^n` built from its bits. The results go
/// into float32 scores and probabilities, for which this is far more than enough.
#[inline(always)]
pub(crate) fn exp(x: f64) -> f64 {
    const LOG2_E: f64 = std::f64::consts::LOG2_E;
    // fdlibm's split of ln 2: `n * LN2_HI` is exact for |n| < 2^11.
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // Adding 1.5 * 2^52 rounds to an integer, which the low bits of the sum then hold
    // (no libm `round`, no float-to-int conversion: both would stop vectorisation).
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let underflow = x < -708.0;
    let x = x.clamp(-708.0, 709.0);
    let t = x * LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Estrin's scheme: the same polynomial as Horner's rule, but four multiply-adds deep
    // instead of ten, so consecutive calls overlap in the pipeline.
    const C: [f64; 11] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
    ];
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let pair = |i: usize| C[i] + C[i + 1] * r;
    let low = (pair(0) + pair(2) * r2) + (pair(4) + pair(6) * r2) * r4;
    let high = pair(8) + C[10] * r2;
    let poly = low + high * r8;
    // n is in [-1022, 1023]: `2^(n - 1)` has the biased exponent `n + 1022`, always normal;
    // the factor 2 restores it.
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let half_scale = f64::from_bits(n_bits.wrapping_add(1022) << 52);
    let value = poly * half_scale * 2.0;
    if underflow {
        0.0
    } else {
        value
    }
}

/// `e^x` in float32, like [`exp`] but four lanes to an SSE2 vector and half the
/// polynomial: for the soft schemes' sigmoid and the token-level softmax, whose results
/// end up in float32 anyway. Relative error below 2e-7 on `[-86, 88]`; below -86 (and at
/// `-inf`) exactly 0, above 88 saturates at `e^88`. Not for NaN.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // Cephes' split of ln 2 for float32: `n * LN2_HI` is exact for the n that occur here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low bits of the sum.
    const ROUND: f32 = 12_582_912.0;
    let underflow = x < -86.0;
    let x = x.clamp(-86.0, 88.0);
    let t = x * LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor to degree 7 (truncation error 5e-9 for |r| <= ln2 / 2), by Estrin's scheme.
    let r2 = r * r;
    let r4 = r2 * r2;
    let low = (1.0 + r) + (0.5 + r * (1.0 / 6.0)) * r2;
    let high = (1.0 / 24.0 + r * (1.0 / 120.0)) + (1.0 / 720.0 + r * (1.0 / 5_040.0)) * r2;
    let poly = low + high * r4;
    // n is in [-124, 127]: `2^(n - 1)` has the biased exponent `n + 126`, always normal.
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let value = poly * f32::from_bits(n_bits.wrapping_add(126) << 23) * 2.0;
    if underflow {
        0.0
    } else {
        value
    }
}

/// `1 / (1 + e^{−x})` in float32, absolute error below 1e-7, for either sign of `x`.
#[inline(always)]
pub(crate) fn sigmoid_f32(x: f32) -> f32 {
    let e = exp_f32(-x.abs());
    // `σ(|x|) − 1/2`, signed like x: no branch on the sign, which would mispredict.
    let half_spread = 0.5 - e / (1.0 + e);
    0.5 + half_spread.copysign(x)
}

/// Shape one finite, non-empty row into `out`. `probs` (already validated) are read only
/// by the schemes that use them.
///
/// The soft schemes leave their work half done: `out` gets the sigmoid's argument
/// `α (r_i − threshold)` and the return value is `Some(B_eff)`; [`shape_rows`] finishes
/// them with one pass of sigmoids over all rows at once, which vectorises far better than
/// ten at a time.
fn shape_row(
    scheme: Scheme,
    params: &ShapeParams,
    rewards: &[f32],
    probs: Option<&[f64]>,
    scratch: &mut Scratch,
    out: &mut [f32],
) -> Option<f64> {
    let (lo, hi) = min_max(rewards);
    let range = hi - lo;
    let b_eff = params.effective_bound(range);
    match scheme {
        Scheme::Raw => write_each(out, rewards, |r| r),
        Scheme::MeanStd => {
            let n = rewards.len() as f64;
            let mean = lo + rewards.iter().map(|&r| f64::from(r) - lo).sum::<f64>() / n;
            let var = rewards
                .iter()
                .map(|&r| (f64::from(r) - mean).powi(2))
                .sum::<f64>()
                / n;
            let scale = var.sqrt().max(1e-6);
            write_each(out, rewards, |r| (r - mean) / scale);
        }
        Scheme::MinMax if range > 0.0 => write_each(out, rewards, |r| b_eff * (r - lo) / range),
        Scheme::MinMax => write_each(out, rewards, |_| 0.0),
        Scheme::Cap => write_each(out, rewards, |r| (r - lo).clamp(0.0, params.cap)),
        Scheme::SrsHard => {
            let gamma = params.srs_weight(b_eff);
            let threshold = threshold_row_within(rewards, probs, 1.0 / gamma, scratch, lo, hi);
            write_each(out, rewards, |r| if r >= threshold { b_eff } else { 0.0 });
        }
        Scheme::MeanSoft | Scheme::Srs => {
            let threshold = if scheme == Scheme::MeanSoft {
                weighted_mean(rewards, probs, lo)
            } else {
                let gamma = params.srs_weight(b_eff);
                threshold_row_within(rewards, probs, 1.0 / gamma, scratch, lo, hi)
            };
            // The distance to the threshold in float64 (rewards may be huge and close);
            // the sigmoid of it is taken in float32, the precision of the result.
            let alpha = params.alpha;
            for (o, &r) in out.iter_mut().zip(rewards) {
                *o = (alpha * (f64::from(r) - threshold)) as f32;
            }
            return Some(b_eff);
        }
    }
    None
}

/// `out[i] = f(rewards[i])`, computed in float64.
#[inline(always)]
fn write_each(out: &mut [f32], rewards: &[f32], f: impl Fn(f64) -> f64) {
    for (o, &r) in out.iter_mut().zip(rewards) {
        *o = f(f64::from(r)) as f32;
    }
}

/// Shape every row of a validated `rows × cols` matrix (finite rewards; probabilities, if
/// any, checked by [`check_probs_row`]).
pub(crate) fn shape_rows(
    scheme: Scheme,
    params: &ShapeParams,
    rewards: &[f32],
    probs: Option<&[f32]>,
    cols: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; rewards.len()];
    let mut scratch = Scratch::default();
    let mut probs_row = Vec::with_capacity(cols);
    let mut soft_rows = Vec::new();
    for (r, (row, out_row)) in rewards
        .chunks_exact(cols)
        .zip(out.chunks_exact_mut(cols))
        .enumerate()
    {
        let p = probs.map(|all| {
            probs_row.clear();
            probs_row.extend(all[r * cols..(r + 1) * cols].iter().map(|&p| f64::from(p)));
            probs_row.as_slice()
        });
        if let Some(b_eff) = shape_row(scheme, params, row, p, &mut scratch, out_row) {
            soft_rows.push(b_eff);
        }
    }
    if !soft_rows.is_empty() {
        for x in out.iter_mut() {
            *x = sigmoid_f32(*x);
        }
        for (row, &b_eff) in out.chunks_exact_mut(cols).zip(&soft_rows) {
            for x in row {
                *x = (b_eff * f64::from(*x)) as f32;
            }
        }
    }
    out
}

/// The Stackelberg threshold `m*` of every row of the `rows × cols` matrix `rewards`.
///
/// `probs` (same shape, `≥ 0`, positive row sums; renormalised per row) default to
/// uniform; `gamma` is γ ≥ 1, for all rows or one per row.
pub fn stackelberg_threshold(
    rewards: &[f32],
    probs: Option<&[f32]>,
    rows: usize,
    cols: usize,
    gamma: PerRow<'_>,
) -> Result<Vec<f64>> {
    check_matrix("rewards", rewards.len(), rows, cols)?;
    if let Some(p) = probs {
        check_probs_shape(p, rows, cols)?;
    }
    gamma.validate("gamma", rows, |w| w >= 1.0, ">= 1")?;
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
        out.push(threshold_row(row, p, 1.0 / gamma.get(r), &mut scratch));
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
    for (r, row) in rewards.chunks_exact(cols).enumerate() {
        check_finite_row("rewards", r, row)?;
        if let Some(p) = probs {
            check_probs_row(r, &p[r * cols..(r + 1) * cols])?;
        }
    }
    Ok(shape_rows(scheme, params, rewards, probs, cols))
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
            Err(Error::Parameter { arg: "shaping", .. })
        ));
    }

    #[test]
    fn newton_finishes_in_a_few_steps() {
        let mut rng = crate::rng::SplitMix64::new(31);
        for gamma in [1.0, 2.0, 20.0, 1e4] {
            let mut total = 0;
            for _ in 0..1000 {
                let d: Vec<f64> = (0..10).map(|_| rng.next_f64() * 5.0).collect();
                let p: Vec<f64> = (0..10).map(|_| rng.next_f64()).collect();
                let (_, steps) = newton_steps(&d, &p, 1.0 / gamma);
                assert!(steps <= d.len() + 1, "gamma {gamma}: {steps} steps");
                total += steps;
            }
            // Measured: about 2.6 steps at gamma = 2, 3.5 at gamma = 20.
            assert!(
                total <= 5 * 1000,
                "gamma {gamma}: {total} steps in 1000 rows"
            );
        }
    }

    #[test]
    fn exp_matches_the_standard_library() {
        let mut rng = crate::rng::SplitMix64::new(17);
        for _ in 0..100_000 {
            let x = rng.next_f64() * 1416.0 - 707.0;
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= 1e-12 * want,
                "exp({x}) = {got}, want {want}"
            );
        }
        for x in [
            0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 0.5, -707.9, 708.9, 709.0,
        ] {
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= 1e-12 * want,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(-708.5), 0.0);
        assert_eq!(exp(-1e300), 0.0);
        assert_eq!(exp(1e300), exp(709.0));
    }

    #[test]
    fn both_root_finders_agree() {
        let mut rng = crate::rng::SplitMix64::new(23);
        let (mut sorted, mut suffix) = (Vec::new(), Vec::new());
        for n in [1usize, 2, 3, 8, 16, 40] {
            for gamma in [1.0, 3.0, 1e3] {
                // Few distinct values so that ties and zero-probability entries occur.
                let d: Vec<f64> = (0..n).map(|_| (rng.next_u64() % 6) as f64 * 0.7).collect();
                let p: Vec<f64> = (0..n).map(|_| (rng.next_u64() % 3) as f64).collect();
                if p.iter().sum::<f64>() == 0.0 {
                    continue;
                }
                let a = root_by_newton(&d, &p, 1.0 / gamma);
                let b = root_by_sorting(&d, &p, 1.0 / gamma, &mut sorted, &mut suffix);
                assert!((a - b).abs() <= 1e-12, "n {n} gamma {gamma}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn exp_f32_matches_the_standard_library() {
        let mut rng = crate::rng::SplitMix64::new(19);
        for _ in 0..100_000 {
            let x = (rng.next_f64() * 174.0 - 86.0) as f32;
            let (got, want) = (f64::from(exp_f32(x)), f64::from(x).exp());
            assert!(
                (got - want).abs() <= 2e-7 * want,
                "exp_f32({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-86.5), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), exp_f32(88.0));
        assert!(exp_f32(88.0).is_finite());
    }

    #[test]
    fn sigmoid_is_stable_and_accurate() {
        let mut rng = crate::rng::SplitMix64::new(29);
        for _ in 0..100_000 {
            let x = (rng.next_f64() * 100.0 - 50.0) as f32;
            let want = 1.0 / (1.0 + (-f64::from(x)).exp());
            assert!(
                (f64::from(sigmoid_f32(x)) - want).abs() <= 1e-7,
                "sigmoid({x})"
            );
        }
        assert_eq!(sigmoid_f32(1e30), 1.0);
        assert_eq!(sigmoid_f32(-1e30), 0.0);
        assert_eq!(sigmoid_f32(0.0), 0.5);
        assert_eq!(sigmoid_f32(-0.0), 0.5);
    }
}
