"""Slow, obviously-correct numpy versions of the kernels, for the tests to compare against.

Everything is float64, one row at a time, written straight from docs/algorithms.md §2-3:
top-k by a stable argsort, the Stackelberg threshold by 60 bisection steps on
``F(m) = sum_i p_i w_i(m) (r_i - m)``, and every shaping scheme by its formula.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rshape_fast import ShapeParams

SCHEMES = ("raw", "meanstd", "minmax", "cap", "meansoft", "srs", "srs_hard")

Array = npt.NDArray[np.float64]


def topk(logits: npt.ArrayLike, k: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Top-k of each row: a stable argsort of ``-x`` keeps equal values in column order."""
    x = np.atleast_2d(np.asarray(logits, dtype=np.float32))
    order = np.argsort(-x, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(x, order, axis=1), order.astype(np.int64)


def normalised(probs: npt.ArrayLike | None, n: int) -> Array:
    if probs is None:
        return np.full(n, 1.0 / n)
    p = np.asarray(probs, dtype=np.float64)
    return p / p.sum()


def stackelberg_f(
    rewards: npt.ArrayLike, probs: npt.ArrayLike | None, weight: float, m: float
) -> float:
    """``F(m)`` with probabilities renormalised to sum 1."""
    r = np.asarray(rewards, dtype=np.float64)
    p = normalised(probs, r.size)
    w = np.where(r >= m, weight, 1.0)
    return float(np.sum(p * w * (r - m)))


def threshold(rewards: npt.ArrayLike, probs: npt.ArrayLike | None, weight: float) -> float:
    """The root of F by 60 bisection steps on ``[min r, max r]`` (F is decreasing)."""
    r = np.asarray(rewards, dtype=np.float64)
    lo, hi = float(r.min()), float(r.max())
    if lo == hi:
        return lo
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if stackelberg_f(r, probs, weight, mid) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def sigmoid(x: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def srs_weight(b_eff: float, params: ShapeParams) -> float:
    """gamma = exp(B_eff / beta), or exp(min(B / beta, max_exponent)); capped at max_weight."""
    if params.max_exponent is not None:
        gamma = float(np.exp(min(params.bound / params.beta, params.max_exponent)))
    else:
        gamma = float(np.exp(b_eff / params.beta))
    if params.max_weight is not None:
        gamma = min(gamma, params.max_weight)
    return gamma


def shape_row(
    rewards: npt.ArrayLike,
    *,
    shaping: str,
    probs: npt.ArrayLike | None = None,
    params: ShapeParams | None = None,
) -> tuple[Array, float | None]:
    """One row shaped by ``shaping`` with the knobs of ``params`` (None: ``ShapeParams()``),
    and the threshold it used (None if it has none)."""
    p = ShapeParams() if params is None else params
    r = np.asarray(rewards, dtype=np.float64)
    lo, hi = float(r.min()), float(r.max())
    spread = hi - lo
    b_eff = min(p.bound, p.spread_ratio * spread)
    if shaping == "raw":
        return r.copy(), None
    if shaping == "meanstd":
        return (r - r.mean()) / max(float(r.std()), 1e-6), None
    if shaping == "minmax":
        if spread == 0:
            return np.zeros_like(r), None
        return b_eff * (r - lo) / spread, None
    if shaping == "cap":
        return np.clip(r - lo, 0.0, p.cap), None
    if shaping == "meansoft":
        m = float(np.sum(normalised(probs, r.size) * r))
    elif shaping in ("srs", "srs_hard"):
        m = threshold(r, probs, srs_weight(b_eff, p))
    else:
        raise ValueError(shaping)
    if shaping == "srs_hard":
        return b_eff * (r >= m), m
    return b_eff * sigmoid(p.alpha * (r - m)), m


def softmax(x: npt.ArrayLike) -> Array:
    z = np.asarray(x, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def fuse_row(
    base: npt.ArrayLike,
    rewards: npt.ArrayLike,
    *,
    weight: float,
    shaping: str = "srs",
    probs: npt.ArrayLike | None = None,
    probs_from_base: bool = True,
    params: ShapeParams | None = None,
) -> Array:
    """``base + weight * shaped`` for one row, probabilities chosen as fuse_and_select does."""
    b = np.asarray(base, dtype=np.float64)
    if probs is None and probs_from_base:
        probs = softmax(b)
    shaped, _ = shape_row(rewards, shaping=shaping, probs=probs, params=params)
    return b + weight * shaped


def sample_token(
    row: npt.ArrayLike, u: float, temperature: float, top_k: int | None, top_p: float | None
) -> int:
    """The next-token draw, spelled out: top-k (ties at the k-th stay), top-p over a stable
    descending order, then inverse CDF in vocabulary order (`searchsorted`, right)."""
    x = np.asarray(row, dtype=np.float64)
    keep = np.ones(x.shape, dtype=bool)
    if top_k is not None and top_k < x.size:
        keep = x >= np.sort(x)[::-1][top_k - 1]
    w = np.where(keep, np.exp((x - x.max()) / temperature), 0.0)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-w, kind="stable")
        before = np.cumsum(w[order]) - w[order]
        w[order[before >= top_p * w.sum()]] = 0.0
    cdf = np.cumsum(w)
    return int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), x.size - 1))
