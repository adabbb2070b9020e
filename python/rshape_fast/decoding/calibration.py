"""Reward-scale calibration: α and B mean the same for every reward model.

SRS's α is in reward units and `B_eff` follows the spread of the candidates' rewards
(docs/algorithms.md §2.3), so "α = 1.5" means something different for each reward model.
`reward_scale` divides every reward by a scale before it is shaped:

- `None`: no calibration, exactly the paper's semantics (what matches the authors' code);
- a number: that scale;
- `"auto"`: the scale is estimated once per (LM, reward model, k) from base-model decoding:
  greedy steps on a few bundled train prompts, the standard deviation of each step's k
  candidate rewards, and their median over steps and prompts.

The estimate is equivariant: a reward `a·r + b` (a > 0) gets the scale `a·s`, so every
scheme sees the same calibrated candidates up to a per-set shift, which no scheme is moved
by. The scale used is recorded in every result (`extras["reward_scale"]`).
"""

from __future__ import annotations

import weakref

import numpy as np

from rshape_fast.decoding.choosers import top_candidates
from rshape_fast.decoding.ensemble import Reward, RewardEnsemble
from rshape_fast.decoding.lm_state import LMState
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.reward_scorers import candidate_scorer
from rshape_fast.errors import EngineError, NonFiniteError
from rshape_fast.models import LanguageModel, LanguageModelBase

#: Train prompts and greedy steps the `"auto"` estimate looks at.
CALIBRATION_PROMPTS = 8
CALIBRATION_STEPS = 8

# first reward model -> {(LM, members, mode, k): scale}: a run estimates once, whatever its
# batches and grid points (an ensemble is rebuilt per call, its members are not); weak
# keys, so a cached estimate never keeps a model alive.
_ESTIMATES: weakref.WeakKeyDictionary[object, dict[tuple[object, ...], float]] = (
    weakref.WeakKeyDictionary()
)


def greedy_candidate_sets(
    lm: LanguageModel,
    reward: Reward,
    prompts: list[str],
    *,
    k: int,
    steps: int = CALIBRATION_STEPS,
    chat_template: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The candidate sets SRS-ARGS would shape along greedy base decoding of `prompts`:
    each step's top-k logits and their rewards (an ensemble's combined), `[steps·rows, k]`."""
    state = LMState(lm, [lm.encode(p, chat_template=chat_template) for p in prompts])
    scorer = candidate_scorer(reward, lm, prompts)
    (logits,) = state.prefill()
    all_values: list[np.ndarray] = []
    all_rewards: list[np.ndarray] = []
    for _ in range(steps):
        values, ids = top_candidates(logits, k)
        rewards = scorer.score(ids)
        if isinstance(reward, RewardEnsemble):
            rewards = reward.combine_candidates(rewards, values)
        all_values.append(values)
        all_rewards.append(np.asarray(rewards, dtype=np.float32))
        tokens = ids[:, 0].cpu()  # greedy: the top candidate
        scorer.commit(tokens)
        (logits,) = state.advance(tokens)
    return np.concatenate(all_values), np.concatenate(all_rewards)


def estimate_reward_scale(
    lm: LanguageModel,
    reward: Reward,
    prompts: list[str],
    *,
    k: int,
    steps: int = CALIBRATION_STEPS,
    chat_template: bool = True,
) -> float:
    """The median over steps and prompts of the standard deviation of the k candidate
    rewards, along greedy base decoding of `prompts` for `steps` steps."""
    _, rewards = greedy_candidate_sets(
        lm, reward, prompts, k=k, steps=steps, chat_template=chat_template
    )
    scale = float(np.median(rewards.astype(np.float64).std(-1)))
    if not (np.isfinite(scale) and scale > 0):
        raise NonFiniteError(
            f"reward_scale='auto': the candidates' rewards do not vary (scale {scale}); give "
            "a number instead"
        )
    return scale


def resolve_reward_scale(
    options: DecodingOptions, lm: LanguageModelBase, reward: Reward | None
) -> float | None:
    """The scale rewards are divided by in this run (None: not calibrated)."""
    if options.reward_scale is None or reward is None:
        return None
    if options.reward_scale != "auto":
        return float(options.reward_scale)
    if not isinstance(lm, LanguageModel):
        raise EngineError(
            f"reward_scale: 'auto' is estimated with the transformers engine, not {lm.engine}; "
            "estimate it there once (estimate_reward_scale) and pass the number"
        )
    members = reward.members if isinstance(reward, RewardEnsemble) else [reward]
    known = _ESTIMATES.setdefault(members[0], {})
    # The LM and members are alive while the first member is in use with them, so their ids
    # cannot be reused meanwhile.
    mode = (reward.mode, reward.uwo_weight) if isinstance(reward, RewardEnsemble) else None
    key = (id(lm), tuple(id(m) for m in members), mode, options.k)
    if key not in known:
        from rshape_fast.prompts import load_prompts

        train = [p.text for p in load_prompts(split="train", limit=CALIBRATION_PROMPTS)]
        known[key] = estimate_reward_scale(
            lm, reward, train, k=options.k, chat_template=options.chat_template
        )
    return known[key]
