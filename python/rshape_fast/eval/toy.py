"""The paper's two-answer toy example (docs/algorithms.md, the threshold), with the package kernels.

A base policy answers with rewards ``r = (1, 2)`` at probabilities ``p = (0.9, 0.1)``; the
KL-regularised optimiser turns any handed-over reward ``h`` into the policy
``π ∝ p · exp(h / β)``. The user's utility of that policy is ``Σ π_i r_i``. Handing over
``r`` itself gives ≈ 1.23; handing over the Stackelberg threshold reward (``B`` above
``m*``, 0 below) gives ≈ 1.69 = ``m*``; the soft version ``B · sigmoid(α (r − m*))``
moves from the base utility (α → 0) to the hard optimum (α → ∞).

Only numpy and the Rust kernels are used here (no torch), so this runs anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rshape_fast.errors import ParameterError
from rshape_fast.shaping import ShapeParams, shape_rewards, stackelberg_threshold

__all__ = [
    "DEFAULT_ALPHAS",
    "ToyExample",
    "policy_utility",
    "soft_utility_curve",
    "toy_example",
]

# Log-spaced from "almost flat" to "almost a step", the range the soft curve is shown on.
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 2, 17))


def policy_utility(
    rewards: npt.ArrayLike, probs: npt.ArrayLike, handed: npt.ArrayLike, *, beta: float
) -> float:
    """Utility ``Σ π_i r_i`` of the KL-regularised policy ``π ∝ p · exp(handed / β)``.

    Args:
        rewards: the user's true rewards ``r_i``.
        probs: the base policy's probabilities ``p_i`` (renormalised).
        handed: the reward handed to the optimiser for each answer.
        beta: KL strength β > 0.
    """
    if not (math.isfinite(beta) and beta > 0):
        raise ParameterError(f"beta: must be finite and > 0, got {beta!r}")
    r = np.asarray(rewards, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    h = np.asarray(handed, dtype=np.float64)
    if not (r.shape == p.shape == h.shape and r.ndim == 1 and r.size > 0):
        raise ParameterError("rewards, probs and handed must be 1-D arrays of the same length")
    # Subtracting the max exponent keeps exp() finite for large B/β without changing π.
    logits = np.log(p) + h / beta
    weights = np.exp(logits - logits.max())
    return float(np.dot(weights / weights.sum(), r))


@dataclass(frozen=True)
class ToyExample:
    """Every number of the toy example, for the reproduction report and its tests."""

    rewards: tuple[float, ...]
    probs: tuple[float, ...]
    beta: float
    bound: float
    base_utility: float
    raw_utility: float
    threshold: float
    hard_shaped: tuple[float, ...]
    shaped_utility: float
    alphas: tuple[float, ...]
    soft_utilities: tuple[float, ...]


def _kernel_params(bound: float, beta: float, reward_range: float) -> ShapeParams:
    # The toy example uses the plain bound B and weight e^{B/β}: no practical caps, so the
    # spread ratio is made large enough that B_eff = B, and the weight is uncapped.
    spread_ratio = 2.0 * bound / reward_range if reward_range > 0 else 1.0
    return ShapeParams(bound=bound, beta=beta, spread_ratio=max(spread_ratio, 1.0), max_weight=None)


def soft_utility_curve(
    rewards: npt.ArrayLike,
    probs: npt.ArrayLike,
    alphas: Sequence[float],
    *,
    beta: float = 1.0,
    bound: float = 3.0,
) -> list[float]:
    """Utility of ``π ∝ p · exp(B · sigmoid(α (r − m*)) / β)`` for each α.

    The shaped rewards come from the package's ``shape_rewards(shaping="srs")`` kernel with
    the caps switched off, so this curve checks the kernel as well as the theory.
    """
    r = np.asarray(rewards, dtype=np.float64)
    params = _kernel_params(bound, beta, float(r.max() - r.min()))
    out = []
    for alpha in alphas:
        shaped = shape_rewards(
            r, shaping="srs", probs=probs, params=params.replace(alpha=float(alpha))
        )
        out.append(policy_utility(r, probs, shaped, beta=beta))
    return out


def toy_example(
    rewards: Sequence[float] = (1.0, 2.0),
    probs: Sequence[float] = (0.9, 0.1),
    *,
    beta: float = 1.0,
    bound: float = 3.0,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
) -> ToyExample:
    """Compute the toy example of docs/algorithms.md (the threshold) with the package kernels.

    Returns the base utility (``Σ p_i r_i``), the utility of handing over ``r`` itself,
    the threshold ``m*`` from :func:`~rshape_fast.shaping.stackelberg_threshold` with
    weight ``e^{B/β}``, the hard threshold reward and its utility, and the soft curve over
    ``alphas``.
    """
    r = np.asarray(rewards, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum()
    threshold = float(stackelberg_threshold(r, p, gamma=math.exp(bound / beta)))
    params = _kernel_params(bound, beta, float(r.max() - r.min()))
    hard = shape_rewards(r, shaping="srs_hard", probs=p, params=params).astype(np.float64)
    return ToyExample(
        rewards=tuple(float(x) for x in r),
        probs=tuple(float(x) for x in p),
        beta=beta,
        bound=bound,
        base_utility=float(np.dot(p, r)),
        raw_utility=policy_utility(r, p, r, beta=beta),
        threshold=threshold,
        hard_shaped=tuple(float(x) for x in hard),
        shaped_utility=policy_utility(r, p, hard, beta=beta),
        alphas=tuple(float(a) for a in alphas),
        soft_utilities=tuple(soft_utility_curve(r, p, alphas, beta=beta, bound=bound)),
    )
