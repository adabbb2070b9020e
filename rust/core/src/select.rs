//! Shaping, fusion with the base term and selection for a whole batch in one call
//! (the choice of a token-level step, docs/architecture.md).
//!
//! Per row: `fused_i = base_i + λ · shaped_i`, then the argmax (ties to the lower column)
//! or a draw from `softmax(fused / T)` cut to the top-k candidates and then to the top-p
//! nucleus, the rule of [`crate::sample`] applied to the fused scores (as transformers and
//! vLLM apply their warpers after every logits processor). A sampled row draws from its own SplitMix64 stream,
//! seeded by that row's seed alone, so a batch call and row-by-row calls with the same
//! per-row seeds choose the same candidates.

use crate::error::{Error, Result};
use crate::rng::{fresh_seed, SplitMix64};
use crate::sample::SampleParams;
use crate::shaping::{
    check_finite_row, check_probs_row, check_probs_shape, exp, exp_f32, shape_rows, PerRow, Scheme,
    ShapeParams,
};
use crate::topk::check_matrix;

/// Where the probabilities of the threshold's samples come from (docs/algorithms.md §2.4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProbSource<'a> {
    /// `p_i = 1/n`: sequence-level candidates sampled from the base model.
    Uniform,
    /// Given per candidate, same shape as the rewards.
    Given(&'a [f32]),
    /// The softmax of each row's base scores: the token-level rule.
    SoftmaxOfBase,
}

/// Seeds of sampled selection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Seeds<'a> {
    /// Fresh entropy for this call; row `r` gets `s + r` for a fresh `s`.
    Fresh,
    /// Row `r` gets `seed + r` (wrapping).
    One(u64),
    /// One seed per row.
    PerRow(&'a [u64]),
}

impl Seeds<'_> {
    fn row_seed(&self, base: u64, row: usize) -> u64 {
        match *self {
            Seeds::PerRow(seeds) => seeds[row],
            Seeds::Fresh | Seeds::One(_) => base.wrapping_add(row as u64),
        }
    }
}

/// How each row picks its candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Choice<'a> {
    /// The argmax of the fused scores, ties to the lower column.
    Greedy,
    /// A draw from `softmax(fused / temperature)`, truncated by `top_k` and `top_p`.
    Sample {
        params: SampleParams,
        seeds: Seeds<'a>,
    },
}

/// Everything `fuse_and_select` needs besides the two matrices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FuseOptions<'a> {
    pub scheme: Scheme,
    pub params: ShapeParams,
    /// λ ≥ 0, the weight of the shaped reward in the fused score.
    pub weight: PerRow<'a>,
    pub probs: ProbSource<'a>,
    pub choice: Choice<'a>,
}

/// The chosen column of every row and the fused scores it was chosen from.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub chosen: Vec<i64>,
    /// `rows × cols`, row-major.
    pub fused: Vec<f32>,
}

/// Base scores may hold `-inf` (a candidate that must not be chosen) but not NaN or
/// `+inf`, and not only `-inf`. Returns the row maximum.
fn check_base_row(row_index: usize, row: &[f32]) -> Result<f32> {
    let mut max = f32::NEG_INFINITY;
    for (col, &x) in row.iter().enumerate() {
        if x.is_nan() || x == f32::INFINITY {
            return Err(Error::NonFinite {
                arg: "base_scores",
                row: row_index,
                col,
                value: x,
            });
        }
        max = if x > max { x } else { max };
    }
    if max == f32::NEG_INFINITY {
        // Nothing can be chosen from a row of -inf; report it at its first column.
        return Err(Error::NonFinite {
            arg: "base_scores",
            row: row_index,
            col: 0,
            value: f32::NEG_INFINITY,
        });
    }
    Ok(max)
}

/// First index of the maximum (NaN-free input). Selects, not branches: which candidate
/// leads is data-dependent and the rows are short.
fn argmax(row: &[f32]) -> usize {
    let (mut best, mut best_value) = (0, row[0]);
    for (i, &x) in row.iter().enumerate().skip(1) {
        let better = x > best_value;
        best = if better { i } else { best };
        best_value = if better { x } else { best_value };
    }
    best
}

/// Draw from `softmax(row / temperature)` cut to the top-k entries (every entry at least
/// the k-th largest) and then to the nucleus (in descending weight, equal weights by the
/// lower column, an entry stays while the weight strictly before it is below
/// `top_p · Σ w`, so at least one stays). `row` is NaN-free with a finite maximum `max`;
/// `scratch` is reused across rows. The crate's own `exp` keeps the draw identical on every
/// platform, and without truncation the draw is the plain softmax one.
fn sample(
    row: &[f32],
    max: f32,
    params: &SampleParams,
    rng: &mut SplitMix64,
    scratch: &mut SampleScratch,
) -> usize {
    let SampleScratch { weights, order } = scratch;
    let max = f64::from(max);
    weights.clear();
    weights.extend(
        row.iter()
            .map(|&x| exp((f64::from(x) - max) / params.temperature)),
    );
    if let Some(k) = params.top_k.filter(|&k| k < row.len()) {
        order.clear();
        order.extend(0..row.len());
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let kth = row[order[k - 1]];
        for (w, &x) in weights.iter_mut().zip(row) {
            if x < kth {
                *w = 0.0;
            }
        }
    }
    if let Some(p) = params.top_p.filter(|&p| p < 1.0) {
        order.clear();
        order.extend(0..row.len());
        // Stable: equal weights keep the lower column first.
        order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
        let target = p * weights.iter().sum::<f64>();
        let mut before = 0.0;
        for &i in order.iter() {
            if before >= target {
                weights[i] = 0.0;
            } else {
                before += weights[i];
            }
        }
    }
    let total: f64 = weights.iter().sum();
    let target = rng.next_f64() * total;
    let mut cumulative = 0.0;
    let mut last_positive = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            cumulative += w;
            last_positive = i;
            if cumulative > target {
                return i;
            }
        }
    }
    // Rounding can leave `target` a hair above the running sum; the draw then belongs to
    // the last candidate that has any weight (never a -inf one).
    last_positive
}

/// Buffers of [`sample`], reused across the rows of one call.
#[derive(Default)]
struct SampleScratch {
    weights: Vec<f64>,
    order: Vec<usize>,
}

/// Shape the `rows × cols` rewards, fuse them with the base scores and choose one column
/// per row. See the module docs for the rules.
pub fn fuse_and_select(
    base_scores: &[f32],
    rewards: &[f32],
    rows: usize,
    cols: usize,
    options: &FuseOptions<'_>,
) -> Result<Selection> {
    check_matrix("base_scores", base_scores.len(), rows, cols)?;
    if rewards.len() != base_scores.len() {
        return Err(Error::Shape {
            arg: "rewards",
            message: format!(
                "must have the shape of base_scores ({rows}, {cols}), got {} values",
                rewards.len()
            ),
        });
    }
    if let ProbSource::Given(p) = options.probs {
        check_probs_shape(p, rows, cols)?;
    }
    options.params.validate()?;
    options
        .weight
        .validate("weight", rows, |w| w >= 0.0, ">= 0")?;
    let base_seed = match options.choice {
        Choice::Greedy => 0,
        Choice::Sample { params, seeds } => {
            params.check()?;
            match seeds {
                Seeds::Fresh => fresh_seed(),
                Seeds::One(seed) => seed,
                Seeds::PerRow(seeds) => {
                    if seeds.len() != rows {
                        return Err(Error::Shape {
                            arg: "seed",
                            message: format!("has {} seeds for {rows} rows", seeds.len()),
                        });
                    }
                    0
                }
            }
        }
    };

    let mut selection = Selection {
        chosen: Vec::with_capacity(rows),
        fused: Vec::with_capacity(rows * cols),
    };
    select_rows(
        base_scores,
        rewards,
        cols,
        options,
        base_seed,
        &mut selection,
    )?;
    Ok(selection)
}

/// The work of [`fuse_and_select`] once the arguments are checked: validate every row,
/// take the softmax weights and shape all rows (each as one pass over the whole batch,
/// which vectorises better than row by row), then fuse and choose row by row.
fn select_rows(
    base_scores: &[f32],
    rewards: &[f32],
    cols: usize,
    options: &FuseOptions<'_>,
    base_seed: u64,
    selection: &mut Selection,
) -> Result<()> {
    let rows = base_scores.len() / cols;
    let mut base_max = Vec::with_capacity(rows);
    for (r, (base, reward)) in base_scores
        .chunks_exact(cols)
        .zip(rewards.chunks_exact(cols))
        .enumerate()
    {
        base_max.push(check_base_row(r, base)?);
        check_finite_row("rewards", r, reward)?;
        if let ProbSource::Given(all) = options.probs {
            check_probs_row(r, &all[r * cols..(r + 1) * cols])?;
        }
    }
    let softmax;
    let probs = match options.probs {
        ProbSource::Given(all) => Some(all),
        ProbSource::SoftmaxOfBase if options.scheme.uses_probs() => {
            softmax = softmax_weights(base_scores, &base_max, cols);
            Some(softmax.as_slice())
        }
        ProbSource::SoftmaxOfBase | ProbSource::Uniform => None,
    };
    let shaped = shape_rows(options.scheme, &options.params, rewards, probs, cols);

    let Selection { chosen, fused } = selection;
    let mut scratch = SampleScratch::default();
    for (r, (base, shaped)) in base_scores
        .chunks_exact(cols)
        .zip(shaped.chunks_exact(cols))
        .enumerate()
    {
        let lambda = options.weight.get(r);
        let start = fused.len();
        fused.extend(
            base.iter()
                .zip(shaped)
                .map(|(&b, &s)| (f64::from(b) + lambda * f64::from(s)) as f32),
        );
        let row = &fused[start..];
        let pick = match options.choice {
            Choice::Greedy => argmax(row),
            Choice::Sample { params, seeds } => {
                let best = argmax(row);
                let max = row[best];
                if max.is_finite() {
                    let mut rng = SplitMix64::new(seeds.row_seed(base_seed, r));
                    sample(row, max, &params, &mut rng, &mut scratch)
                } else {
                    // A fused score that overflowed f32 dominates any softmax.
                    best
                }
            }
        };
        chosen.push(pick as i64);
    }
    Ok(())
}

/// Unnormalised softmax weights `e^{b − max b}` of every row (the threshold and the
/// weighted mean divide by the sum), in float32: plenty for weights of float32 scores.
fn softmax_weights(base_scores: &[f32], base_max: &[f32], cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; base_scores.len()];
    for ((out, base), &max) in out
        .chunks_exact_mut(cols)
        .zip(base_scores.chunks_exact(cols))
        .zip(base_max)
    {
        for (o, &b) in out.iter_mut().zip(base) {
            *o = b - max;
        }
    }
    for x in out.iter_mut() {
        *x = exp_f32(*x);
    }
    out
}
