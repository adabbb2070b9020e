//! Behaviour of the search-state types: `SegmentBeam` and `StreamingBestOfN`.

use rshape_core::beam::{Member, SegmentBeam};
use rshape_core::best_of_n::{keep_slots, StreamingBestOfN};
use rshape_core::Error;

/// Small xorshift generator so the randomised checks need no dev-dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The argument an error names.
fn arg_of(e: Error) -> &'static str {
    match e {
        Error::Shape { arg, .. }
        | Error::Parameter { arg, .. }
        | Error::NonFinite { arg, .. }
        | Error::Type { arg, .. } => arg,
    }
}

/// Arguments of one `record` call and the argument its error must name.
type RecordCase = (
    &'static [i64],
    &'static [f32],
    &'static [bool],
    &'static str,
);

fn serials(members: &[Member]) -> Vec<i64> {
    members.iter().map(|m| m.serial).collect()
}

/// Live (unfinished) members per prompt: the `keep` entries of the last step per prompt.
fn live_counts(beam: &SegmentBeam) -> Vec<i64> {
    (0..beam.num_prompts())
        .map(|p| {
            beam.members(p)
                .unwrap()
                .iter()
                .filter(|m| !m.finished)
                .count() as i64
        })
        .collect()
}

// ---------------------------------------------------------------- SegmentBeam

#[test]
fn beam_hand_computed_two_prompts() {
    let mut beam = SegmentBeam::new(2, 2).unwrap();
    // Step 1: prompt 0 gets three expansions, prompt 1 two; index 2 duplicates index 0's
    // hash with a higher score, so it replaces it; index 4 finishes.
    let out = beam
        .step(
            &[0, 0, 0, 1, 1],
            &[-1, -1, -1, -1, -1],
            &[0.5, 0.2, 0.9, 0.1, 0.3],
            &[false, false, false, false, true],
            &[7, 8, 7, 9, 10],
        )
        .unwrap();
    assert_eq!(out.serials, vec![0, 1, 2, 3, 4]);
    // Prompt 0: 2 (0.9), 1 (0.2) — 0 dropped as a duplicate of 2. Prompt 1: 4 finished
    // (0.3) ranks first but is not live; 3 (0.1) is live.
    assert_eq!(out.keep, vec![2, 1, 3]);
    assert_eq!(live_counts(&beam), vec![2, 1]);
    assert_eq!(serials(beam.members(0).unwrap()), vec![2, 1]);
    assert_eq!(serials(beam.members(1).unwrap()), vec![4, 3]);
    assert_eq!(beam.best_finished(), &[None, Some((4, 0.3))]);
    assert!(!beam.done());

    // Step 2: parents are positions in the previous keep: 0 -> idx 2 (prompt 0),
    // 1 -> idx 1 (prompt 0), 2 -> idx 3 (prompt 1).
    let out = beam
        .step(
            &[0, 0, 1, 1],
            &[0, 1, 2, 2],
            &[0.4, 0.4, 0.3, 0.2],
            &[true, false, false, false],
            &[11, 12, 13, 14],
        )
        .unwrap();
    assert_eq!(out.serials, vec![5, 6, 7, 8]);
    // Prompt 0: tie at 0.4, serial 5 (finished) before 6. Prompt 1: carried 4 (0.3, serial
    // 4) ties with new 7 (0.3, serial 7) and wins it; 7 takes the second slot, 8 is out.
    assert_eq!(out.keep, vec![1, 2]);
    assert_eq!(serials(beam.members(0).unwrap()), vec![5, 6]);
    assert_eq!(serials(beam.members(1).unwrap()), vec![4, 7]);
    assert_eq!(beam.best_finished(), &[Some((5, 0.4)), Some((4, 0.3))]);

    // Step 3: prompt 1 gets no expansion, so its live member leaves; prompt 0's live member
    // finishes below the carried one.
    let out = beam.step(&[0], &[0], &[0.1], &[true], &[15]).unwrap();
    assert_eq!(out.keep, Vec::<i64>::new());
    assert_eq!(live_counts(&beam), vec![0, 0]);
    assert!(beam.done());
    assert_eq!(serials(beam.members(0).unwrap()), vec![5, 9]);
    assert_eq!(serials(beam.members(1).unwrap()), vec![4]);
    assert_eq!(beam.submitted(), 10);
}

#[test]
fn beam_best_finished_remembers_members_pushed_out() {
    let mut beam = SegmentBeam::new(1, 1).unwrap();
    beam.step(&[0, 0], &[-1, -1], &[0.5, 0.4], &[true, false], &[1, 2])
        .unwrap();
    // The finished 0.5 holds the single slot, so the live one is gone.
    assert!(beam.done());
    let mut beam = SegmentBeam::new(1, 1).unwrap();
    beam.step(&[0, 0], &[-1, -1], &[0.5, 0.6], &[true, false], &[1, 2])
        .unwrap();
    // The live one outranks the finished one, which leaves the beam...
    assert_eq!(serials(beam.members(0).unwrap()), vec![1]);
    beam.step(&[0], &[0], &[0.7], &[false], &[3]).unwrap();
    // ...but is still the best finished answer.
    assert_eq!(beam.best_finished(), &[Some((0, 0.5))]);
}

#[test]
fn beam_duplicate_of_a_carried_member_is_dropped() {
    let mut beam = SegmentBeam::new(1, 3).unwrap();
    beam.step(&[0, 0], &[-1, -1], &[0.5, 0.1], &[true, false], &[42, 1])
        .unwrap();
    // Same sequence reached from another branch, same score: the carried copy (earlier
    // serial) stays; a higher score would have displaced it.
    let out = beam
        .step(&[0, 0], &[0, 0], &[0.5, 0.2], &[true, false], &[42, 2])
        .unwrap();
    assert_eq!(out.keep, vec![1]);
    assert_eq!(serials(beam.members(0).unwrap()), vec![0, 3]);
    let out = beam.step(&[0], &[0], &[0.9], &[true], &[42]).unwrap();
    assert!(out.keep.is_empty());
    assert_eq!(serials(beam.members(0).unwrap()), vec![4]);
    assert_eq!(beam.best_finished(), &[Some((4, 0.9))]);
}

#[test]
fn beam_width_one_is_greedy() {
    let mut rng = XorShift(0x5EED);
    let mut beam = SegmentBeam::new(1, 1).unwrap();
    let mut parent = -1;
    for step in 0..50 {
        let scores: Vec<f32> = (0..4).map(|_| rng.below(20) as f32 / 4.0).collect();
        let hashes: Vec<u64> = (0..4).map(|i| step * 4 + i).collect();
        let out = beam
            .step(&[0; 4], &[parent; 4], &scores, &[false; 4], &hashes)
            .unwrap();
        let best = scores
            .iter()
            .enumerate()
            .fold(0, |b, (i, &s)| if s > scores[b] { i } else { b });
        assert_eq!(out.keep, vec![best as i64]);
        parent = 0;
    }
}

/// Random runs: width respected, no hash twice in a beam, keep sorted by prompt and made of
/// live expansions, best finished = max over finished submissions (earliest on ties).
#[test]
fn beam_invariants_on_random_runs() {
    let mut rng = XorShift(0xBEA5);
    for _ in 0..200 {
        let num_prompts = 1 + rng.below(3) as usize;
        let width = 1 + rng.below(3) as usize;
        let mut beam = SegmentBeam::new(num_prompts, width).unwrap();
        let mut best: Vec<Option<(i64, f32)>> = vec![None; num_prompts];
        // Prompt of each parent number; None before the first step.
        let mut parents: Option<Vec<usize>> = None;
        for _ in 0..6 {
            let (mut prompt, mut parent) = (Vec::new(), Vec::new());
            match &parents {
                None => {
                    for p in 0..num_prompts {
                        for _ in 0..rng.below(4) {
                            prompt.push(p as i64);
                            parent.push(-1);
                        }
                    }
                }
                Some(owners) => {
                    for (j, &p) in owners.iter().enumerate() {
                        for _ in 0..rng.below(4) {
                            prompt.push(p as i64);
                            parent.push(j as i64);
                        }
                    }
                }
            }
            let count = prompt.len();
            let scores: Vec<f32> = (0..count).map(|_| rng.below(5) as f32).collect();
            let finished: Vec<bool> = (0..count).map(|_| rng.below(3) == 0).collect();
            let hashes: Vec<u64> = (0..count).map(|_| rng.below(6)).collect();
            let out = beam
                .step(&prompt, &parent, &scores, &finished, &hashes)
                .unwrap();
            for i in 0..count {
                let p = prompt[i] as usize;
                if finished[i] && best[p].is_none_or(|(_, s)| scores[i] > s) {
                    best[p] = Some((out.serials[i], scores[i]));
                }
            }
            assert_eq!(beam.best_finished(), best.as_slice());
            let mut owners = Vec::new();
            for &k in &out.keep {
                assert!(!finished[k as usize]);
                owners.push(prompt[k as usize] as usize);
            }
            assert!(owners.windows(2).all(|w| w[0] <= w[1]));
            for p in 0..num_prompts {
                let members = beam.members(p).unwrap();
                assert!(members.len() <= width);
                let mut hashes: Vec<u64> = members.iter().map(|m| m.hash).collect();
                hashes.sort_unstable();
                hashes.dedup();
                assert_eq!(hashes.len(), members.len());
                let live = owners.iter().filter(|&&o| o == p).count() as i64;
                assert_eq!(live_counts(&beam)[p], live);
            }
            assert_eq!(beam.done(), owners.is_empty());
            parents = Some(owners);
        }
    }
}

#[test]
fn beam_rejects_bad_input_without_changing_state() {
    assert!(matches!(
        SegmentBeam::new(0, 2),
        Err(Error::Parameter {
            arg: "num_prompts",
            ..
        })
    ));
    assert!(matches!(
        SegmentBeam::new(2, 0),
        Err(Error::Parameter { arg: "width", .. })
    ));
    let mut beam = SegmentBeam::new(2, 2).unwrap();
    let e = beam.step(&[0], &[-1, -1], &[0.0], &[false], &[1]);
    assert_eq!(arg_of(e.unwrap_err()), "parent");
    let e = beam.step(&[0], &[-1], &[0.0], &[false], &[]);
    assert!(matches!(e, Err(Error::Shape { arg: "hashes", .. })));
    let e = beam.step(&[2], &[-1], &[0.0], &[false], &[1]);
    assert!(matches!(e, Err(Error::Parameter { arg: "prompt", .. })));
    let e = beam.step(&[-1], &[-1], &[0.0], &[false], &[1]);
    assert!(matches!(e, Err(Error::Parameter { arg: "prompt", .. })));
    let e = beam.step(&[0], &[0], &[0.0], &[false], &[1]);
    assert!(matches!(e, Err(Error::Parameter { arg: "parent", .. })));
    let e = beam.step(&[0], &[-1], &[f32::INFINITY], &[false], &[1]);
    assert!(matches!(e, Err(Error::NonFinite { arg: "scores", .. })));
    assert_eq!(beam.submitted(), 0);

    beam.step(&[0, 1], &[-1, -1], &[0.0, 0.0], &[false, false], &[1, 2])
        .unwrap();
    // Parent 1 belongs to prompt 1; parent 2 does not exist; -1 after the first step.
    let e = beam.step(&[0], &[1], &[0.0], &[false], &[3]);
    assert!(matches!(e, Err(Error::Parameter { arg: "parent", .. })));
    let e = beam.step(&[0], &[2], &[0.0], &[false], &[3]);
    assert!(matches!(e, Err(Error::Parameter { arg: "parent", .. })));
    let e = beam.step(&[0], &[-1], &[0.0], &[false], &[3]);
    assert!(matches!(e, Err(Error::Parameter { arg: "parent", .. })));
    let e = beam.step(&[0], &[-7], &[0.0], &[false], &[3]);
    assert!(matches!(e, Err(Error::Parameter { arg: "parent", .. })));
    assert!(matches!(
        beam.members(2),
        Err(Error::Parameter { arg: "prompt", .. })
    ));
    assert_eq!(beam.submitted(), 2);
    assert_eq!(live_counts(&beam), vec![1, 1]);
}

// ----------------------------------------------------------- StreamingBestOfN

#[test]
fn best_of_n_hand_computed_prune() {
    let mut state = StreamingBestOfN::new(2, 4).unwrap();
    // Prompt 0: candidate 1 finished strong; 0, 2, 3 live. Prompt 1: all live, a tie.
    state
        .record(
            &[0, 1, 2, 3, 4, 5, 6, 7],
            &[0.2, 0.9, 0.5, 0.1, 0.3, 0.3, 0.8, -1.0],
            &[false, true, false, false, false, false, false, false],
        )
        .unwrap();
    let rejected = state.prune(0.5).unwrap();
    // Prompt 0: L = 3, slots = ceil(1.5) = 2: ranking 1 (fin), 2, 0, 3 -> 2 survives.
    // Prompt 1: L = 4, slots = 2: ranking 6, 4, 5 (tie with 4, higher id), 7.
    assert_eq!(rejected, vec![0, 3, 5, 7]);
    assert_eq!(
        state.survivors(),
        vec![false, false, true, false, true, false, true, false]
    );
    assert_eq!(state.best_finished(), vec![Some((1, 0.9)), None]);
    assert!(!state.done());
    // Rejected candidates keep their last score.
    assert_eq!(state.scores()[0], 0.2);

    // A rejected candidate takes no records; a finished one has a final score.
    for id in [0, 1] {
        let e = state.record(&[id], &[1.0], &[false]).unwrap_err();
        assert!(matches!(
            e,
            Error::Parameter {
                arg: "candidates",
                ..
            }
        ));
    }
    state
        .record(&[2, 4, 6], &[0.95, 0.0, 0.0], &[true, true, true])
        .unwrap();
    assert!(state.done());
    assert_eq!(state.best_finished(), vec![Some((2, 0.95)), Some((4, 0.0))]);
    assert_eq!(state.prune(0.5).unwrap(), Vec::<i64>::new());
}

#[test]
fn best_of_n_zero_fraction_rejects_nothing() {
    let mut state = StreamingBestOfN::new(1, 3).unwrap();
    state
        .record(&[0, 1, 2], &[5.0, 1.0, 2.0], &[true, false, false])
        .unwrap();
    assert_eq!(state.prune(0.0).unwrap(), Vec::<i64>::new());
    // Any positive fraction applies the slot rule: 2 live, 2 slots, the finished answer
    // takes one of them.
    assert_eq!(state.prune(1e-6).unwrap(), vec![1]);
}

#[test]
fn best_of_n_rejects_bad_input_without_changing_state() {
    assert!(matches!(
        StreamingBestOfN::new(1, 0),
        Err(Error::Parameter { arg: "n", .. })
    ));
    assert!(matches!(
        StreamingBestOfN::new(0, 1),
        Err(Error::Parameter {
            arg: "num_prompts",
            ..
        })
    ));
    let mut state = StreamingBestOfN::new(1, 3).unwrap();
    let cases: [RecordCase; 6] = [
        (&[0, 1], &[0.0], &[false, false], "scores"),
        (&[0], &[0.0], &[], "finished"),
        (&[3], &[0.0], &[false], "candidates"),
        (&[-1], &[0.0], &[false], "candidates"),
        (&[1, 1], &[0.0, 0.0], &[false, false], "candidates"),
        (&[0, 1], &[0.0, f32::NAN], &[false, true], "scores"),
    ];
    for (c, s, f, want) in cases {
        assert_eq!(arg_of(state.record(c, s, f).unwrap_err()), want);
    }
    assert!(state.scores().iter().all(|s| s.is_nan()));
    assert!(state.survivors().iter().all(|&s| s));
    // Unscored live candidates cannot be ranked.
    state.record(&[0, 1], &[1.0, 2.0], &[false, false]).unwrap();
    assert!(matches!(
        state.prune(0.5),
        Err(Error::Parameter {
            arg: "candidates",
            ..
        })
    ));
    for f in [-0.1, 1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            state.prune(f),
            Err(Error::Parameter {
                arg: "reject_fraction",
                ..
            })
        ));
    }
    assert!(state.survivors().iter().all(|&s| s));
}

#[test]
fn keep_slots_is_ceil_of_the_kept_fraction() {
    for live in 1..50usize {
        for tenth in 0..10 {
            let f = tenth as f64 / 10.0;
            // Exact integer arithmetic: ceil((10 - tenth) * live / 10).
            let want = ((10 - tenth) * live).div_ceil(10);
            assert_eq!(keep_slots(live, f), want, "live {live}, f {f}");
        }
    }
}
