//! Bookkeeping of a segment-level beam search (docs/algorithms.md §4, "segment beam").
//!
//! The caller owns the token sequences and caches; this type only decides, per prompt,
//! which of the freshly scored expansions stay in the beam. Each prompt's beam holds up to
//! `width` members. Live members are expanded by the caller every step; finished members
//! are carried over automatically and compete with the new expansions, so a strong finished
//! answer keeps its slot without the caller resubmitting it.

use std::collections::HashSet;

use crate::error::{require_at_least_one, require_finite, Error, Result};
use crate::rank::by_rank;

/// One beam member: an expansion that survived a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    /// Running number of the expansion over all steps (0 for the first ever submitted).
    pub serial: i64,
    /// The (shaped) reward of the member's whole sequence.
    pub score: f32,
    /// Whether the sequence is complete (it is carried, never expanded again).
    pub finished: bool,
    /// Hash of the whole token sequence, used to drop duplicates.
    pub hash: u64,
}

/// What one [`SegmentBeam::step`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutput {
    /// Indices into the step's expansion arrays of the surviving live expansions, ordered
    /// by prompt then rank. Position `j` in this vector is the `parent` number the next
    /// step uses for expansions of that member.
    pub keep: Vec<i64>,
    /// Serial of every submitted expansion, aligned with the step's arrays (consecutive).
    pub serials: Vec<i64>,
}

/// Segment-beam state for `num_prompts` independent prompts of beam width `width`.
#[derive(Debug, Clone)]
pub struct SegmentBeam {
    num_prompts: usize,
    width: usize,
    /// Per prompt, the current members in rank order (best first).
    members: Vec<Vec<Member>>,
    /// Prompt of each live member in the order of the last `keep`, i.e. by parent number.
    live_prompt: Vec<usize>,
    /// Per prompt, whether any expansion was ever submitted (before that, `parent` is -1).
    started: Vec<bool>,
    /// Per prompt, the best finished expansion ever submitted: (serial, score).
    best_finished: Vec<Option<(i64, f32)>>,
    /// Number of expansions submitted so far; the next expansion's serial.
    submitted: i64,
}

impl SegmentBeam {
    /// An empty beam. Both sizes must be at least 1.
    pub fn new(num_prompts: usize, width: usize) -> Result<Self> {
        require_at_least_one("num_prompts", num_prompts)?;
        require_at_least_one("width", width)?;
        Ok(Self {
            num_prompts,
            width,
            members: vec![Vec::new(); num_prompts],
            live_prompt: Vec::new(),
            started: vec![false; num_prompts],
            best_finished: vec![None; num_prompts],
            submitted: 0,
        })
    }

    pub fn num_prompts(&self) -> usize {
        self.num_prompts
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of expansions ever submitted (the serial the next expansion will get).
    pub fn submitted(&self) -> i64 {
        self.submitted
    }

    /// Submit one step of expansions and return the survivors.
    ///
    /// All five slices hold one entry per new expansion. `prompt[i]` is the expansion's
    /// prompt; `parent[i]` is the position, in the previous step's `keep`, of the live
    /// member it extends, or -1 for a prompt that has never had an expansion. Per prompt,
    /// the pool is the carried finished members plus the new expansions; duplicates by hash
    /// keep only their best-ranked copy and the `width` best by (score desc, serial asc)
    /// stay. Live members of the previous step that got no expansion leave the beam (the
    /// caller decided not to continue them). The call is atomic: on error nothing changes.
    pub fn step(
        &mut self,
        prompt: &[i64],
        parent: &[i64],
        scores: &[f32],
        finished: &[bool],
        hashes: &[u64],
    ) -> Result<StepOutput> {
        let count = prompt.len();
        for (arg, len) in [
            ("parent", parent.len()),
            ("scores", scores.len()),
            ("finished", finished.len()),
            ("hashes", hashes.len()),
        ] {
            if len != count {
                return Err(Error::Shape {
                    arg,
                    message: format!("has length {len} but prompt has length {count}"),
                });
            }
        }
        let prompts = self.validate(prompt, parent, scores)?;

        let first = self.submitted;
        let serials: Vec<i64> = (0..count as i64).map(|i| first + i).collect();

        // Group the new expansions by prompt; serial order inside each group is index order.
        let mut fresh: Vec<Vec<usize>> = vec![Vec::new(); self.num_prompts];
        for (i, &p) in prompts.iter().enumerate() {
            fresh[p].push(i);
        }

        let mut keep = Vec::new();
        let mut live_prompt = Vec::new();
        for (p, new_indices) in fresh.iter().enumerate() {
            // Carried finished members have lower serials than anything new, so the
            // tie-break by serial favours them without a special case.
            let mut pool: Vec<(Member, Option<usize>)> = self.members[p]
                .iter()
                .filter(|m| m.finished)
                .map(|m| (*m, None))
                .collect();
            for &i in new_indices {
                let member = Member {
                    serial: serials[i],
                    score: scores[i],
                    finished: finished[i],
                    hash: hashes[i],
                };
                if member.finished {
                    let better = match self.best_finished[p] {
                        None => true,
                        // Later submissions have larger serials: only a strictly higher
                        // score replaces the best (ties keep the earlier one).
                        Some((_, best)) => member.score > best,
                    };
                    if better {
                        self.best_finished[p] = Some((member.serial, member.score));
                    }
                }
                pool.push((member, Some(i)));
            }
            pool.sort_by(|a, b| by_rank((a.0.score, a.0.serial), (b.0.score, b.0.serial)));

            // Walking in rank order, the first copy of a hash is the one the duplicate rule
            // keeps (higher score, then earlier serial); later copies are dropped before
            // they can take a slot.
            let mut seen = HashSet::with_capacity(pool.len());
            let mut survivors = Vec::with_capacity(self.width);
            for (member, index) in pool {
                if survivors.len() == self.width {
                    break;
                }
                if !seen.insert(member.hash) {
                    continue;
                }
                if !member.finished {
                    if let Some(i) = index {
                        keep.push(i as i64);
                        live_prompt.push(p);
                    }
                }
                survivors.push(member);
            }
            self.members[p] = survivors;
            if !new_indices.is_empty() {
                self.started[p] = true;
            }
        }
        self.live_prompt = live_prompt;
        self.submitted = first + count as i64;
        Ok(StepOutput { keep, serials })
    }

    /// Check every entry before anything changes; returns the prompts as `usize`.
    fn validate(&self, prompt: &[i64], parent: &[i64], scores: &[f32]) -> Result<Vec<usize>> {
        let mut prompts = Vec::with_capacity(prompt.len());
        for (i, &p) in prompt.iter().enumerate() {
            if p < 0 || p as u64 >= self.num_prompts as u64 {
                return Err(Error::Parameter {
                    arg: "prompt",
                    message: format!(
                        "value {p} at position {i} is outside [0, {})",
                        self.num_prompts
                    ),
                });
            }
            prompts.push(p as usize);
        }
        for (i, (&j, &p)) in parent.iter().zip(&prompts).enumerate() {
            if j == -1 {
                if self.started[p] {
                    return Err(Error::Parameter {
                        arg: "parent",
                        message: format!(
                            "-1 at position {i}, but prompt {p} already has had expansions; \
                             -1 is only valid at a prompt's first step"
                        ),
                    });
                }
                continue;
            }
            let live = self.live_prompt.len();
            if j < 0 || j as u64 >= live as u64 {
                return Err(Error::Parameter {
                    arg: "parent",
                    message: format!(
                        "value {j} at position {i} is outside [0, {live}) (the length of the \
                         previous keep) and is not -1"
                    ),
                });
            }
            let owner = self.live_prompt[j as usize];
            if owner != p {
                return Err(Error::Parameter {
                    arg: "parent",
                    message: format!(
                        "value {j} at position {i} is a live member of prompt {owner}, \
                         but prompt[{i}] is {p}"
                    ),
                });
            }
        }
        // One score per entry: its position is the row an error reports.
        require_finite("scores", scores, |i| (i, 0))?;
        Ok(prompts)
    }

    /// True when no prompt has a live member left (nothing more to expand).
    pub fn done(&self) -> bool {
        self.live_prompt.is_empty()
    }

    /// Per prompt, the best finished expansion ever submitted as (serial, score), including
    /// ones later pushed out of the beam; `None` where none finished yet.
    pub fn best_finished(&self) -> &[Option<(i64, f32)>] {
        &self.best_finished
    }

    /// The current members of one prompt in rank order.
    pub fn members(&self, prompt: usize) -> Result<&[Member]> {
        self.members
            .get(prompt)
            .map(Vec::as_slice)
            .ok_or_else(|| Error::Parameter {
                arg: "prompt",
                message: format!("{prompt} is outside [0, {})", self.num_prompts),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_without_live_members_cannot_restart() {
        let mut beam = SegmentBeam::new(1, 1).unwrap();
        let out = beam
            .step(&[0, 0], &[-1, -1], &[1.0, 0.5], &[true, false], &[1, 2])
            .unwrap();
        assert!(out.keep.is_empty());
        assert!(beam.done());
        // Nothing live is left, so nothing can be expanded: the prompt cannot restart.
        let err = beam.step(&[0], &[-1], &[1.0], &[false], &[3]).unwrap_err();
        assert!(matches!(err, Error::Parameter { arg: "parent", .. }));
    }

    #[test]
    fn a_failed_step_changes_nothing() {
        let mut beam = SegmentBeam::new(2, 2).unwrap();
        beam.step(&[0, 1], &[-1, -1], &[1.0, 2.0], &[false, false], &[1, 2])
            .unwrap();
        let before = (
            beam.members.clone(),
            beam.live_prompt.clone(),
            beam.submitted,
        );
        let err = beam
            .step(&[0, 1], &[0, 1], &[1.0, f32::NAN], &[true, false], &[3, 4])
            .unwrap_err();
        assert!(matches!(
            err,
            Error::NonFinite {
                arg: "scores",
                row: 1,
                ..
            }
        ));
        assert_eq!(
            before,
            (
                beam.members.clone(),
                beam.live_prompt.clone(),
                beam.submitted
            )
        );
        assert_eq!(beam.best_finished(), &[None, None]);
    }
}
