//! Drawing the next token of every row from the base model's logits: temperature, top-k,
//! top-p (nucleus) and an inverse-CDF draw with a given uniform per row.
//!
//! Per row, with weights `w_i = exp((l_i − max) / T)` over the top-k tokens (every token
//! whose logit is at least the k-th largest; all tokens without top-k):
//! * top-p keeps the smallest set of the heaviest tokens whose weight reaches
//!   `top_p · Σ w`: in descending order (equal weights by the lower index), a token stays
//!   while the weight strictly before it is below that target, so at least one stays;
//! * the draw walks the kept tokens in vocabulary order and returns the first whose
//!   cumulative weight exceeds `u · Σ kept` (`searchsorted(cdf, u·total, right=True)`),
//!   so a row's token depends only on its logits and its `u`.
//!
//! Only the nucleus is sorted: the tokens above a weight cutoff are gathered, and the
//! cutoff is lowered until their weight reaches the target, which is usually one pass.

use crate::error::{Error, Result};
use crate::shaping::exp_f32;
use crate::topk::{check_matrix, topk};

/// Temperature and truncation of `sample_tokens`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleParams {
    /// `T > 0`: logits are divided by it.
    pub temperature: f64,
    /// Keep only tokens whose logit is at least the k-th largest (`k ≥ 1`).
    pub top_k: Option<usize>,
    /// Nucleus mass in `(0, 1]`; 1 keeps everything.
    pub top_p: Option<f64>,
}

impl SampleParams {
    /// The knobs' ranges, each error naming its argument.
    pub fn check(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::Parameter {
                arg: "temperature",
                message: format!("must be finite and > 0, got {}", self.temperature),
            });
        }
        if let Some(k) = self.top_k {
            if k == 0 {
                return Err(Error::Parameter {
                    arg: "top_k",
                    message: "must be >= 1 (a k at or above the row length keeps every token), \
                              got 0"
                        .into(),
                });
            }
        }
        if let Some(p) = self.top_p {
            if !(p.is_finite() && p > 0.0 && p <= 1.0) {
                return Err(Error::Parameter {
                    arg: "top_p",
                    message: format!("must be in (0, 1], got {p}"),
                });
            }
        }
        Ok(())
    }
}

/// Weight cutoffs relative to the heaviest token (weight 1), tried in turn until the
/// tokens at or above one hold the nucleus; the last, 0, takes every token with weight.
const CUTOFFS: [f32; 4] = [1.0 / 256.0, 1.0 / 65_536.0, 1e-12, 0.0];

/// Tokens per partial sum: the draw finds its block from the sums, then walks one block.
const BLOCK: usize = 64;
/// Independent accumulators, so the max and the sums vectorise.
const LANES: usize = 8;

/// Buffers reused across rows.
#[derive(Default)]
struct Scratch {
    weights: Vec<f32>,
    blocks: Vec<f64>,
    nucleus: Vec<(f32, u32)>,
}

/// One token id per row of a float32 `[rows, cols]` logits matrix, drawn with `uniforms[r]`
/// in `[0, 1)` (see the module docs for the rule). `-inf` logits have no mass; NaN, `+inf`
/// and rows without a finite logit are errors.
pub fn sample_tokens(
    logits: &[f32],
    rows: usize,
    cols: usize,
    uniforms: &[f64],
    params: &SampleParams,
) -> Result<Vec<i64>> {
    check_matrix("logits", logits.len(), rows, cols)?;
    params.check()?;
    if uniforms.len() != rows {
        return Err(Error::Shape {
            arg: "uniforms",
            message: format!(
                "expected one value per row ({rows}), got {}",
                uniforms.len()
            ),
        });
    }
    if let Some(row) = uniforms.iter().position(|u| !(0.0..1.0).contains(u)) {
        return Err(Error::Parameter {
            arg: "uniforms",
            message: format!("must be in [0, 1), got {} at row {row}", uniforms[row]),
        });
    }
    let mut scratch = Scratch {
        weights: vec![0.0; cols],
        ..Scratch::default()
    };
    let inv_t = (1.0 / params.temperature) as f32;
    let mut chosen = Vec::with_capacity(rows);
    for (r, row) in logits.chunks_exact(cols).enumerate() {
        let max = row_max(row).map_err(|col| Error::NonFinite {
            arg: "logits",
            row: r,
            col,
            value: row[col],
        })?;
        if max == f32::NEG_INFINITY {
            return Err(Error::Parameter {
                arg: "logits",
                message: format!("row {r} has no finite logit: nothing to sample"),
            });
        }
        let floor = match params.top_k {
            Some(k) if k < cols => topk(row, 1, cols, k)?.values[k - 1],
            _ => f32::NEG_INFINITY,
        };
        let rule = WeightRule { floor, max, inv_t };
        let total = row_weights(row, &rule, &mut scratch);
        let token = match params.top_p {
            Some(p) if p < 1.0 => draw_nucleus(
                &scratch.weights,
                total * p,
                uniforms[r],
                &mut scratch.nucleus,
            ),
            _ => draw_blocks(&scratch.weights, &scratch.blocks, total, uniforms[r]),
        };
        chosen.push(token as i64);
    }
    Ok(chosen)
}

/// The row's largest logit, or `Err(column)` of a NaN or `+inf`.
fn row_max(row: &[f32]) -> std::result::Result<f32, usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU was just checked to support AVX2.
            return unsafe { x86::row_max_avx2(row) };
        }
    }
    row_max_portable(row)
}

#[inline(always)]
fn row_max_portable(row: &[f32]) -> std::result::Result<f32, usize> {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut bad = false;
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (m, &l) in lanes.iter_mut().zip(chunk) {
            *m = if l > *m { l } else { *m };
            bad |= l.is_nan() | (l == f32::INFINITY);
        }
    }
    for &l in rest {
        lanes[0] = if l > lanes[0] { l } else { lanes[0] };
        bad |= l.is_nan() | (l == f32::INFINITY);
    }
    if bad {
        return Err(row
            .iter()
            .position(|l| l.is_nan() || *l == f32::INFINITY)
            .unwrap_or(0));
    }
    Ok(lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)))
}

/// How a row's logits become weights: `exp((l − max) / T)`, 0 below the top-k `floor`.
struct WeightRule {
    floor: f32,
    max: f32,
    inv_t: f32,
}

/// Fill `scratch.weights` with the weights of `rule` and `scratch.blocks` with the weight
/// of every `BLOCK` tokens; returns the total weight.
fn row_weights(row: &[f32], rule: &WeightRule, scratch: &mut Scratch) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU was just checked to support AVX2.
            return unsafe { x86::row_weights_avx2(row, rule, scratch) };
        }
    }
    row_weights_portable(row, rule, scratch)
}

#[inline(always)]
fn row_weights_portable(row: &[f32], rule: &WeightRule, scratch: &mut Scratch) -> f64 {
    let WeightRule { floor, max, inv_t } = *rule;
    scratch.blocks.clear();
    let mut total = 0.0;
    for (out, block) in scratch.weights.chunks_mut(BLOCK).zip(row.chunks(BLOCK)) {
        for (w, &l) in out.iter_mut().zip(block) {
            let e = exp_f32((l - max) * inv_t);
            *w = if l >= floor { e } else { 0.0 };
        }
        let mut lanes = [0.0f64; LANES];
        let chunks = out.chunks_exact(LANES);
        let rest: f64 = chunks.remainder().iter().map(|&w| f64::from(w)).sum();
        for chunk in chunks {
            for (s, &w) in lanes.iter_mut().zip(chunk) {
                *s += f64::from(w);
            }
        }
        let sum = lanes.iter().sum::<f64>() + rest;
        scratch.blocks.push(sum);
        total += sum;
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The portable loops compiled for AVX2 + FMA, chosen at run time. The code is the
    //! same and Rust never contracts `a * b + c` into an FMA, so results do not change.
    use super::{row_max_portable, row_weights_portable, Scratch, WeightRule};

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row_max_avx2(row: &[f32]) -> std::result::Result<f32, usize> {
        row_max_portable(row)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row_weights_avx2(
        row: &[f32],
        rule: &WeightRule,
        scratch: &mut Scratch,
    ) -> f64 {
        row_weights_portable(row, rule, scratch)
    }
}

/// Inverse-CDF draw in vocabulary order: the first token whose cumulative weight exceeds
/// `u · total`. The block sums locate the token's block, then one block is walked; if
/// rounding puts the crossing past the last token, the last token with weight is taken.
fn draw_blocks(weights: &[f32], blocks: &[f64], total: f64, u: f64) -> usize {
    let target = u * total;
    let mut cumulative = 0.0f64;
    for (b, &sum) in blocks.iter().enumerate() {
        if cumulative + sum <= target {
            cumulative += sum;
            continue;
        }
        let start = b * BLOCK;
        for (offset, &w) in weights[start..(start + BLOCK).min(weights.len())]
            .iter()
            .enumerate()
        {
            cumulative += f64::from(w);
            if w > 0.0 && cumulative > target {
                return start + offset;
            }
        }
    }
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// The same draw over the nucleus's `(weight, token)` pairs, sorted by token.
fn draw_pairs(pairs: &[(f32, u32)], total: f64, u: f64) -> usize {
    let target = u * total;
    let mut cumulative = 0.0f64;
    for &(w, token) in pairs {
        cumulative += f64::from(w);
        if cumulative > target {
            return token as usize;
        }
    }
    pairs.last().map_or(0, |&(_, token)| token as usize)
}

/// Top-p: gather the tokens above a cutoff until they hold `target` weight, keep the
/// heaviest prefix reaching it, and draw among those in vocabulary order.
fn draw_nucleus(weights: &[f32], target: f64, u: f64, nucleus: &mut Vec<(f32, u32)>) -> usize {
    for &cutoff in &CUTOFFS {
        nucleus.clear();
        let mut mass = 0.0f64;
        for (token, &w) in weights.iter().enumerate() {
            if w >= cutoff && w > 0.0 {
                nucleus.push((w, token as u32));
                mass += f64::from(w);
            }
        }
        if mass >= target || cutoff == 0.0 {
            break;
        }
    }
    // Heaviest first, equal weights by the lower token.
    nucleus.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let (mut keep, mut kept) = (0, 0.0f64);
    for &(w, _) in nucleus.iter() {
        if keep > 0 && kept >= target {
            break;
        }
        kept += f64::from(w);
        keep += 1;
    }
    nucleus.truncate(keep);
    nucleus.sort_unstable_by_key(|&(_, token)| token);
    draw_pairs(nucleus, kept, u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> SampleParams {
        SampleParams {
            temperature,
            top_k,
            top_p,
        }
    }

    #[test]
    fn uniform_walks_the_cdf_in_vocabulary_order() {
        // Equal logits: each of 4 tokens holds a quarter of the mass.
        let logits = [0.0f32; 4];
        let p = params(1.0, None, None);
        for (u, want) in [(0.0, 0), (0.24, 0), (0.26, 1), (0.6, 2), (0.99, 3)] {
            assert_eq!(sample_tokens(&logits, 1, 4, &[u], &p).unwrap(), vec![want]);
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_heavy_prefix() {
        // Probabilities 0.5, 0.25, 0.125, 0.125 (token order 2, 0, 1, 3).
        let ln = |x: f64| x.ln() as f32;
        let logits = [ln(0.25), ln(0.125), ln(0.5), ln(0.125)];
        // p = 0.7: the mass before token 0 is 0.5 < 0.7, so {2, 0} stay, and token 0 holds
        // the first third of their mass in vocabulary order.
        let p = params(1.0, None, Some(0.7));
        assert_eq!(sample_tokens(&logits, 1, 4, &[0.0], &p).unwrap(), vec![0]);
        assert_eq!(sample_tokens(&logits, 1, 4, &[0.33], &p).unwrap(), vec![0]);
        assert_eq!(sample_tokens(&logits, 1, 4, &[0.34], &p).unwrap(), vec![2]);
        assert_eq!(sample_tokens(&logits, 1, 4, &[0.999], &p).unwrap(), vec![2]);
        // p = 0.5 exactly: the target is reached by token 2 alone.
        let p = params(1.0, None, Some(0.5));
        assert_eq!(sample_tokens(&logits, 1, 4, &[0.0], &p).unwrap(), vec![2]);
        // A tiny p still keeps one token.
        let p = params(1.0, None, Some(1e-9));
        assert_eq!(sample_tokens(&logits, 1, 4, &[0.9], &p).unwrap(), vec![2]);
    }

    #[test]
    fn top_p_needing_the_low_cutoffs_matches_a_full_sort() {
        // A flat row: the first cutoff holds nothing beyond the max, so lower ones are tried.
        let cols = 1000;
        let logits: Vec<f32> = (0..cols).map(|i| -(i as f32) * 0.01).collect();
        let p = params(1.0, None, Some(0.95));
        let w: Vec<f64> = logits.iter().map(|&l| f64::from(l).exp()).collect();
        let total: f64 = w.iter().sum();
        let mut before = 0.0;
        let kept = w
            .iter()
            .take_while(|&&x| {
                let stays = before < 0.95 * total;
                before += x;
                stays
            })
            .count();
        // Tokens are already in descending order, so the nucleus is 0..kept.
        let u = 0.999_999;
        let got = sample_tokens(&logits, 1, cols, &[u], &p).unwrap()[0];
        assert_eq!(got as usize, kept - 1);
    }

    #[test]
    fn block_walk_matches_a_sequential_draw() {
        // 1000 tokens span 16 blocks; a plain running sum must pick the same tokens.
        let cols = 1000;
        let logits: Vec<f32> = (0..cols)
            .map(|i| ((i * 7919) % 613) as f32 / 97.0)
            .collect();
        let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let w: Vec<f64> = logits
            .iter()
            .map(|&l| f64::from(exp_f32((l - max) / 0.7)))
            .collect();
        let total: f64 = w.iter().sum();
        let p = params(0.7, None, None);
        for i in 0..200 {
            let u = f64::from(i) / 200.0 + 0.001;
            let mut cumulative = 0.0;
            let want = w
                .iter()
                .position(|&x| {
                    cumulative += x;
                    cumulative > u * total
                })
                .unwrap();
            let got = sample_tokens(&logits, 1, cols, &[u], &p).unwrap()[0];
            assert_eq!(got as usize, want, "u = {u}");
        }
    }

    #[test]
    fn top_k_keeps_ties_at_the_kth_value() {
        let logits = [1.0f32, 3.0, 1.0, 2.0];
        let p = params(1.0, Some(2), None);
        for u in [0.0, 0.5, 0.99] {
            let t = sample_tokens(&logits, 1, 4, &[u], &p).unwrap()[0];
            assert!(t == 1 || t == 3);
        }
        // k = 3 keeps both 1.0 logits (ties at the k-th value).
        let p = params(1.0, Some(3), None);
        assert_eq!(sample_tokens(&logits, 1, 4, &[0.0], &p).unwrap(), vec![0]);
    }

    #[test]
    fn low_temperature_is_argmax_and_neg_inf_has_no_mass() {
        let logits = [0.0f32, 5.0, f32::NEG_INFINITY, 4.9];
        let p = params(1e-3, None, Some(0.9));
        assert_eq!(sample_tokens(&logits, 1, 4, &[0.999], &p).unwrap(), vec![1]);
        let p = params(1.0, None, None);
        let t = sample_tokens(&logits, 1, 4, &[0.999_999], &p).unwrap()[0];
        assert_eq!(t, 3);
    }

    #[test]
    fn bad_input_is_an_error() {
        let p = params(1.0, None, None);
        let nan = sample_tokens(&[0.0, f32::NAN], 1, 2, &[0.5], &p);
        assert!(matches!(nan, Err(Error::NonFinite { col: 1, .. })));
        let inf = sample_tokens(&[f32::INFINITY, 0.0], 1, 2, &[0.5], &p);
        assert!(matches!(inf, Err(Error::NonFinite { col: 0, .. })));
        let empty = sample_tokens(&[f32::NEG_INFINITY; 2], 1, 2, &[0.5], &p);
        assert!(matches!(empty, Err(Error::Parameter { arg: "logits", .. })));
        let u = sample_tokens(&[0.0, 0.0], 1, 2, &[1.0], &p);
        assert!(matches!(
            u,
            Err(Error::Parameter {
                arg: "uniforms",
                ..
            })
        ));
        let rows = sample_tokens(&[0.0, 0.0], 1, 2, &[0.1, 0.2], &p);
        assert!(matches!(
            rows,
            Err(Error::Shape {
                arg: "uniforms",
                ..
            })
        ));
        for bad in [
            params(0.0, None, None),
            params(f64::NAN, None, None),
            params(1.0, Some(0), None),
            params(1.0, None, Some(0.0)),
            params(1.0, None, Some(1.5)),
        ] {
            assert!(sample_tokens(&[0.0, 0.0], 1, 2, &[0.1], &bad).is_err());
        }
    }
}
