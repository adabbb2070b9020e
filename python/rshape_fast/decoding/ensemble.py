"""Reward ensembles: several reward models combined into one steering reward.

After "Reward Model Ensembles Help Mitigate Overoptimization" (mean, worst-case `min`,
uncertainty-weighted `uwo`) and "Transforming and Combining Rewards" (`logsigmoid`). The
ensemble reward is what gets shaped; members are never shaped one by one.

Modes, over members `r_1 … r_M` of one candidate:
- `mean`: `mean_m r_m`;
- `min`: `min_m r_m` (worst-case optimisation);
- `uwo`: `mean_m r_m − uwo_weight · var_m r_m` (population variance across members);
- `logsigmoid`: `Σ_m log σ(r_m − ref_m)`, with `ref_m` member m's reference reward over the
  candidate set: at token level the base-probability-weighted mean of the candidates'
  rewards, at sequence level the median of the samples scored together for a prompt.

`logsigmoid` needs a candidate set, so the reward of one final response under it is
reported as the members' mean (the per-member rewards are in every result).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rshape_fast.decoding.options import ENSEMBLE_MODES
from rshape_fast.errors import InvalidInputError, ParameterError
from rshape_fast.models import RewardModel, TextRewardModel, as_reward_model, load_reward_model
from rshape_fast.models.loading import DtypeLike


def combine(
    members: np.ndarray,
    mode: str,
    *,
    uwo_weight: float = 1.0,
    probs: np.ndarray | None = None,
    sets: np.ndarray | None = None,
) -> np.ndarray:
    """The ensemble reward of member rewards `[M, ..., n]` (float32 `[..., n]`).

    For `logsigmoid` the reference is taken over the last axis: the `probs`-weighted mean
    (same shape as one member's rewards) when given, else the median within each group of
    `sets` (one label per entry of the last axis), or over the whole last axis.
    """
    if mode not in ENSEMBLE_MODES:
        raise ParameterError(f"ensemble: unknown mode {mode!r}; one of {ENSEMBLE_MODES}")
    r = np.asarray(members, dtype=np.float64)
    if r.ndim < 2 or r.shape[0] == 0:
        raise InvalidInputError("ensemble: member rewards must be [members, ..., n], members >= 1")
    if mode == "mean":
        out = r.mean(0)
    elif mode == "min":
        out = r.min(0)
    elif mode == "uwo":
        out = r.mean(0) - uwo_weight * r.var(0)
    else:
        # log σ(x) = −log(1 + e^{−x})
        out = -np.logaddexp(0.0, _reference(r, probs, sets) - r).sum(0)
    return out.astype(np.float32)


def _reference(r: np.ndarray, probs: np.ndarray | None, sets: np.ndarray | None) -> np.ndarray:
    """Each member's reference reward, broadcastable against `r` `[M, ..., n]`."""
    if probs is not None:
        p = np.asarray(probs, dtype=np.float64)
        p = p / p.sum(-1, keepdims=True)
        return (r * p).sum(-1, keepdims=True)
    if sets is None:
        return np.median(r, axis=-1, keepdims=True)
    labels = np.asarray(sets)
    ref = np.empty_like(r)
    for label in np.unique(labels):
        cols = labels == label
        ref[..., cols] = np.median(r[..., cols], axis=-1, keepdims=True)
    return ref


class RewardEnsemble:
    """Several reward models (decoder reward models, text reward models or callables) used
    as one steering reward; see the module docstring for the modes. Each member that can
    score from a KV cache keeps its own during decoding."""

    def __init__(
        self,
        members: Sequence[RewardModel | TextRewardModel],
        *,
        mode: str = "mean",
        uwo_weight: float = 1.0,
    ) -> None:
        if isinstance(members, (RewardModel, TextRewardModel)) or not len(members):
            raise InvalidInputError("ensemble: give a list of at least one reward model")
        if mode not in ENSEMBLE_MODES:
            raise ParameterError(f"ensemble: unknown mode {mode!r}; one of {ENSEMBLE_MODES}")
        if not (np.isfinite(uwo_weight) and uwo_weight >= 0):
            raise ParameterError(f"uwo_weight: must be finite and >= 0, got {uwo_weight!r}")
        self.members = list(members)
        self.mode = mode
        self.uwo_weight = float(uwo_weight)
        self.name = f"{mode}({', '.join(getattr(m, 'name', repr(m)) for m in self.members)})"

    def __repr__(self) -> str:
        return f"RewardEnsemble({self.name})"

    def score_members(
        self, prompts: Sequence[str], responses: Sequence[str], *, special_tokens: bool = False
    ) -> np.ndarray:
        """Every member's rewards of the pairs, float32 `[M, n]`."""
        return np.stack(
            [m.score(prompts, responses, special_tokens=special_tokens) for m in self.members]
        )

    def combine(
        self,
        members: np.ndarray,
        *,
        probs: np.ndarray | None = None,
        sets: np.ndarray | None = None,
    ) -> np.ndarray:
        """This ensemble's reward of member rewards `[M, ..., n]` (see `combine`)."""
        return combine(members, self.mode, uwo_weight=self.uwo_weight, probs=probs, sets=sets)

    def combine_candidates(self, members: np.ndarray, base_logits: np.ndarray) -> np.ndarray:
        """The reward of token-level candidates `[M, rows, k]`, whose base probabilities
        (the softmax of their logits `[rows, k]`) weight logsigmoid's reference."""
        probs = np.exp(base_logits - base_logits.max(-1, keepdims=True))
        return self.combine(members, probs=probs)

    def final_rewards(self, members: np.ndarray) -> np.ndarray:
        """The reward of single final responses from their members' rewards `[M, n]`
        (`logsigmoid` has no candidate set there: the members' mean)."""
        mode = "mean" if self.mode == "logsigmoid" else self.mode
        return combine(members, mode, uwo_weight=self.uwo_weight)

    def score(
        self, prompts: Sequence[str], responses: Sequence[str], *, special_tokens: bool = False
    ) -> np.ndarray:
        """Rewards of single final responses (see `final_rewards`)."""
        members = self.score_members(prompts, responses, special_tokens=special_tokens)
        return self.final_rewards(members)


#: Anything that steers decoding: one reward model, a text scorer, or an ensemble of them.
Reward = RewardModel | TextRewardModel | RewardEnsemble


def steering_reward(
    rm: Any,
    *,
    mode: str = "mean",
    uwo_weight: float = 1.0,
    device: str | torch.device = "cpu",
    dtype: DtypeLike = "float32",
) -> Reward:
    """`rm` as a steering reward: a reward object, a callable, a built-in name or folder
    (loaded on `device` in `dtype`), or a list or tuple of those as a `RewardEnsemble`."""
    if isinstance(rm, RewardEnsemble):
        return rm
    if isinstance(rm, (list, tuple)):
        members = [_member(m, device, dtype) for m in rm]
        return RewardEnsemble(members, mode=mode, uwo_weight=uwo_weight)
    return _member(rm, device, dtype)


def _member(rm: Any, device: str | torch.device, dtype: DtypeLike) -> RewardModel | TextRewardModel:
    if isinstance(rm, (str, os.PathLike)):
        return load_reward_model(rm, device=device, dtype=dtype)
    return as_reward_model(rm)
