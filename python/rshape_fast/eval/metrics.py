"""Evaluation metrics of docs/algorithms.md (evaluation), in plain numpy.

* :func:`diversity` / :func:`mean_diversity`: n-gram diversity of responses.
* :func:`bootstrap_ci`: a seeded percentile-bootstrap interval for a mean.
* :func:`win_tie_rate`: paired comparison of two methods' per-prompt judge scores.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import numpy.typing as npt

from rshape_fast.errors import InvalidInputError, NonFiniteError, ParameterError, ShapeError

__all__ = [
    "DIVERSITY_ORDERS",
    "WinTie",
    "bootstrap_ci",
    "diversity",
    "mean_diversity",
    "win_tie_rate",
]

DIVERSITY_ORDERS: tuple[int, ...] = (2, 3, 4)
"""The n-gram orders whose factors :func:`diversity` multiplies."""

# Upper bound on the resample-index matrix held at once by bootstrap_ci (elements).
_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 22


def diversity(text: str) -> float:
    """N-gram diversity of one text: ``Π_{n=2..4} (1 - repeated_n / total_n)``.

    The text is lower-cased and split on whitespace. For each order ``n``, ``total_n`` is
    the number of n-grams (``tokens - n + 1``) and ``repeated_n = total_n - distinct_n``
    counts the n-grams that repeat an earlier one, so each factor is
    ``distinct_n / total_n``. A text with fewer than ``n`` tokens has no n-grams of that
    order and contributes the factor 1 (so an empty text scores 1.0). The result lies in
    ``(0, 1]``; 1 means no n-gram repeats, values near 0 mean degenerate repetition.

    Example: ``"a b a b a b"`` has bigram, trigram and 4-gram factors 2/5, 2/4 and 2/3,
    so its diversity is 2/15 ≈ 0.133.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
    tokens = text.lower().split()
    result = 1.0
    for n in DIVERSITY_ORDERS:
        total = len(tokens) - n + 1
        if total <= 0:
            continue
        distinct = len({tuple(tokens[i : i + n]) for i in range(total)})
        result *= distinct / total
    return result


def mean_diversity(texts: Sequence[str]) -> float:
    """Mean of :func:`diversity` over texts (one response per prompt, say).

    Raises:
        InvalidInputError: ``texts`` is a single string or holds a non-string.
        ShapeError: ``texts`` is empty.
    """
    if isinstance(texts, str):
        raise InvalidInputError("texts must be a sequence of strings, not one str")
    items = list(texts)
    if not items:
        raise ShapeError("texts is empty: the mean diversity of no texts is undefined")
    return float(np.mean([diversity(t) for t in items]))


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite_vector(values: npt.ArrayLike, argument: str) -> npt.NDArray[np.float64]:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{argument} must be numbers: {exc}") from exc
    if array.ndim != 1:
        raise ShapeError(f"{argument} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ShapeError(f"{argument} is empty")
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise NonFiniteError(
            f"{argument} holds {int(bad.sum())} non-finite value(s), the first at index "
            f"{first} ({array[first]})"
        )
    return array


def bootstrap_ci(
    values: npt.ArrayLike,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | None = 0,
) -> tuple[float, float, float]:
    """Percentile-bootstrap confidence interval of the mean.

    Draws ``n_resamples`` resamples of ``values`` with replacement (all at once, in chunks
    of bounded memory), takes each resample's mean, and returns the ``(1 - confidence)/2``
    and ``(1 + confidence)/2`` quantiles of those means.

    Args:
        values: One-dimensional finite numbers (per-prompt rewards, say).
        confidence: Coverage of the interval, in (0, 1).
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the resampling generator; the same seed gives the same interval.
            ``None`` draws fresh entropy.

    Returns:
        ``(mean, low, high)``: the sample mean and the interval's bounds.

    Raises:
        ShapeError, NonFiniteError, InvalidInputError: ``values`` is empty, not 1-D, holds
            NaN/inf or is not numeric.
        ParameterError: ``confidence`` or ``n_resamples`` is out of range.
    """
    array = _finite_vector(values, "values")
    if not _is_real(confidence) or not 0.0 < float(confidence) < 1.0:
        raise ParameterError(f"confidence must lie in (0, 1), got {confidence!r}")
    if (
        isinstance(n_resamples, bool)
        or not isinstance(n_resamples, numbers.Integral)
        or n_resamples < 1
    ):
        raise ParameterError(f"n_resamples must be a positive integer, got {n_resamples!r}")

    n = array.size
    n_resamples = int(n_resamples)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    rows_per_chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, rows_per_chunk):
        stop = min(start + rows_per_chunk, n_resamples)
        indices = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = array[indices].mean(axis=1)
    alpha = 1.0 - float(confidence)
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(array.mean()), float(low), float(high)


class WinTie(TypedDict):
    """Fractions of prompts on which method A beats, ties or loses to method B."""

    win: float
    tie: float
    loss: float
    win_tie: float


def win_tie_rate(
    scores_a: npt.ArrayLike, scores_b: npt.ArrayLike, *, tie_tolerance: float = 0.0
) -> WinTie:
    """Win, tie and loss rates of method A against method B on paired per-prompt scores.

    ``scores_a[i]`` and ``scores_b[i]`` are a judge's scores of the two methods' responses
    to prompt ``i``. A pair is a tie when ``|a - b| ≤ tie_tolerance``, a win when
    ``a - b > tie_tolerance``, a loss otherwise; ``win_tie = (wins + ties) / prompts``.

    Args:
        scores_a: Method A's scores, one per prompt.
        scores_b: Method B's scores, for the same prompts in the same order.
        tie_tolerance: Largest absolute difference still counted as a tie (≥ 0).

    Returns:
        ``{"win", "tie", "loss", "win_tie"}`` as fractions of the prompts
        (``win + tie + loss == 1``).

    Raises:
        ShapeError: The arrays are empty, not 1-D or of different lengths.
        NonFiniteError: A score is NaN or infinite.
        ParameterError: ``tie_tolerance`` is negative or not finite.
    """
    a = _finite_vector(scores_a, "scores_a")
    b = _finite_vector(scores_b, "scores_b")
    if a.shape != b.shape:
        raise ShapeError(
            f"scores_a and scores_b must be paired per prompt: {a.size} vs {b.size} scores"
        )
    if not _is_real(tie_tolerance) or not 0.0 <= float(tie_tolerance) < np.inf:
        raise ParameterError(f"tie_tolerance must be finite and >= 0, got {tie_tolerance!r}")
    tolerance = float(tie_tolerance)
    diff = a - b
    n = diff.size
    wins = int(np.count_nonzero(diff > tolerance))
    losses = int(np.count_nonzero(diff < -tolerance))
    ties = n - wins - losses
    return WinTie(win=wins / n, tie=ties / n, loss=losses / n, win_tie=(wins + ties) / n)
