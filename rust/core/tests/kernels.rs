//! The public kernels of rshape-core: the paper's toy example, edge cases and every error.

use rshape_core::rng::SplitMix64;
use rshape_core::{
    fuse_and_select, shape_rewards, stackelberg_threshold, topk, Choice, Error, FuseOptions,
    PerRow, ProbSource, SampleParams, Scheme, Seeds, ShapeParams, SCHEMES,
};

/// Sampling at `temperature` without truncation.
fn temperature(temperature: f64) -> SampleParams {
    SampleParams {
        temperature,
        top_k: None,
        top_p: None,
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// `F(m)` of docs/algorithms.md §2.1, probabilities renormalised.
fn stackelberg_f(rewards: &[f32], probs: &[f32], gamma: f64, m: f64) -> f64 {
    let total: f64 = probs.iter().map(|&p| f64::from(p)).sum();
    rewards
        .iter()
        .zip(probs)
        .map(|(&r, &p)| {
            let r = f64::from(r);
            let w = if r >= m { gamma } else { 1.0 };
            f64::from(p) / total * w * (r - m)
        })
        .sum()
}

#[test]
fn toy_example_of_the_paper() {
    // r = (1, 2), p = (0.9, 0.1), B = 3, beta = 1: gamma = e^3, m* ≈ 1.6906.
    let m = stackelberg_threshold(
        &[1.0, 2.0],
        Some(&[0.9, 0.1]),
        1,
        2,
        PerRow::All(3f64.exp()),
    )
    .unwrap();
    assert!(close(m[0], 1.6906, 1e-4), "{}", m[0]);
    let (p_low, p_high) = (f64::from(0.9f32), f64::from(0.1f32));
    let gamma = 3f64.exp();
    let closed_form = (p_low + p_high * gamma * 2.0) / (p_low + p_high * gamma);
    assert!(close(m[0], closed_form, 1e-12));
}

#[test]
fn threshold_zeroes_f_and_agrees_with_bisection() {
    let mut rng = SplitMix64::new(42);
    for n in [1usize, 2, 5, 10, 33] {
        for gamma in [1.0, 2.0, 20.0, 1e5] {
            let rewards: Vec<f32> = (0..n)
                .map(|_| (rng.next_f64() * 8.0 - 4.0) as f32)
                .collect();
            let probs: Vec<f32> = (0..n).map(|_| rng.next_f64() as f32 + 1e-3).collect();
            let m =
                stackelberg_threshold(&rewards, Some(&probs), 1, n, PerRow::All(gamma)).unwrap()[0];
            let (lo, hi) = rewards
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                    (lo.min(f64::from(r)), hi.max(f64::from(r)))
                });
            assert!(lo <= m && m <= hi);
            let spread = hi - lo;
            assert!(stackelberg_f(&rewards, &probs, gamma, m).abs() <= 1e-9 * gamma.max(1.0));
            // 60 bisection steps, as the reference implementation does.
            let (mut a, mut b) = (lo, hi);
            for _ in 0..60 {
                let mid = 0.5 * (a + b);
                if stackelberg_f(&rewards, &probs, gamma, mid) > 0.0 {
                    a = mid;
                } else {
                    b = mid;
                }
            }
            assert!(
                close(m, 0.5 * (a + b), 1e-6 * spread + 1e-12),
                "n {n} gamma {gamma}"
            );
        }
    }
}

#[test]
fn threshold_edge_cases() {
    // Equal rewards: the threshold is that value.
    let m = stackelberg_threshold(&[2.5; 4], None, 1, 4, PerRow::All(7.0)).unwrap();
    assert_eq!(m, vec![2.5]);
    // One candidate.
    let m = stackelberg_threshold(&[-3.0], None, 1, 1, PerRow::All(2.0)).unwrap();
    assert_eq!(m, vec![-3.0]);
    // Weight 1: the weighted mean; uniform without probs.
    let m = stackelberg_threshold(&[1.0, 2.0, 6.0], None, 1, 3, PerRow::All(1.0)).unwrap();
    assert!(close(m[0], 3.0, 1e-12));
    // All mass on the smallest reward.
    let m = stackelberg_threshold(&[1.0, 9.0], Some(&[1.0, 0.0]), 1, 2, PerRow::All(50.0)).unwrap();
    assert_eq!(m, vec![1.0]);
    // Per-row weights, and the threshold grows with the weight.
    let rewards = [0.0, 1.0, 4.0, 0.0, 1.0, 4.0];
    let m = stackelberg_threshold(&rewards, None, 2, 3, PerRow::Each(&[1.5, 15.0])).unwrap();
    assert!(m[0] < m[1]);
    // Extreme magnitudes stay finite and inside the range.
    let m = stackelberg_threshold(&[-1e30, 1e30], None, 1, 2, PerRow::All(1e300)).unwrap();
    let (lo, hi) = (f64::from(-1e30f32), f64::from(1e30f32));
    assert!((lo..=hi).contains(&m[0]), "{}", m[0]);
    // gamma = 1e300 puts the threshold at the top reward, up to rounding.
    assert!(close(m[0], hi, 1e-12 * (hi - lo)), "{}", m[0]);
}

#[test]
fn threshold_errors_name_the_argument() {
    let r = [1.0, 2.0];
    let err = |result: rshape_core::Result<Vec<f64>>| result.unwrap_err();
    assert!(matches!(
        err(stackelberg_threshold(
            &[1.0, f32::NAN],
            None,
            1,
            2,
            PerRow::All(2.0)
        )),
        Error::NonFinite {
            arg: "rewards",
            row: 0,
            col: 1,
            ..
        }
    ));
    assert!(matches!(
        err(stackelberg_threshold(
            &r,
            Some(&[1.0]),
            1,
            2,
            PerRow::All(2.0)
        )),
        Error::Shape { arg: "probs", .. }
    ));
    assert!(matches!(
        err(stackelberg_threshold(
            &r,
            Some(&[1.0, -1.0]),
            1,
            2,
            PerRow::All(2.0)
        )),
        Error::Parameter { arg: "probs", .. }
    ));
    assert!(matches!(
        err(stackelberg_threshold(
            &r,
            Some(&[0.0, 0.0]),
            1,
            2,
            PerRow::All(2.0)
        )),
        Error::Parameter { arg: "probs", .. }
    ));
    for w in [0.5, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            err(stackelberg_threshold(&r, None, 1, 2, PerRow::All(w))),
            Error::Parameter { arg: "gamma", .. }
        ));
    }
    assert!(matches!(
        err(stackelberg_threshold(
            &r,
            None,
            1,
            2,
            PerRow::Each(&[2.0, 2.0])
        )),
        Error::Shape { arg: "gamma", .. }
    ));
    assert!(matches!(
        err(stackelberg_threshold(&[], None, 1, 0, PerRow::All(2.0))),
        Error::Shape { arg: "rewards", .. }
    ));
    assert!(matches!(
        err(stackelberg_threshold(&[], None, 0, 2, PerRow::All(2.0))),
        Error::Shape { arg: "rewards", .. }
    ));
}

#[test]
fn schemes_by_their_formulas() {
    let rewards = [1.0f32, 2.0, 4.0];
    let params = ShapeParams::default();
    let shaped = |scheme| shape_rewards(&rewards, None, 1, 3, scheme, &params).unwrap();
    assert_eq!(shaped(Scheme::Raw), vec![1.0, 2.0, 4.0]);
    let mean = 7.0 / 3.0;
    let std = ((1.0f64 - mean).powi(2) + (2.0 - mean).powi(2) + (4.0 - mean).powi(2)) / 3.0;
    let want: Vec<f32> = rewards
        .iter()
        .map(|&r| ((f64::from(r) - mean) / std.sqrt()) as f32)
        .collect();
    assert_eq!(shaped(Scheme::MeanStd), want);
    // B_eff = min(12, 1.01 * 3) = 3.03.
    assert_eq!(
        shaped(Scheme::MinMax),
        vec![0.0, (3.03f64 / 3.0) as f32, 3.03]
    );
    assert_eq!(shaped(Scheme::Cap), vec![0.0, 1.0, 1.0]);
    // gamma = min(e^{3.03/2}, 2) = 2; m* solves F = 0 on (2, 4]: (1 + 2 + 2*4) / (1 + 1 + 2).
    let m = 11.0 / 4.0;
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let srs: Vec<f32> = rewards
        .iter()
        .map(|&r| (3.03 * sigmoid(1.5 * (f64::from(r) - m))) as f32)
        .collect();
    // The sigmoid is taken in float32: equal up to a few units in the last place.
    let near = |got: Vec<f32>, want: &[f32]| {
        got.iter()
            .zip(want)
            .all(|(&g, &w)| (g - w).abs() <= 4.0 * f32::EPSILON * w.abs().max(1.0))
    };
    assert!(near(shaped(Scheme::Srs), &srs));
    assert_eq!(shaped(Scheme::SrsHard), vec![0.0, 0.0, 3.03]);
    let soft: Vec<f32> = rewards
        .iter()
        .map(|&r| (3.03 * sigmoid(1.5 * (f64::from(r) - mean))) as f32)
        .collect();
    assert!(near(shaped(Scheme::MeanSoft), &soft));
    // The CD rule: gamma = e^{min(B/beta, 2)} = e^2 with spread ratio 2.
    let cd = ShapeParams {
        max_weight: None,
        max_exponent: Some(2.0),
        spread_ratio: 2.0,
        ..ShapeParams::default()
    };
    let hard = shape_rewards(&rewards, None, 1, 3, Scheme::SrsHard, &cd).unwrap();
    let gamma = 2f64.exp();
    let m_cd = (1.0 + 2.0 + gamma * 4.0) / (2.0 + gamma);
    assert!(m_cd > 2.0 && m_cd <= 4.0);
    assert_eq!(hard, vec![0.0, 0.0, 6.0]);
    assert_eq!(SCHEMES.len(), 7);
}

#[test]
fn equal_rewards_shape_to_zero() {
    for scheme in [
        Scheme::MinMax,
        Scheme::MeanSoft,
        Scheme::Srs,
        Scheme::SrsHard,
    ] {
        let shaped = shape_rewards(&[3.0; 5], None, 1, 5, scheme, &ShapeParams::default()).unwrap();
        assert_eq!(shaped, vec![0.0; 5], "{}", scheme.name());
    }
    let shaped = shape_rewards(
        &[3.0; 2],
        None,
        1,
        2,
        Scheme::MeanStd,
        &ShapeParams::default(),
    );
    assert_eq!(shaped.unwrap(), vec![0.0; 2]);
}

#[test]
fn shaping_errors_name_the_argument() {
    let r = [1.0, 2.0];
    let bad =
        |params: ShapeParams| shape_rewards(&r, None, 1, 2, Scheme::Srs, &params).unwrap_err();
    let base = ShapeParams::default();
    let cases: [(ShapeParams, &str); 8] = [
        (
            ShapeParams {
                bound: -1.0,
                ..base
            },
            "bound",
        ),
        (ShapeParams { beta: 0.0, ..base }, "beta"),
        (
            ShapeParams {
                alpha: f64::NAN,
                ..base
            },
            "alpha",
        ),
        (
            ShapeParams {
                spread_ratio: -0.1,
                ..base
            },
            "spread_ratio",
        ),
        (
            ShapeParams {
                max_weight: Some(0.9),
                ..base
            },
            "max_weight",
        ),
        (
            ShapeParams {
                max_exponent: Some(f64::INFINITY),
                ..base
            },
            "max_exponent",
        ),
        (ShapeParams { cap: -1.0, ..base }, "cap"),
        (
            ShapeParams {
                bound: f64::INFINITY,
                ..base
            },
            "bound",
        ),
    ];
    for (params, name) in cases {
        assert!(
            matches!(bad(params), Error::Parameter { arg, .. } if arg == name),
            "{name}"
        );
    }
    assert!(matches!(
        shape_rewards(&[f32::INFINITY, 1.0], None, 1, 2, Scheme::Raw, &base),
        Err(Error::NonFinite { arg: "rewards", .. })
    ));
    assert!(matches!(
        Scheme::parse("nope"),
        Err(Error::Parameter { arg: "shaping", .. })
    ));
}

fn options(choice: Choice<'static>) -> FuseOptions<'static> {
    FuseOptions {
        scheme: Scheme::Srs,
        params: ShapeParams::default(),
        weight: PerRow::All(0.5),
        probs: ProbSource::SoftmaxOfBase,
        choice,
    }
}

#[test]
fn greedy_selection_fuses_and_breaks_ties_low() {
    let base = [0.0, 0.0, 0.0, f32::NEG_INFINITY, 1.0, 1.0];
    let rewards = [1.0, 1.0, 1.0, 5.0, 0.0, 0.0];
    let selection = fuse_and_select(&base, &rewards, 2, 3, &options(Choice::Greedy)).unwrap();
    // Row 0: equal rewards shape to 0, all fused scores tie. Row 1: the -inf candidate has
    // the best reward but can never be chosen; the other two tie.
    assert_eq!(selection.chosen, vec![0, 1]);
    assert_eq!(&selection.fused[..3], &[0.0, 0.0, 0.0]);
    assert_eq!(selection.fused[3], f32::NEG_INFINITY);
}

#[test]
fn sampling_is_seeded_per_row() {
    let mut rng = SplitMix64::new(1);
    let rows = 6;
    let base: Vec<f32> = (0..rows * 5).map(|_| rng.next_f64() as f32).collect();
    let rewards: Vec<f32> = (0..rows * 5).map(|_| rng.next_f64() as f32 * 4.0).collect();
    let seeds: Vec<u64> = (0..rows as u64).map(|r| 1000 + r).collect();
    let per_row = FuseOptions {
        choice: Choice::Sample {
            params: temperature(1.0),
            seeds: Seeds::PerRow(&seeds),
        },
        ..options(Choice::Greedy)
    };
    let batch = fuse_and_select(&base, &rewards, rows, 5, &per_row).unwrap();
    let again = fuse_and_select(&base, &rewards, rows, 5, &per_row).unwrap();
    assert_eq!(batch, again);
    let from_one = FuseOptions {
        choice: Choice::Sample {
            params: temperature(1.0),
            seeds: Seeds::One(1000),
        },
        ..options(Choice::Greedy)
    };
    assert_eq!(
        fuse_and_select(&base, &rewards, rows, 5, &from_one)
            .unwrap()
            .chosen,
        batch.chosen
    );
    for r in 0..rows {
        let single = FuseOptions {
            choice: Choice::Sample {
                params: temperature(1.0),
                seeds: Seeds::One(seeds[r]),
            },
            ..options(Choice::Greedy)
        };
        let row = &base[r * 5..(r + 1) * 5];
        let row_rewards = &rewards[r * 5..(r + 1) * 5];
        let one = fuse_and_select(row, row_rewards, 1, 5, &single).unwrap();
        assert_eq!(one.chosen[0], batch.chosen[r]);
    }
}

#[test]
fn selection_errors_name_the_argument() {
    let greedy = options(Choice::Greedy);
    let ok = [0.0, 1.0];
    let run = |base: &[f32], rewards: &[f32], opts: &FuseOptions<'_>| {
        fuse_and_select(base, rewards, 1, 2, opts).unwrap_err()
    };
    assert!(matches!(
        run(&[f32::NAN, 0.0], &ok, &greedy),
        Error::NonFinite {
            arg: "base_scores",
            ..
        }
    ));
    assert!(matches!(
        run(&[f32::INFINITY, 0.0], &ok, &greedy),
        Error::NonFinite {
            arg: "base_scores",
            ..
        }
    ));
    assert!(matches!(
        run(&[f32::NEG_INFINITY; 2], &ok, &greedy),
        Error::NonFinite {
            arg: "base_scores",
            ..
        }
    ));
    assert!(matches!(
        run(&ok, &[f32::NAN, 0.0], &greedy),
        Error::NonFinite { arg: "rewards", .. }
    ));
    assert!(matches!(
        fuse_and_select(&ok, &[0.0], 1, 2, &greedy).unwrap_err(),
        Error::Shape { arg: "rewards", .. }
    ));
    let negative_weight = FuseOptions {
        weight: PerRow::All(-1.0),
        ..greedy
    };
    assert!(matches!(
        run(&ok, &ok, &negative_weight),
        Error::Parameter { arg: "weight", .. }
    ));
    let cold = options(Choice::Sample {
        params: temperature(0.0),
        seeds: Seeds::One(0),
    });
    assert!(matches!(
        run(&ok, &ok, &cold),
        Error::Parameter {
            arg: "temperature",
            ..
        }
    ));
    let short_seeds = options(Choice::Sample {
        params: temperature(1.0),
        seeds: Seeds::PerRow(&[]),
    });
    assert!(matches!(
        run(&ok, &ok, &short_seeds),
        Error::Shape { arg: "seed", .. }
    ));
}

#[test]
fn topk_public_entry() {
    let logits = [0.5, f32::NEG_INFINITY, 3.0, 3.0, -1.0, 0.5];
    let got = topk(&logits, 1, 6, 4).unwrap();
    assert_eq!(got.values, vec![3.0, 3.0, 0.5, 0.5]);
    assert_eq!(got.indices, vec![2, 3, 0, 5]);
    assert!(matches!(
        topk(&logits, 1, 6, 7),
        Err(Error::Parameter { arg: "k", .. })
    ));
}

#[test]
fn sampling_truncates_the_fused_scores() {
    let mut rng = SplitMix64::new(7);
    let (rows, cols) = (4, 6);
    let base: Vec<f32> = (0..rows * cols).map(|_| rng.next_f64() as f32).collect();
    let rewards: Vec<f32> = (0..rows * cols)
        .map(|_| rng.next_f64() as f32 * 4.0)
        .collect();
    let greedy = fuse_and_select(&base, &rewards, rows, cols, &options(Choice::Greedy)).unwrap();
    let top2: Vec<Vec<i64>> = greedy
        .fused
        .chunks_exact(cols)
        .map(|row| {
            let mut order: Vec<i64> = (0..cols as i64).collect();
            order.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
            order[..2].to_vec()
        })
        .collect();
    for seed in 0..50u64 {
        let draw = |top_k: Option<usize>, top_p: Option<f64>| {
            let params = SampleParams {
                temperature: 5.0,
                top_k,
                top_p,
            };
            let opts = options(Choice::Sample {
                params,
                seeds: Seeds::One(seed),
            });
            fuse_and_select(&base, &rewards, rows, cols, &opts)
                .unwrap()
                .chosen
        };
        // One candidate left, by either cut: the greedy choice.
        assert_eq!(draw(Some(1), None), greedy.chosen);
        assert_eq!(draw(None, Some(1e-6)), greedy.chosen);
        for (r, &c) in draw(Some(2), None).iter().enumerate() {
            assert!(top2[r].contains(&c), "row {r}: {c} outside the top 2");
        }
        // No cut at all is the plain draw.
        assert_eq!(draw(Some(cols), Some(1.0)), draw(None, None));
    }
    let bad_p = options(Choice::Sample {
        params: SampleParams {
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.0),
        },
        seeds: Seeds::One(0),
    });
    assert!(matches!(
        fuse_and_select(&base, &rewards, rows, cols, &bad_p).unwrap_err(),
        Error::Parameter { arg: "top_p", .. }
    ));
}
