//! Streaming best-of-N with early rejection (docs/algorithms.md §4, after "Fast Best-of-N via
//! Speculative Rejection", Sun et al. 2024).
//!
//! `num_prompts` prompts each start `n` candidates; candidate `i` of prompt `p` has the
//! global id `p * n + i`. The caller generates, scores partial or finished candidates with
//! [`StreamingBestOfN::record`], and at checkpoints calls [`StreamingBestOfN::prune`] to
//! stop generating the weakest live ones. Finished candidates are never rejected but keep
//! their place in the ranking, so a strong finished answer displaces weak live ones.

use crate::error::{require_at_least_one, require_finite, Error, Result};
use crate::rank::by_rank;

/// Where a candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Still being generated.
    Live,
    /// Complete; its recorded score is final.
    Finished,
    /// Dropped by `prune`; no further records are accepted.
    Rejected,
}

/// Number of ranking slots `prune` keeps for a prompt with `live` live candidates:
/// `ceil((1 - f) * live)`, at least 1 when `live > 0`.
///
/// The product is computed in f64 and `1e-9` is subtracted before rounding up so that
/// decimal fractions that are not exact in binary (`(1 - 0.7) * 10 = 3.0000000000000004`)
/// give the count a reader expects (3, not 4). The floor of 1 keeps the mathematical
/// guarantee of `f < 1` that the formula is positive when the tolerance would round it to 0.
pub fn keep_slots(live: usize, reject_fraction: f64) -> usize {
    if live == 0 {
        return 0;
    }
    let slots = ((1.0 - reject_fraction) * live as f64 - 1e-9).ceil();
    (slots.max(1.0) as usize).min(live)
}

/// Per-prompt state of a streaming best-of-N run.
#[derive(Debug, Clone)]
pub struct StreamingBestOfN {
    num_prompts: usize,
    n: usize,
    /// Latest score per candidate; NaN where never recorded.
    scores: Vec<f32>,
    status: Vec<Status>,
}

impl StreamingBestOfN {
    /// Fresh state: every candidate live and unscored. Both sizes must be at least 1.
    pub fn new(num_prompts: usize, n: usize) -> Result<Self> {
        require_at_least_one("num_prompts", num_prompts)?;
        require_at_least_one("n", n)?;
        let total = num_prompts.checked_mul(n).ok_or_else(|| Error::Parameter {
            arg: "n",
            message: format!("num_prompts * n overflows ({num_prompts} * {n})"),
        })?;
        Ok(Self {
            num_prompts,
            n,
            scores: vec![f32::NAN; total],
            status: vec![Status::Live; total],
        })
    }

    pub fn num_prompts(&self) -> usize {
        self.num_prompts
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Record the latest (partial or final) score of some candidates.
    ///
    /// Errors, with nothing recorded: lengths differ, an id is outside `[0, P*n)` or appears
    /// twice, a score is NaN or infinite, a candidate was rejected, or a candidate already
    /// finished (its score is final).
    pub fn record(&mut self, candidates: &[i64], scores: &[f32], finished: &[bool]) -> Result<()> {
        let count = candidates.len();
        for (arg, len) in [("scores", scores.len()), ("finished", finished.len())] {
            if len != count {
                return Err(Error::Shape {
                    arg,
                    message: format!("has length {len} but candidates has length {count}"),
                });
            }
        }
        let total = self.status.len();
        let mut seen = vec![false; total];
        let mut ids = Vec::with_capacity(count);
        for (i, &c) in candidates.iter().enumerate() {
            if c < 0 || c as u64 >= total as u64 {
                return Err(Error::Parameter {
                    arg: "candidates",
                    message: format!("id {c} at position {i} is outside [0, {total})"),
                });
            }
            let id = c as usize;
            if seen[id] {
                return Err(Error::Parameter {
                    arg: "candidates",
                    message: format!("id {c} appears more than once (again at position {i})"),
                });
            }
            seen[id] = true;
            match self.status[id] {
                Status::Live => {}
                Status::Rejected => {
                    return Err(Error::Parameter {
                        arg: "candidates",
                        message: format!(
                            "id {c} at position {i} was rejected by prune() and takes no records"
                        ),
                    })
                }
                Status::Finished => {
                    return Err(Error::Parameter {
                        arg: "candidates",
                        message: format!(
                            "id {c} at position {i} already finished; its score is final"
                        ),
                    })
                }
            }
            ids.push(id);
        }
        // One score per entry: its position is the row an error reports.
        require_finite("scores", scores, |i| (i, 0))?;
        for ((&id, &s), &f) in ids.iter().zip(scores).zip(finished) {
            self.scores[id] = s;
            if f {
                self.status[id] = Status::Finished;
            }
        }
        Ok(())
    }

    /// Reject the weakest live candidates of every prompt; returns their ids, ascending.
    ///
    /// Per prompt with `L` live candidates, live and finished candidates are ranked by their
    /// latest score (ties: lower id) and the top [`keep_slots`]`(L, f)` slots are kept: live
    /// candidates inside them survive, live ones outside are rejected. Finished candidates
    /// are never rejected but take slots. `reject_fraction` must be in `[0, 1)`; 0 disables
    /// pruning entirely (nothing is rejected, even below a finished answer). Every live
    /// candidate must have a recorded score: ranking an unscored one would be a guess, so
    /// that is an error (checked for all prompts before anything is rejected).
    pub fn prune(&mut self, reject_fraction: f64) -> Result<Vec<i64>> {
        if !(reject_fraction.is_finite() && (0.0..1.0).contains(&reject_fraction)) {
            return Err(Error::Parameter {
                arg: "reject_fraction",
                message: format!("must be in [0, 1), got {reject_fraction}"),
            });
        }
        if let Some(id) = (0..self.status.len())
            .find(|&id| self.status[id] == Status::Live && self.scores[id].is_nan())
        {
            return Err(Error::Parameter {
                arg: "candidates",
                message: format!(
                    "live candidate {id} (prompt {}) has never been scored; record() a score \
                     for every live candidate before prune()",
                    id / self.n
                ),
            });
        }
        let mut rejected = Vec::new();
        if reject_fraction == 0.0 {
            return Ok(rejected);
        }
        for p in 0..self.num_prompts {
            let ids = p * self.n..(p + 1) * self.n;
            let live = ids
                .clone()
                .filter(|&id| self.status[id] == Status::Live)
                .count();
            if live == 0 {
                continue;
            }
            let mut ranked: Vec<(f32, usize)> = ids
                .filter(|&id| self.status[id] != Status::Rejected)
                .map(|id| (self.scores[id], id))
                .collect();
            ranked.sort_by(|&a, &b| by_rank(a, b));
            let slots = keep_slots(live, reject_fraction);
            let mut dropped: Vec<usize> = ranked[slots..]
                .iter()
                .map(|&(_, id)| id)
                .filter(|&id| self.status[id] == Status::Live)
                .collect();
            dropped.sort_unstable();
            for &id in &dropped {
                self.status[id] = Status::Rejected;
                rejected.push(id as i64);
            }
        }
        Ok(rejected)
    }

    /// Live mask, row-major `[P, n]`.
    pub fn survivors(&self) -> Vec<bool> {
        self.status.iter().map(|&s| s == Status::Live).collect()
    }

    /// Finished mask, row-major `[P, n]`.
    pub fn finished_mask(&self) -> Vec<bool> {
        self.status.iter().map(|&s| s == Status::Finished).collect()
    }

    /// Latest score per candidate, row-major `[P, n]`; NaN where never recorded.
    pub fn scores(&self) -> &[f32] {
        &self.scores
    }

    /// True when no candidate anywhere is live.
    pub fn done(&self) -> bool {
        !self.status.contains(&Status::Live)
    }

    /// Per prompt, the finished candidate with the highest score (ties: lower id) as
    /// (id, score); `None` where no candidate finished.
    pub fn best_finished(&self) -> Vec<Option<(i64, f32)>> {
        (0..self.num_prompts)
            .map(|p| {
                (p * self.n..(p + 1) * self.n)
                    .filter(|&id| self.status[id] == Status::Finished)
                    .map(|id| (self.scores[id], id))
                    .min_by(|&a, &b| by_rank(a, b))
                    .map(|(s, id)| (id as i64, s))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_slots_rounds_decimal_fractions_as_written() {
        assert_eq!(keep_slots(10, 0.7), 3);
        assert_eq!(keep_slots(4, 0.5), 2);
        assert_eq!(keep_slots(5, 0.5), 3);
        assert_eq!(keep_slots(3, 0.0), 3);
        assert_eq!(keep_slots(1, 0.999_999_999_999), 1);
        assert_eq!(keep_slots(0, 0.5), 0);
    }
}
