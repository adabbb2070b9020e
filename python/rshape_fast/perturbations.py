"""Robustness perturbations of rewards, applied before shaping (docs/algorithms.md §3)."""

from __future__ import annotations

import numpy as np

from rshape_fast.errors import ParameterError


def perturb_rewards(
    rewards: np.ndarray, kind: str, seeds: np.ndarray, *, noise_variance: float = 1.0
) -> np.ndarray:
    """Perturb each row of `rewards` `[rows, n]` with its own seeded generator.

    * ``noise``: add Gaussian noise of variance `noise_variance`;
    * ``random``: replace by pure random rewards 5·N(0, 1);
    * ``reversed``: the i-th largest reward gets the i-th smallest value;
    * ``none``: unchanged.
    """
    if kind == "none":
        return rewards
    out = np.array(rewards, dtype=np.float32, copy=True)
    for row, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed))
        if kind == "noise":
            out[row] += rng.normal(0.0, np.sqrt(noise_variance), size=out.shape[1])
        elif kind == "random":
            out[row] = 5.0 * rng.standard_normal(size=out.shape[1])
        elif kind == "reversed":
            order = np.argsort(-out[row], kind="stable")
            out[row, order] = np.sort(out[row])
        else:
            raise ParameterError(f"perturbation: unknown kind {kind!r}")
    return out
