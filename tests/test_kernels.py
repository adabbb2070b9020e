"""Every kernel against the slow numpy reference in ``reference.py``, plus input coercion,
seeded sampling and every bad-input path."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest

import reference as ref
import rshape_fast
from rshape_fast import (
    SCHEMES,
    ShapeParams,
    _core,
    fuse_and_select,
    shape_rewards,
    stackelberg_threshold,
    topk,
)
from rshape_fast.errors import InputTypeError, NonFiniteError, ParameterError, ShapeError

RNG = np.random.default_rng(20240601)


def logits(b: int, v: int, *, scale: float = 3.0) -> np.ndarray:
    return (RNG.standard_normal((b, v)) * scale).astype(np.float32)


# --- top-k ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("v", "k"),
    [(v, k) for v in (1, 7, 64, 65, 1000, 32000, 151936) for k in (1, 10, 40) if k <= v],
)
def test_topk_matches_stable_argsort(v: int, k: int) -> None:
    x = logits(3, v)
    values, indices = topk(x, k)
    want_values, want_indices = ref.topk(x, k)
    assert values.dtype == np.float32 and indices.dtype == np.int64
    assert values.shape == indices.shape == (3, k)
    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(indices, want_indices)


@pytest.mark.parametrize("k", [1, 5, 64, 300, 5000])
def test_topk_ties_infinities_and_large_k(k: int) -> None:
    x = RNG.integers(0, 4, size=(4, 5000)).astype(np.float32)
    x[1, ::7] = -np.inf
    x[2, :] = -np.inf
    x[2, 4321] = 1.0
    x[3, ::11] = np.inf
    x[3, 1::2] = -0.0
    values, indices = topk(x, k)
    want_values, want_indices = ref.topk(x, k)
    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(indices, want_indices)
    # Signed zeros come back exactly as stored.
    np.testing.assert_array_equal(np.signbit(values), np.signbit(want_values))


def test_topk_ascending_and_constant_rows() -> None:
    x = np.stack([np.arange(40000, dtype=np.float32), np.zeros(40000, dtype=np.float32)])
    values, indices = topk(x, 10)
    np.testing.assert_array_equal(indices[0], np.arange(39999, 39989, -1))
    np.testing.assert_array_equal(indices[1], np.arange(10))
    np.testing.assert_array_equal(values[1], np.zeros(10, dtype=np.float32))


def test_topk_coerces_dtype_layout_and_one_row() -> None:
    x = logits(4, 2000)
    want_values, want_indices = ref.topk(x, 5)
    for variant in (x.astype(np.float64), np.asfortranarray(x), x.tolist()):
        values, indices = topk(variant, 5)
        np.testing.assert_array_equal(values, want_values)
        np.testing.assert_array_equal(indices, want_indices)
    wide = np.repeat(x, 2, axis=1)  # strided view with every other column = x
    values, indices = topk(wide[:, ::2], 5)
    np.testing.assert_array_equal(values, want_values)
    values, indices = topk(x[2], 5)
    assert values.shape == indices.shape == (5,)
    np.testing.assert_array_equal(indices, want_indices[2])


def test_topk_bad_input() -> None:
    x = logits(2, 100)
    bad = x.copy()
    bad[1, 57] = np.nan
    with pytest.raises(NonFiniteError, match=r"logits.*row 1, column 57"):
        topk(bad, 3)
    for k in (0, -1, 101):
        with pytest.raises(ParameterError, match="k"):
            topk(x, k)
    with pytest.raises(ShapeError, match="logits"):
        topk(x.reshape(2, 10, 10), 3)
    with pytest.raises(ShapeError, match="logits"):
        topk(np.float32(1.0), 1)
    with pytest.raises(ShapeError, match="logits"):
        topk(np.zeros((0, 5), dtype=np.float32), 1)
    with pytest.raises(ShapeError, match="logits"):
        topk(np.zeros(0, dtype=np.float32), 1)


# --- Stackelberg threshold ------------------------------------------------------------


def test_threshold_toy_example_of_the_paper() -> None:
    m = stackelberg_threshold([1.0, 2.0], [0.9, 0.1], gamma=math.exp(3.0))
    assert isinstance(m, float)
    gamma = math.exp(3.0)
    # The closed form of the doc, with the probabilities as the float32 the kernel sees.
    p_low, p_high = float(np.float32(0.9)), float(np.float32(0.1))
    exact = (p_low * 1 + p_high * gamma * 2) / (p_low + p_high * gamma)
    assert m == pytest.approx(exact, abs=1e-12)
    assert m == pytest.approx(1.6906, abs=1e-4)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 64])
@pytest.mark.parametrize("weight", [1.0, 1.5, 2.0, math.exp(3.0), 1e4])
def test_threshold_matches_bisection(n: int, weight: float) -> None:
    r = (RNG.standard_normal((5, n)) * 4).astype(np.float32)
    r[0] = r[0, 0]  # one row of equal rewards
    p = RNG.random((5, n)).astype(np.float32) + 0.01
    for probs in (None, p):
        got = stackelberg_threshold(r, probs, gamma=weight)
        assert got.dtype == np.float64 and got.shape == (5,)
        for i in range(5):
            row_p = None if probs is None else probs[i]
            want = ref.threshold(r[i], row_p, weight)
            spread = float(r[i].max() - r[i].min())
            assert abs(got[i] - want) <= 1e-6 * spread + 1e-12
        assert got[0] == r[0, 0]


def test_threshold_per_row_weights_and_probs_renormalised() -> None:
    r = logits(4, 10)
    p = RNG.random((4, 10)).astype(np.float32)
    weights = np.array([1.0, 2.0, 7.5, 100.0])
    got = stackelberg_threshold(r, p, gamma=weights)
    # Scaling by a power of two is exact in float32, so the result must not move at all.
    scaled = stackelberg_threshold(r, p * 32.0, gamma=list(weights))
    np.testing.assert_allclose(got, scaled, rtol=0, atol=1e-12)
    for i in range(4):
        assert got[i] == pytest.approx(ref.threshold(r[i], p[i], weights[i]), abs=1e-6)
        assert got[i] == stackelberg_threshold(r[i], p[i], gamma=float(weights[i]))


def test_threshold_at_weight_one_is_the_weighted_mean() -> None:
    r = logits(3, 9)
    p = RNG.random((3, 9)).astype(np.float32)
    got = stackelberg_threshold(r, p, gamma=1.0)
    want = (p.astype(np.float64) * r).sum(axis=1) / p.astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        stackelberg_threshold(r, gamma=1.0), r.astype(np.float64).mean(axis=1), atol=1e-9
    )


def test_threshold_probability_zero_candidates_do_not_count() -> None:
    m = stackelberg_threshold([1.0, 2.0, 100.0], [0.5, 0.5, 0.0], gamma=3.0)
    assert m == pytest.approx(ref.threshold([1.0, 2.0], None, 3.0), abs=1e-12)


def test_threshold_bad_input() -> None:
    r = logits(2, 4)
    with pytest.raises(NonFiniteError, match="rewards"):
        stackelberg_threshold(np.array([1.0, np.nan]), gamma=2.0)
    with pytest.raises(NonFiniteError, match="rewards"):
        stackelberg_threshold(np.array([1.0, np.inf]), gamma=2.0)
    with pytest.raises(ShapeError, match="probs"):
        stackelberg_threshold(r, np.ones((2, 3)), gamma=2.0)
    with pytest.raises(ParameterError, match="probs"):
        stackelberg_threshold(r, np.array([[1, -1, 1, 1], [1, 1, 1, 1]]), gamma=2.0)
    with pytest.raises(ParameterError, match="probs"):
        stackelberg_threshold(r, np.zeros((2, 4)), gamma=2.0)
    with pytest.raises(NonFiniteError, match="probs"):
        stackelberg_threshold(r, np.full((2, 4), np.nan), gamma=2.0)
    for weight in (0.5, -1.0, float("nan"), float("inf")):
        with pytest.raises(ParameterError, match="gamma"):
            stackelberg_threshold(r, gamma=weight)
    with pytest.raises(ParameterError, match="gamma"):
        stackelberg_threshold(r, gamma=[2.0, 0.9])
    with pytest.raises(ShapeError, match="gamma"):
        stackelberg_threshold(r, gamma=[2.0, 2.0, 2.0])
    with pytest.raises(ShapeError, match="gamma"):
        stackelberg_threshold(r, gamma=np.ones((2, 1)))
    with pytest.raises(ParameterError, match="gamma"):
        stackelberg_threshold(r, gamma="heavy")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="rewards"):
        stackelberg_threshold(np.zeros((2, 0)), gamma=2.0)
    with pytest.raises(ShapeError, match="rewards"):
        stackelberg_threshold(np.zeros((1, 2, 3)), gamma=2.0)


# --- shaping --------------------------------------------------------------------------

KNOB_SETS = [
    {},  # token-level ARGS defaults
    {"max_weight": None, "max_exponent": 2.0, "spread_ratio": 2.0, "bound": 15.0, "beta": 0.667},
    {"max_weight": None, "max_exponent": None, "bound": 3.0, "beta": 1.0, "alpha": 4.0},
    {"bound": 0.5, "cap": 0.25, "alpha": 0.0},
]


def assert_shaped_close(got: np.ndarray, r: np.ndarray, scheme: str, probs, knobs) -> None:
    for i in range(r.shape[0]):
        row_p = None if probs is None else probs[i]
        want, m = ref.shape_row(r[i], shaping=scheme, probs=row_p, params=ShapeParams(**knobs))
        scale = max(1.0, float(np.abs(want).max()))
        close = np.isclose(got[i], want, rtol=1e-5, atol=1e-5 * scale)
        if scheme == "srs_hard" and m is not None:
            # A reward within rounding of the threshold may fall on either side.
            spread = float(r[i].max() - r[i].min())
            close |= np.abs(r[i].astype(np.float64) - m) <= 1e-9 * spread
        assert close.all(), (scheme, knobs, i, got[i], want)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("knobs", KNOB_SETS)
def test_shape_rewards_matches_reference(scheme: str, knobs: dict) -> None:
    r = (RNG.standard_normal((6, 10)) * 3).astype(np.float32)
    r[1] = 4.0  # equal rewards
    r[2, :5] = r[2, 5:]  # ties
    p = RNG.random((6, 10)).astype(np.float32)
    for probs in (None, p):
        got = shape_rewards(r, shaping=scheme, probs=probs, params=ShapeParams(**knobs))
        assert got.dtype == np.float32 and got.shape == r.shape
        assert_shaped_close(got, r, scheme, probs, knobs)


def test_equal_rewards_shape_to_half_the_effective_bound() -> None:
    # B_eff = min(B, rho * 0) = 0, so every soft-shaped reward is B_eff / 2 = 0.
    for scheme in ("srs", "meansoft", "minmax"):
        np.testing.assert_array_equal(shape_rewards(np.full(5, 2.5), shaping=scheme), 0.0)


def test_shape_rewards_is_monotone_within_a_row() -> None:
    r = logits(4, 12)
    for scheme in SCHEMES:
        shaped = shape_rewards(r, shaping=scheme)
        for i in range(4):
            order = np.argsort(r[i], kind="stable")
            assert np.all(np.diff(shaped[i][order]) >= -1e-6), scheme


def test_shape_rewards_one_row_and_coercion() -> None:
    r = logits(3, 8)
    want = shape_rewards(r, shaping="srs")
    np.testing.assert_array_equal(shape_rewards(r[1], shaping="srs"), want[1])
    np.testing.assert_array_equal(shape_rewards(r.astype(np.float64), shaping="srs"), want)
    np.testing.assert_array_equal(shape_rewards(np.asfortranarray(r), shaping="srs"), want)


def test_shape_rewards_bad_input() -> None:
    r = logits(2, 5)
    with pytest.raises(ParameterError, match="scheme"):
        shape_rewards(r, shaping="softmax")
    bad_knobs = [
        ("bound", -1.0),
        ("bound", float("inf")),
        ("beta", 0.0),
        ("alpha", -0.5),
        ("spread_ratio", float("nan")),
        ("max_weight", 0.5),
        ("max_exponent", -1.0),
        ("cap", -2.0),
    ]
    for name, value in bad_knobs:
        with pytest.raises(ParameterError, match=name):
            shape_rewards(r, shaping="srs", params=ShapeParams(**{name: value}))
    bad = r.copy()
    bad[0, 3] = np.nan
    with pytest.raises(NonFiniteError, match=r"rewards.*row 0, column 3"):
        shape_rewards(bad, shaping="raw")
    with pytest.raises(ShapeError, match="probs"):
        shape_rewards(r, shaping="srs", probs=np.ones((2, 4)))
    with pytest.raises(ShapeError, match="rewards"):
        shape_rewards(np.zeros((0, 3)), shaping="srs")


# --- shaping parameters ---------------------------------------------------------------


def test_shape_params_defaults_are_the_token_level_args_setting() -> None:
    p = ShapeParams()
    assert p.to_dict() == {
        "bound": 12.0,
        "beta": 2.0,
        "alpha": 1.5,
        "spread_ratio": 1.01,
        "max_weight": 2.0,
        "max_exponent": None,
        "cap": 1.0,
    }
    assert (p.bound, p.beta, p.alpha, p.spread_ratio) == (12.0, 2.0, 1.5, 1.01)
    assert (p.max_weight, p.max_exponent, p.cap) == (2.0, None, 1.0)
    assert rshape_fast.ShapeParams is ShapeParams and "ShapeParams" in rshape_fast.__all__


def test_shape_params_none_means_no_cap_and_omitted_means_default() -> None:
    cd = ShapeParams(max_weight=None, max_exponent=2.0, spread_ratio=2.0, bound=15.0, beta=0.667)
    assert cd.max_weight is None and cd.max_exponent == 2.0
    assert ShapeParams(alpha=3).max_weight == 2.0
    assert cd.replace(max_weight=4.0, alpha=0.5).to_dict() == {
        **cd.to_dict(),
        "max_weight": 4.0,
        "alpha": 0.5,
    }
    assert cd.replace() == cd and cd.replace(alpha=1.5) is not cd


def test_shape_params_value_semantics() -> None:
    p = ShapeParams(bound=3.0, max_weight=None, cap=0.25)
    assert p == ShapeParams(**p.to_dict()) and p != ShapeParams()
    assert p != p.to_dict()
    assert hash(p) == hash(ShapeParams(bound=3, max_weight=None, cap=0.25))
    assert len({p, ShapeParams(**p.to_dict()), ShapeParams()}) == 2
    assert ShapeParams(alpha=-0.0) == ShapeParams(alpha=0.0)
    assert hash(ShapeParams(alpha=-0.0)) == hash(ShapeParams(alpha=0.0))
    assert eval(repr(p), {"ShapeParams": ShapeParams}) == p
    assert repr(ShapeParams()).startswith("ShapeParams(bound=12.0, beta=2.0,")
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(p, protocol)) == p
    assert copy.copy(p) == p and copy.deepcopy(p) == p
    with pytest.raises(AttributeError):
        p.bound = 1.0  # type: ignore[misc]


def test_shape_params_bad_knobs() -> None:
    for knobs in (
        {"bound": -1.0},
        {"beta": 0.0},
        {"max_weight": 0.5},
        {"max_exponent": float("nan")},
        {"bound": None},
        {"alpha": "x"},
    ):
        name = next(iter(knobs))
        with pytest.raises(ParameterError, match=f"^{name}:"):
            ShapeParams(**knobs)  # type: ignore[arg-type]
        with pytest.raises(ParameterError, match=f"^{name}:"):
            ShapeParams().replace(**knobs)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="bogus"):
        ShapeParams(bogus=1.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ShapeParams(12.0)  # type: ignore[misc]


def test_kernels_take_shape_params_or_none() -> None:
    r = logits(3, 6)
    base = logits(3, 6)
    for scheme in SCHEMES:
        np.testing.assert_array_equal(
            shape_rewards(r, shaping=scheme, params=ShapeParams()), shape_rewards(r, shaping=scheme)
        )
    capless = ShapeParams(max_weight=None, bound=30.0, spread_ratio=5.0)
    want, _ = ref.shape_row(r[0], shaping="srs", params=capless)
    assert not np.allclose(want, ref.shape_row(r[0], shaping="srs")[0])
    np.testing.assert_allclose(
        shape_rewards(r, shaping="srs", params=capless)[0], want, rtol=1e-5, atol=1e-5
    )
    _, fused = fuse_and_select(base, r, weight=1.0, params=capless)
    for i in range(3):
        np.testing.assert_allclose(
            fused[i], ref.fuse_row(base[i], r[i], weight=1.0, params=capless), rtol=1e-5, atol=1e-4
        )
    for bad in ({"bound": 1.0}, 1.0, "srs"):
        with pytest.raises(InputTypeError, match=r"^params:"):
            shape_rewards(r, shaping="srs", params=bad)  # type: ignore[arg-type]
        with pytest.raises(InputTypeError, match=r"^params:"):
            fuse_and_select(base, r, weight=1.0, params=bad)  # type: ignore[arg-type]


# --- fuse and select ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("probs_from_base", [True, False])
def test_fuse_and_select_greedy_matches_reference(scheme: str, probs_from_base: bool) -> None:
    base = logits(16, 10)
    base[3, [0, 4]] = -np.inf
    rewards = (RNG.standard_normal((16, 10)) * 2).astype(np.float32)
    weights = RNG.random(16) * 2
    for weight in (0.5, weights):
        chosen, fused = fuse_and_select(
            base, rewards, weight=weight, shaping=scheme, probs_from_base=probs_from_base
        )
        assert chosen.dtype == np.int64 and chosen.shape == (16,)
        assert fused.dtype == np.float32 and fused.shape == (16, 10)
        for i in range(16):
            w = weight if np.isscalar(weight) else weight[i]
            want = ref.fuse_row(
                base[i], rewards[i], weight=w, shaping=scheme, probs_from_base=probs_from_base
            )
            finite = np.isfinite(want)
            np.testing.assert_array_equal(np.isfinite(fused[i]), finite)
            np.testing.assert_allclose(fused[i][finite], want[finite], rtol=1e-5, atol=1e-4)
            # The argmax of what we return, first index on ties...
            assert chosen[i] == int(np.argmax(fused[i]))
            # ...which is also a maximum of the exact fused scores, up to float32 rounding.
            assert want[chosen[i]] >= want.max() - 1e-4 * max(1.0, abs(want.max()))
        assert 0 not in chosen[3:4] and 4 not in chosen[3:4]


def test_fuse_and_select_ties_go_to_the_lower_index() -> None:
    chosen, _ = fuse_and_select(np.zeros((2, 5)), np.ones((2, 5)), weight=1.0)
    np.testing.assert_array_equal(chosen, [0, 0])
    chosen, _ = fuse_and_select(
        np.array([[-np.inf, 1.0, 3.0, 3.0]]), np.zeros((1, 4)), weight=0.5, shaping="raw"
    )
    assert chosen[0] == 2


def test_fuse_and_select_uses_given_probs_and_uniform() -> None:
    base = logits(4, 6)
    rewards = logits(4, 6)
    probs = RNG.random((4, 6)).astype(np.float32)
    _, with_probs = fuse_and_select(base, rewards, weight=1.0, probs=probs)
    _, uniform = fuse_and_select(base, rewards, weight=1.0, probs_from_base=False)
    for i in range(4):
        want = ref.fuse_row(base[i], rewards[i], weight=1.0, probs=probs[i])
        np.testing.assert_allclose(with_probs[i], want, rtol=1e-5, atol=1e-4)
        want = ref.fuse_row(base[i], rewards[i], weight=1.0, probs_from_base=False)
        np.testing.assert_allclose(uniform[i], want, rtol=1e-5, atol=1e-4)


def test_fuse_and_select_one_row_and_coercion() -> None:
    base = logits(3, 10)
    rewards = logits(3, 10)
    chosen, fused = fuse_and_select(base, rewards, weight=0.5)
    one, one_fused = fuse_and_select(base[1].astype(np.float64), rewards[1].tolist(), weight=0.5)
    assert isinstance(one, int) and one == chosen[1]
    np.testing.assert_array_equal(one_fused, fused[1])
    strided, strided_fused = fuse_and_select(
        np.repeat(base, 2, axis=1)[:, ::2], np.asfortranarray(rewards), weight=0.5
    )
    np.testing.assert_array_equal(strided, chosen)
    np.testing.assert_array_equal(strided_fused, fused)


def test_sampling_is_deterministic_per_row_seed() -> None:
    base = logits(8, 10, scale=1.0)
    rewards = logits(8, 10)
    seeds = np.arange(100, 108, dtype=np.uint64)
    kw = {"weight": 0.5, "greedy": False, "temperature": 1.5}
    first, _ = fuse_and_select(base, rewards, seed=seeds, **kw)
    again, _ = fuse_and_select(base, rewards, seed=seeds, **kw)
    np.testing.assert_array_equal(first, again)
    # Row r's draw depends on its own seed only: one row at a time agrees with the batch,
    # with an int seed (row 0 of a call gets the seed itself) or a one-element array.
    for i in range(8):
        one, _ = fuse_and_select(base[i], rewards[i], seed=int(seeds[i]), **kw)
        assert one == first[i]
        one, _ = fuse_and_select(base[i : i + 1], rewards[i : i + 1], seed=seeds[i : i + 1], **kw)
        assert one[0] == first[i]
    # An int seed s gives row r the seed s + r.
    from_int, _ = fuse_and_select(base, rewards, seed=100, **kw)
    np.testing.assert_array_equal(from_int, first)
    signed, _ = fuse_and_select(base, rewards, seed=seeds.astype(np.int64).tolist(), **kw)
    np.testing.assert_array_equal(signed, first)


def test_sampling_follows_the_softmax_of_the_fused_scores() -> None:
    n = 20000
    base = np.tile(np.array([0.0, 0.5, -1.0, 1.0, -np.inf], dtype=np.float32), (n, 1))
    rewards = np.tile(np.array([1.0, 0.0, 3.0, 2.0, 9.0], dtype=np.float32), (n, 1))
    temperature = 0.8
    chosen, fused = fuse_and_select(
        base,
        rewards,
        weight=0.7,
        greedy=False,
        temperature=temperature,
        seed=np.arange(n, dtype=np.uint64),
    )
    want = ref.softmax(fused[0].astype(np.float64) / temperature)
    freq = np.bincount(chosen, minlength=5) / n
    assert freq[4] == 0.0  # a -inf base score is never drawn
    np.testing.assert_allclose(freq, want, atol=0.015)


def test_sampling_without_a_seed_varies() -> None:
    base = np.zeros((200, 4), dtype=np.float32)
    rewards = np.zeros((200, 4), dtype=np.float32)
    a, _ = fuse_and_select(base, rewards, weight=1.0, greedy=False)
    b, _ = fuse_and_select(base, rewards, weight=1.0, greedy=False)
    assert len(set(a.tolist())) == 4
    assert not np.array_equal(a, b)


def test_fuse_and_select_bad_input() -> None:
    base = logits(2, 4)
    rewards = logits(2, 4)
    bad = base.copy()
    bad[1, 2] = np.nan
    with pytest.raises(NonFiniteError, match=r"base_scores.*row 1, column 2"):
        fuse_and_select(bad, rewards, weight=1.0)
    bad[1, 2] = np.inf
    with pytest.raises(NonFiniteError, match="base_scores"):
        fuse_and_select(bad, rewards, weight=1.0)
    bad = base.copy()
    bad[0] = -np.inf
    with pytest.raises(NonFiniteError, match=r"base_scores.*row 0"):
        fuse_and_select(bad, rewards, weight=1.0)
    bad = rewards.copy()
    bad[0, 0] = -np.inf
    with pytest.raises(NonFiniteError, match="rewards"):
        fuse_and_select(base, bad, weight=1.0)
    with pytest.raises(ShapeError, match="rewards"):
        fuse_and_select(base, rewards[:, :3], weight=1.0)
    with pytest.raises(ShapeError, match="probs"):
        fuse_and_select(base, rewards, weight=1.0, probs=np.ones((3, 4)))
    with pytest.raises(ShapeError, match="base_scores"):
        fuse_and_select(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), weight=1.0)
    for weight in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ParameterError, match="weight"):
            fuse_and_select(base, rewards, weight=weight)
    with pytest.raises(ShapeError, match="weight"):
        fuse_and_select(base, rewards, weight=[1.0, 1.0, 1.0])
    for temperature in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ParameterError, match="temperature"):
            fuse_and_select(base, rewards, weight=1.0, greedy=False, temperature=temperature)
    with pytest.raises(ParameterError, match="scheme"):
        fuse_and_select(base, rewards, weight=1.0, shaping="bogus")
    with pytest.raises(ParameterError, match="beta"):
        fuse_and_select(base, rewards, weight=1.0, params=ShapeParams(beta=-2.0))
    sample = {"weight": 1.0, "greedy": False}
    for seed in (-1, 2**64, 1.5, "seed", [1.5, 2.5], np.array([-1, 2])):
        with pytest.raises(ParameterError, match="seed"):
            fuse_and_select(base, rewards, seed=seed, **sample)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="seed"):
        fuse_and_select(base, rewards, seed=np.arange(3, dtype=np.uint64), **sample)
    with pytest.raises(ShapeError, match="seed"):
        fuse_and_select(base, rewards, seed=np.zeros((2, 1), dtype=np.uint64), **sample)


# --- next-token sampling ----------------------------------------------------------------


SAMPLING_KNOBS = [
    (1.0, None, None),
    (0.7, None, 0.9),
    (0.7, 40, 0.9),
    (1.3, 5, None),
    (0.7, None, 0.3),
]


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), SAMPLING_KNOBS)
@pytest.mark.parametrize("scale", [0.3, 3.0, 10.0])
def test_sample_tokens_matches_reference(
    temperature: float, top_k: int | None, top_p: float | None, scale: float
) -> None:
    # Flat rows (scale 0.3) push the nucleus past the first weight cutoffs.
    x = logits(64, 5000, scale=scale)
    u = RNG.random(64)
    got = _core.sample_tokens(x, u, temperature=temperature, top_k=top_k, top_p=top_p)
    want = [ref.sample_token(r, ui, temperature, top_k, top_p) for r, ui in zip(x, u, strict=True)]
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), SAMPLING_KNOBS)
def test_sample_tokens_torch_twin_draws_the_same_tokens(
    temperature: float, top_k: int | None, top_p: float | None
) -> None:
    torch = pytest.importorskip("torch")
    from rshape_fast.decoding.token_draws import sample_tokens_torch

    x = logits(64, 49152)
    u = RNG.random(64)
    got = _core.sample_tokens(x, u, temperature=temperature, top_k=top_k, top_p=top_p)
    twin = sample_tokens_torch(
        torch.from_numpy(x), u, temperature=temperature, top_k=top_k, top_p=top_p
    )
    np.testing.assert_array_equal(got, twin.numpy())


def test_sample_tokens_edge_rows() -> None:
    # -inf has no mass; u = 0 takes the first token with mass; a tiny top-p keeps one.
    x = np.array([[-np.inf, 0.0, 0.0, -np.inf], [0.0, 5.0, 1.0, 2.0]], dtype=np.float32)
    u = np.array([0.0, 0.99])
    assert _core.sample_tokens(x, u, temperature=1.0).tolist() == [1, 3]
    assert _core.sample_tokens(x, u, temperature=1.0, top_p=1e-6).tolist() == [1, 1]
    assert _core.sample_tokens(x, u, temperature=1.0, top_k=10**6).tolist() == [1, 3]


def test_sample_tokens_bad_input() -> None:
    x = logits(2, 8)
    u = np.array([0.1, 0.2])
    nan = x.copy()
    nan[1, 3] = np.nan
    with pytest.raises(NonFiniteError, match="row 1, column 3"):
        _core.sample_tokens(nan, u, temperature=1.0)
    inf = x.copy()
    inf[0, 0] = np.inf
    with pytest.raises(NonFiniteError, match="logits"):
        _core.sample_tokens(inf, u, temperature=1.0)
    with pytest.raises(ParameterError, match="no finite logit"):
        _core.sample_tokens(np.full((2, 8), -np.inf, np.float32), u, temperature=1.0)
    for bad_u in (np.array([0.1, 1.0]), np.array([-0.1, 0.5]), np.array([np.nan, 0.5])):
        with pytest.raises(ParameterError, match="uniforms"):
            _core.sample_tokens(x, bad_u, temperature=1.0)
    with pytest.raises(ShapeError, match="uniforms"):
        _core.sample_tokens(x, np.array([0.1, 0.2, 0.3]), temperature=1.0)
    with pytest.raises(ShapeError, match="uniforms"):
        _core.sample_tokens(x, np.zeros((2, 1)), temperature=1.0)
    with pytest.raises(TypeError, match="uniforms"):
        _core.sample_tokens(x, [0.1, 0.2], temperature=1.0)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="uniforms: must be C-contiguous"):
        _core.sample_tokens(x, np.array([0.1, 0.5, 0.2, 0.7])[::2], temperature=1.0)
    with pytest.raises(TypeError, match="float32"):
        _core.sample_tokens(x.astype(np.float64), u, temperature=1.0)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="C-contiguous"):
        _core.sample_tokens(np.asfortranarray(logits(8, 8)), RNG.random(8), temperature=1.0)
    for temperature in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ParameterError, match="temperature"):
            _core.sample_tokens(x, u, temperature=temperature)
    for top_k in (0, -1):
        with pytest.raises(ParameterError, match="top_k: must be >= 1"):
            _core.sample_tokens(x, u, temperature=1.0, top_k=top_k)
    for top_p in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ParameterError, match="top_p"):
            _core.sample_tokens(x, u, temperature=1.0, top_p=top_p)


def test_errors_are_value_errors_and_exports() -> None:
    assert issubclass(ShapeError, ValueError)
    assert issubclass(NonFiniteError, ValueError)
    assert issubclass(ParameterError, ValueError)
    assert SCHEMES == ("raw", "meanstd", "minmax", "cap", "meansoft", "srs", "srs_hard")
    assert SCHEMES is _core.SCHEMES
    assert issubclass(InputTypeError, ValueError) and issubclass(InputTypeError, TypeError)
    for name in ("topk", "stackelberg_threshold", "shape_rewards", "fuse_and_select", "SCHEMES"):
        assert name in rshape_fast.__all__
        assert getattr(rshape_fast, name).__doc__ or name == "SCHEMES"


def test_old_argument_names_still_work_with_a_deprecation_warning():
    rewards = np.array([[0.0, 1.0, 3.0]], dtype=np.float32)
    with pytest.warns(DeprecationWarning, match=r"stackelberg_threshold\(weight=...\) is now"):
        old = rshape_fast.stackelberg_threshold(rewards, weight=2.0)
    np.testing.assert_array_equal(old, rshape_fast.stackelberg_threshold(rewards, gamma=2.0))
    with pytest.warns(DeprecationWarning, match=r"shape_rewards\(scheme=...\) is now"):
        old = rshape_fast.shape_rewards(rewards, scheme="srs")
    np.testing.assert_array_equal(old, rshape_fast.shape_rewards(rewards, shaping="srs"))
    with pytest.warns(DeprecationWarning, match=r"fuse_and_select\(scheme=...\) is now"):
        old_pick, _ = rshape_fast.fuse_and_select(rewards, rewards, weight=0.5, scheme="raw")
    new_pick, _ = rshape_fast.fuse_and_select(rewards, rewards, weight=0.5, shaping="raw")
    np.testing.assert_array_equal(old_pick, new_pick)
    with pytest.raises(ParameterError, match="gamma"):
        rshape_fast.stackelberg_threshold(rewards)
    with pytest.raises(ParameterError, match="shaping"):
        rshape_fast.shape_rewards(rewards, shaping="zscore")


def test_sequence_level_caps_and_gamma_come_from_the_core():
    from rshape_fast.decoding.options import DecodingOptions

    params = rshape_fast.ShapeParams(bound=12.0, beta=2.0)
    sequence = params.sequence_level()
    assert (sequence.spread_ratio, sequence.max_weight, sequence.max_exponent) == (2.0, None, 2.0)
    assert (sequence.bound, sequence.beta, sequence.alpha) == (12.0, 2.0, params.alpha)
    assert sequence.gamma() == pytest.approx(math.exp(min(12.0 / 2.0, 2.0)))
    assert params.gamma() == 2.0  # the token-level cap on γ itself
    assert params.gamma(b_eff=1.0) == pytest.approx(math.exp(0.5))
    options = DecodingOptions(bound=1.0, weight=0.5)  # β = 2: e^{min(0.5, 2)}
    assert options.sequence_gamma == pytest.approx(math.exp(0.5))
    with pytest.warns(DeprecationWarning, match="sequence_gamma"):
        assert options.sequence_weight == options.sequence_gamma
