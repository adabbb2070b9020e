"""Hypothesis properties of the threshold, the shaping schemes, fusion and top-k.

Arrays are built by numpy from a few drawn parameters (size, number of distinct values,
magnitude, share of infinities, seed), which reaches rows of 10^4 entries quickly and still
shrinks to small, readable cases.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from rshape_fast import (
    SCHEMES,
    ShapeParams,
    fuse_and_select,
    shape_rewards,
    stackelberg_threshold,
    topk,
)

FAST = settings(max_examples=150, deadline=None)


@st.composite
def reward_rows(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Finite float32 rewards ``[B, n]`` (ties, equal rows, magnitudes up to 1e30) and
    positive probabilities of the same shape."""
    b = draw(st.integers(1, 4))
    n = draw(st.integers(1, 12))
    magnitude = draw(st.sampled_from([1e-3, 1.0, 1e3, 1e15, 1e30]))
    distinct = draw(st.integers(1, 2 * n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = rng.uniform(-1.0, 1.0, distinct) * magnitude
    rewards = rng.choice(pool, size=(b, n)).astype(np.float32)
    if draw(st.booleans()):
        rewards[0] = rewards[0, 0]  # a row of equal rewards
    probs = (rng.random((b, n)) + draw(st.sampled_from([1e-6, 0.1, 1.0]))).astype(np.float32)
    return rewards, probs


def spread(row: np.ndarray) -> float:
    return float(row.astype(np.float64).max() - row.astype(np.float64).min())


weights = st.floats(1.0, 1e4)


@FAST
@given(reward_rows(), weights, st.booleans())
def test_threshold_is_the_root_of_f(data: tuple[np.ndarray, np.ndarray], weight, uniform):
    rewards, probs = data
    p = None if uniform else probs
    m = stackelberg_threshold(rewards, p, gamma=weight)
    for i, row in enumerate(rewards):
        row_p = None if p is None else p[i]
        span = spread(row)
        assert row.min() <= m[i] <= row.max()
        assert abs(ref.stackelberg_f(row, row_p, weight, m[i])) <= 1e-6 * span
        assert abs(m[i] - ref.threshold(row, row_p, weight)) <= 1e-6 * span
        if span == 0:
            assert m[i] == row[0]


@FAST
@given(reward_rows(), weights, weights)
def test_threshold_does_not_decrease_with_the_weight(data, w1, w2):
    rewards, probs = data
    low, high = sorted((w1, w2))
    m_low = stackelberg_threshold(rewards, probs, gamma=low)
    m_high = stackelberg_threshold(rewards, probs, gamma=high)
    for i, row in enumerate(rewards):
        assert m_low[i] <= m_high[i] + 1e-12 * spread(row)


@FAST
@given(reward_rows())
def test_threshold_at_weight_one_is_the_weighted_mean(data):
    rewards, probs = data
    m = stackelberg_threshold(rewards, probs, gamma=1.0)
    for i, row in enumerate(rewards):
        r = row.astype(np.float64)
        p = probs[i].astype(np.float64)
        lo = r.min()
        mean = lo + float(np.sum(p * (r - lo)) / p.sum())
        assert abs(m[i] - mean) <= 1e-9 * spread(row)


@FAST
@given(reward_rows(), st.sampled_from(SCHEMES), st.floats(0.0, 20.0), st.floats(0.0, 5.0))
def test_shaping_is_monotone_and_bounded(data, scheme, bound, alpha):
    rewards, probs = data
    params = ShapeParams(bound=bound, alpha=alpha)
    shaped = shape_rewards(rewards, shaping=scheme, probs=probs, params=params)
    for i, row in enumerate(rewards):
        order = np.argsort(row, kind="stable")
        steps = np.diff(shaped[i][order].astype(np.float64))
        assert np.all(steps >= -1e-6 * max(1.0, float(np.abs(shaped[i]).max())))
        if scheme in ("minmax", "meansoft", "srs", "srs_hard"):
            b_eff = min(bound, params.spread_ratio * spread(row))
            assert np.all(shaped[i] >= 0)
            assert np.all(shaped[i] <= np.float32(b_eff) * (1 + 1e-6))


@st.composite
def logit_rows(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """Float32 logits ``[B, V]`` with ties, infinities and large magnitudes, and a k."""
    b = draw(st.integers(1, 3))
    v = draw(st.one_of(st.integers(1, 80), st.integers(256, 20000)))
    k = draw(st.one_of(st.integers(1, min(v, 50)), st.integers(1, v)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    magnitude = draw(st.sampled_from([1.0, 1e10, 1e30]))
    if draw(st.booleans()):
        pool = rng.standard_normal(draw(st.integers(1, 6))) * magnitude
        x = rng.choice(pool, size=(b, v))
    else:
        x = rng.standard_normal((b, v)) * magnitude
    x = x.astype(np.float32)
    for value, share in ((-np.inf, draw(st.sampled_from([0, 0.01, 0.5, 1.0]))), (np.inf, 0.001)):
        x[rng.random((b, v)) < share] = value
    return x, k


@settings(max_examples=200, deadline=None)
@given(logit_rows())
def test_topk_equals_the_reference_exactly(data):
    x, k = data
    values, indices = topk(x, k)
    want_values, want_indices = ref.topk(x, k)
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_array_equal(values, want_values)


@FAST
@given(reward_rows(), st.sampled_from(SCHEMES), st.floats(0.0, 3.0), st.data())
def test_greedy_choice_is_the_first_maximum_of_the_fused_scores(data, scheme, weight, extra):
    rewards, probs = data
    rng = np.random.default_rng(extra.draw(st.integers(0, 2**32 - 1)))
    base = rng.standard_normal(rewards.shape).astype(np.float32)
    base[rng.random(base.shape) < 0.3] = -np.inf
    base[:, 0] = 0.0  # keep every row choosable
    given_probs = probs if extra.draw(st.booleans()) else None
    chosen, fused = fuse_and_select(base, rewards, weight=weight, shaping=scheme, probs=given_probs)
    np.testing.assert_array_equal(chosen, np.argmax(fused, axis=1))
    np.testing.assert_array_equal(np.isfinite(fused), np.isfinite(base))
