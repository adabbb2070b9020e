"""Per-step decision kernels: top-k, the Stackelberg threshold, reward shaping, fusion.

Each function is a thin wrapper over ``rshape_fast._core``: it converts its arrays once
with ``numpy.ascontiguousarray(x, numpy.float32)`` (so float64, integer, list or
non-contiguous input all work), treats a 1-D array as a single row, calls the Rust kernel
for all rows at once, and drops the row dimension again for 1-D input. All checking is
done in Rust; bad input raises :class:`~rshape_fast.errors.ShapeError`,
:class:`~rshape_fast.errors.NonFiniteError` or :class:`~rshape_fast.errors.ParameterError`
(all ``ValueError``) with the offending argument named in the message.

The math is that of ``docs/algorithms.md`` §2-3, with the knobs of a
:class:`~rshape_fast.ShapeParams` ``p``: ``B_eff = min(p.bound, p.spread_ratio * (max r -
min r))``, the SRS weight ``gamma = exp(B_eff / p.beta)`` (or ``exp(min(p.bound / p.beta,
p.max_exponent))`` when ``max_exponent`` is given), capped at ``p.max_weight`` when that is
given, and the threshold ``m*`` the root of ``sum_i p_i w_i(m) (r_i - m)`` with
``w_i = gamma`` where ``r_i >= m`` else 1.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from rshape_fast import _core
from rshape_fast._core import ShapeParams
from rshape_fast.errors import ParameterError

__all__ = [
    "SCHEMES",
    "ShapeParams",
    "fuse_and_select",
    "shape_rewards",
    "stackelberg_threshold",
    "topk",
]

#: Names accepted by ``shaping=``, as the core defines them: ``raw``, ``meanstd``,
#: ``minmax``, ``cap``, ``meansoft``, ``srs`` (soft Stackelberg shaping, the default) and
#: ``srs_hard``.
SCHEMES: tuple[str, ...] = _core.SCHEMES


def _rows(x: npt.ArrayLike) -> tuple[npt.NDArray[np.float32], bool]:
    """Float32 C-contiguous rows of ``x`` and whether ``x`` was a single 1-D row.

    0-d input is passed through as it is so that the kernel reports it as a ShapeError.
    """
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        return np.ascontiguousarray(a[np.newaxis]), True
    if a.ndim == 0:
        return a, False
    return np.ascontiguousarray(a), False


def _rows_like(x: npt.ArrayLike, single: bool) -> npt.NDArray[np.float32]:
    """A companion array (``rewards``, ``probs``) laid out like the main one."""
    a = np.asarray(x, dtype=np.float32)
    if single and a.ndim == 1:
        a = a[np.newaxis]
    return np.ascontiguousarray(a) if a.ndim else a


def _optional_rows_like(x: npt.ArrayLike | None, single: bool) -> npt.NDArray[np.float32] | None:
    return None if x is None else _rows_like(x, single)


def _per_row(value: Any) -> Any:
    """A float stays a float; an array-like becomes a float64 array (one value per row).

    Anything else goes to the kernel unchanged, which raises a ParameterError naming it.
    """
    if isinstance(value, (np.ndarray, list, tuple)):
        return np.ascontiguousarray(value, dtype=np.float64)
    return value


def _seed(seed: Any) -> Any:
    if isinstance(seed, (np.ndarray, list, tuple)):
        # No dtype forced: the kernel checks the integer kind and refuses negative seeds.
        return np.ascontiguousarray(seed)
    return seed


def _renamed(value: Any, old_value: Any, *, new: str, old: str, function: str) -> Any:
    """`new=`, or the same argument under its old name, `old=`, with a DeprecationWarning."""
    if old_value is None:
        return value
    warnings.warn(
        f"{function}({old}=...) is now {function}({new}=...); {old}= will be removed in a "
        "later release",
        DeprecationWarning,
        stacklevel=3,
    )
    return old_value


def topk(logits: npt.ArrayLike, k: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The ``k`` largest entries of every row of ``logits``.

    Args:
        logits: ``[B, V]`` (or ``[V]`` for one row) scores; converted to float32. ``-inf``
            and ``+inf`` are ordinary values, NaN raises NonFiniteError.
        k: how many entries per row, ``1 <= k <= V``.

    Returns:
        ``(values, indices)``: float32 and int64 arrays of shape ``[B, k]`` (``[k]`` for
        1-D input), each row sorted by value descending, equal values by the lower index
        first (as a stable ``argsort`` of ``-logits`` orders them).

    One streaming pass per row in Rust, single-threaded, with the GIL released.
    """
    rows, single = _rows(logits)
    values, indices = _core.topk(rows, k)
    if single:
        return values[0], indices[0]
    return values, indices


def stackelberg_threshold(
    rewards: npt.ArrayLike,
    probs: npt.ArrayLike | None = None,
    *,
    gamma: float | npt.ArrayLike | None = None,
    weight: float | npt.ArrayLike | None = None,
) -> npt.NDArray[np.float64] | float:
    """The exact Stackelberg threshold ``m*`` of each row of candidate rewards.

    ``m*`` is the root of ``F(m) = sum_i p_i w_i(m) (r_i - m)`` with ``w_i = gamma`` where
    ``r_i >= m`` and 1 below: the ``gamma / (1 + gamma)``-expectile of the rewards under
    ``p``. It lies in ``[min r, max r]``, equals the (``p``-weighted) mean at
    ``gamma = 1`` and is that value when all rewards are equal. Solved exactly in float64
    (sort, then solve the one linear piece of ``F`` that changes sign).

    Args:
        rewards: ``[B, n]`` (or ``[n]``) finite rewards.
        probs: same shape, the candidates' probabilities: ``>= 0`` with a positive sum per
            row, renormalised per row. ``None`` means uniform.
        gamma: the SRS weight ``gamma >= 1`` (e.g. ``ShapeParams().gamma()``), a float or
            one value per row.
        weight: ``gamma``'s old name (``weight`` is λ everywhere else); deprecated.

    Returns:
        float64 ``[B]``, or a Python float for 1-D ``rewards``.
    """
    gamma = _renamed(gamma, weight, new="gamma", old="weight", function="stackelberg_threshold")
    if gamma is None:
        raise ParameterError("gamma: stackelberg_threshold needs gamma= (the SRS weight >= 1)")
    rows, single = _rows(rewards)
    out = _core.stackelberg_threshold(
        rows, _optional_rows_like(probs, single), gamma=_per_row(gamma)
    )
    return float(out[0]) if single else out


def shape_rewards(
    rewards: npt.ArrayLike,
    *,
    shaping: str | None = None,
    probs: npt.ArrayLike | None = None,
    params: ShapeParams | None = None,
    scheme: str | None = None,
) -> npt.NDArray[np.float32]:
    """Transform each row of candidate rewards with one of :data:`SCHEMES`.

    With the knobs of ``params`` and ``B_eff = min(bound, spread_ratio * (max r - min r))``
    per row:

    - ``raw``: ``r``.
    - ``meanstd``: ``(r - mean r) / max(std r, 1e-6)`` (population std, unweighted).
    - ``minmax``: ``B_eff * (r - min r) / (max r - min r)``, 0 where the range is 0.
    - ``cap``: ``clip(r - min r, 0, cap)``.
    - ``meansoft``: ``B_eff * sigmoid(alpha * (r - mean_p r))`` (``p``-weighted mean).
    - ``srs``: ``B_eff * sigmoid(alpha * (r - m*))``, ``m*`` the Stackelberg threshold
      with weight ``gamma`` (see the module docs).
    - ``srs_hard``: ``B_eff * (r >= m*)``.

    Thresholds and distances are computed in float64; the sigmoid itself is taken in
    float32, the precision of the result.

    ``ShapeParams()`` holds the token-level ARGS caps (``gamma = min(exp(B_eff / beta),
    2)``); ``ShapeParams(max_weight=None, max_exponent=2.0, spread_ratio=2.0)`` is the
    sequence-level CD rule (``gamma = exp(min(bound / beta, 2))``).

    Args:
        rewards: ``[B, n]`` (or ``[n]``) finite rewards.
        shaping: one of :data:`SCHEMES` (the ``shaping`` knob of the decoders).
        probs: candidate probabilities for ``meansoft`` / ``srs`` / ``srs_hard`` (same
            shape, ``>= 0``, positive row sums); ``None`` is uniform.
        params: the knobs (:class:`~rshape_fast.ShapeParams`); ``None`` is
            ``ShapeParams()``.
        scheme: ``shaping``'s old name; deprecated.

    Returns:
        float32 ``[B, n]`` (``[n]`` for 1-D input).
    """
    shaping = _renamed(shaping, scheme, new="shaping", old="scheme", function="shape_rewards")
    if shaping is None:
        raise ParameterError(f"shaping: shape_rewards needs shaping= (one of {SCHEMES})")
    rows, single = _rows(rewards)
    out = _core.shape_rewards(
        rows,
        shaping=shaping,
        probs=_optional_rows_like(probs, single),
        params=params,
    )
    return out[0] if single else out


def fuse_and_select(
    base_scores: npt.ArrayLike,
    rewards: npt.ArrayLike,
    *,
    weight: float | npt.ArrayLike,
    shaping: str = "srs",
    probs: npt.ArrayLike | None = None,
    probs_from_base: bool = True,
    greedy: bool = True,
    temperature: float = 1.0,
    seed: int | npt.ArrayLike | None = None,
    params: ShapeParams | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    scheme: str | None = None,
) -> tuple[npt.NDArray[np.int64] | int, npt.NDArray[np.float32]]:
    """Shape, fuse and choose one candidate per row: one decoding step for the batch.

    ``fused = base_scores + weight * shape_rewards(rewards, shaping=..., probs=...,
    params=...)``, then
    per row the argmax (``greedy=True``; equal scores go to the lower index) or a draw from
    ``softmax(fused / temperature)`` cut to the ``top_k`` best candidates and then to the
    ``top_p`` nucleus (the rule of ``sample_tokens``, applied to the fused scores, as
    transformers and vLLM apply their warpers after every logits processor).

    Args:
        base_scores: ``[B, k]`` (or ``[k]``) base terms (LM logits or log-probabilities).
            ``-inf`` marks a candidate that must not be chosen; a row of only ``-inf``,
            NaN or ``+inf`` raises NonFiniteError.
        rewards: same shape, finite rewards of the candidates.
        weight: the guidance weight ``lambda >= 0``, a float or one value per row.
        shaping: one of :data:`SCHEMES` (default ``"srs"``).
        probs: candidate probabilities for the threshold (same shape). When ``None`` and
            ``probs_from_base`` is true they are the softmax of each row's base scores
            (the token-level rule); when ``None`` and ``probs_from_base`` is false, uniform
            (the sequence-level rule).
        greedy: argmax if true, else sample.
        temperature: ``> 0``, the softmax temperature of sampling.
        seed: ``None`` (fresh entropy), an int ``s`` (row ``r`` uses ``s + r``) or an
            integer array with one seed per row. Row ``r``'s draw depends only on its own
            seed, so batched and row-by-row calls agree when per-row seeds are given.
            Ignored when ``greedy``.
        params: the shaping knobs, as in :func:`shape_rewards`.
        top_k: when sampling, keep the candidates whose fused score is at least the
            ``top_k``-th largest (``None``: all).
        top_p: when sampling, then keep the smallest set of the most likely candidates whose
            probability reaches ``top_p`` (in ``(0, 1]``; ``None``: all). A ``top_p`` that
            leaves one candidate gives the greedy choice.
        scheme: ``shaping``'s old name; deprecated.

    Returns:
        ``(chosen, fused)``: int64 ``[B]`` and float32 ``[B, k]``; for 1-D input a Python
        int and float32 ``[k]``.
    """
    shaping = _renamed(shaping, scheme, new="shaping", old="scheme", function="fuse_and_select")
    base, single = _rows(base_scores)
    chosen, fused = _core.fuse_and_select(
        base,
        _rows_like(rewards, single),
        weight=_per_row(weight),
        shaping=shaping,
        probs=_optional_rows_like(probs, single),
        probs_from_base=probs_from_base,
        greedy=greedy,
        temperature=temperature,
        seed=_seed(seed),
        params=params,
        top_k=top_k,
        top_p=top_p,
    )
    if single:
        return int(chosen[0]), fused[0]
    return chosen, fused
