"""A deliberately naive ARGS / SRS-ARGS loop with the semantics of the authors' code.

Batch 1, no KV caches: every step re-runs the LM on the whole sequence, takes
`torch.topk`, runs the reward model once per candidate on the whole
`head ⊕ response ⊕ candidate ⊕ tail`, and finds the SRS threshold by bisection. It exists
to check the fast path token for token (tests/test_decoding.py) and to measure what the fast
path buys (`rshape bench decoding`); it is never used to produce results.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rshape_fast.errors import ParameterError
from rshape_fast.models import LanguageModel, RewardModel


def bisection_threshold(
    rewards: np.ndarray, probs: np.ndarray, weight: float, *, steps: int = 60
) -> float:
    """Root of F(m) = Σ p_i w_i(m)(r_i − m) by bisection on [min r, max r]."""
    low, high = float(rewards.min()), float(rewards.max())
    for _ in range(steps):
        mid = 0.5 * (low + high)
        w = np.where(rewards >= mid, weight, 1.0)
        if float(np.sum(probs * w * (rewards - mid))) > 0:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def naive_shape(
    rewards: np.ndarray,
    probs: np.ndarray,
    shaping: str,
    *,
    bound: float,
    beta: float,
    alpha: float,
    spread_ratio: float,
    max_weight: float | None,
) -> np.ndarray:
    """Token-level shaping of one candidate set as the authors compute it (raw, srs, srs_hard)."""
    r = rewards.astype(np.float64)
    if shaping == "raw":
        return r
    if shaping not in ("srs", "srs_hard"):
        raise ParameterError(
            f"shaping: the naive loop knows raw, srs and srs_hard, not {shaping!r}"
        )
    spread = float(r.max() - r.min())
    b_eff = min(bound, spread_ratio * spread)
    weight = math.exp(b_eff / beta)
    if max_weight is not None:
        weight = min(weight, max_weight)
    m = bisection_threshold(r, probs / probs.sum(), weight)
    if shaping == "srs_hard":
        return b_eff * (r >= m)
    return b_eff / (1.0 + np.exp(-alpha * (r - m)))


@torch.inference_mode()
def naive_args(
    lm: LanguageModel,
    rm: RewardModel,
    prompt: str,
    *,
    k: int = 10,
    weight: float = 0.5,
    shaping: str = "srs",
    bound: float = 12.0,
    alpha: float = 1.5,
    beta: float | None = None,
    spread_ratio: float = 1.01,
    max_weight: float | None = 2.0,
    max_new_tokens: int = 128,
    chat_template: bool = True,
) -> list[int]:
    """Greedy (S)ARGS for one prompt, recomputing everything every step; returns token ids."""
    parts = rm.backbone_and_head()
    if parts is None:
        raise ParameterError("rm: the naive loop needs a decoder reward model with a score head")
    backbone, head_layer = parts
    prompt_ids = lm.encode(prompt, chat_template=chat_template)
    head, tail = rm.template_ids(prompt)
    response: list[int] = []
    for _ in range(max_new_tokens):
        ids = torch.tensor([prompt_ids + response], device=lm.device)
        logits = lm.model(input_ids=ids, use_cache=False).logits[0, -1].float()
        values, cand = torch.topk(logits, k)
        rewards = []
        for token in cand.tolist():
            seq = torch.tensor([head + response + [token] + tail], device=rm.device)
            hidden = backbone(input_ids=seq, use_cache=False).last_hidden_state[0, -1]
            rewards.append(float(head_layer(hidden).float()))
        probs = torch.softmax(values, dim=-1).double().cpu().numpy()
        shaped = naive_shape(
            np.array(rewards),
            probs,
            shaping,
            bound=bound,
            beta=beta if beta is not None else 1.0 / weight,
            alpha=alpha,
            spread_ratio=spread_ratio,
            max_weight=max_weight,
        )
        fused = values.double().cpu().numpy() + weight * shaped
        token = int(cand[int(np.argmax(fused))])
        response.append(token)
        if token in lm.eos_token_ids:
            break
    return response
