"""The best-of-N family: `bon`, `soft_bon` and `streaming_bon` (docs/algorithms.md §4).

All three draw the same N samples per prompt: sample i of prompt key q is keyed
`(q, i)` in the shared `Sampler`, so with the same seed they start from identical draws
(and `streaming_bon` without rejection reproduces `bon` exactly).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rshape_fast._core import StreamingBestOfN
from rshape_fast.decoding.ensemble import Reward
from rshape_fast.decoding.lm_state import encode_prompts
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.phase_timer import PhaseTimer
from rshape_fast.decoding.registry import require_reward_model
from rshape_fast.decoding.response_sampler import (
    ResponseGenerator,
    Sample,
    response_generator,
    sample_output,
    score_samples,
    score_texts,
)
from rshape_fast.decoding.results import Cost, RowOutput
from rshape_fast.decoding.reward_scorers import PartialResponseScorer, shares_cache
from rshape_fast.decoding.token_draws import row_seeds
from rshape_fast.models import LanguageModelBase
from rshape_fast.perturbations import perturb_rewards
from rshape_fast.shaping import fuse_and_select, shape_rewards


def draw_samples(
    lm: LanguageModelBase,
    prompts: list[str],
    keys: list[int],
    options: DecodingOptions,
    costs: list[Cost],
    timer: PhaseTimer,
    progress: Callable[[int], None] | None = None,
) -> tuple[ResponseGenerator, list[list[Sample]]]:
    """A sampler started with N samples per prompt (keys `(prompt key, i)`): the draws
    every best-of-N method shares, also used offline by `benches/bench_rejection_schedules.py`.
    """
    sampler = response_generator(lm, options, costs, timer, progress=progress)
    samples = [
        [Sample(owner=pos, key=(keys[pos], i)) for i in range(options.n)]
        for pos in range(len(prompts))
    ]
    flat = [s for group in samples for s in group]
    sampler.start(encode_prompts(lm, prompts, options), flat, [s.owner for s in flat])
    return sampler, samples


def _selection_rewards(
    rewards: np.ndarray, keys: list[int], options: DecodingOptions
) -> np.ndarray:
    """The rewards the choice is made on: the steering rewards, calibrated and perturbed
    as the options say."""
    if options.reward_scale is not None:
        rewards = rewards / np.float32(options.reward_scale)
    if options.perturbation == "none":
        return rewards
    seeds = row_seeds(options.seed, [(q, options.n, 1) for q in keys])
    return perturb_rewards(
        rewards, options.perturbation, seeds, noise_variance=options.noise_variance
    )


def _sample_and_score(
    lm: LanguageModelBase,
    rm: Reward,
    prompts: list[str],
    keys: list[int],
    options: DecodingOptions,
    costs: list[Cost],
    timer: PhaseTimer,
    progress: Callable[[int], None],
) -> tuple[list[list[Sample]], np.ndarray]:
    """All N samples of every prompt, finished, with their steering rewards `[P, N]`."""
    sampler, samples = draw_samples(lm, prompts, keys, options, costs, timer, progress)
    sampler.run()
    flat = [s for group in samples for s in group]
    rewards = score_samples(rm, prompts, flat, costs, timer, options)
    return samples, rewards.reshape(len(prompts), options.n)


def run_bon(
    lm: LanguageModelBase,
    rm: Reward | None,
    prompts: list[str],
    keys: list[int],
    options: DecodingOptions,
    progress: Callable[[int], None],
) -> list[RowOutput]:
    """Best-of-N: the sample with the highest steering reward (ties: lowest sample index)."""
    reward = require_reward_model(rm, options.method)
    timer = PhaseTimer.for_device(lm.device)
    costs = [Cost() for _ in prompts]
    samples, rewards = _sample_and_score(lm, reward, prompts, keys, options, costs, timer, progress)
    with timer.phase("select"):
        chosen = np.argmax(_selection_rewards(rewards, keys, options), axis=1)
    timer.charge(costs)
    return [
        sample_output(
            samples[pos][int(chosen[pos])],
            rewards[pos, int(chosen[pos])],
            costs[pos],
            {"n": options.n, "rewards": rewards[pos].tolist(), "chosen": int(chosen[pos])},
        )
        for pos in range(len(prompts))
    ]


def run_soft_bon(
    lm: LanguageModelBase,
    rm: Reward | None,
    prompts: list[str],
    keys: list[int],
    options: DecodingOptions,
    progress: Callable[[int], None],
) -> list[RowOutput]:
    """Soft best-of-N: one sample drawn with probability ∝ exp(λ · shaped reward).

    Shaping is over each prompt's N samples with uniform probabilities and the
    sequence-level caps; the draw is `fuse_and_select` on a zero base term (so the fused
    score is λ·shaped) at temperature 1, seeded per prompt key.
    """
    reward = require_reward_model(rm, options.method)
    timer = PhaseTimer.for_device(lm.device)
    costs = [Cost() for _ in prompts]
    samples, rewards = _sample_and_score(lm, reward, prompts, keys, options, costs, timer, progress)
    with timer.phase("select"):
        shaped = shape_rewards(
            _selection_rewards(rewards, keys, options),
            shaping=options.shaping,
            params=options.sequence_shape_params,
        )
        # Shaping happened above; "raw" fuses the shaped values unchanged.
        chosen, _ = fuse_and_select(
            np.zeros_like(shaped),
            shaped,
            weight=options.weight,
            shaping="raw",
            probs_from_base=False,
            greedy=False,
            temperature=1.0,
            seed=row_seeds(options.seed, [(q, options.n, 2) for q in keys]),
        )
        chosen = np.atleast_1d(chosen)
    timer.charge(costs)
    return [
        sample_output(
            samples[pos][int(chosen[pos])],
            rewards[pos, int(chosen[pos])],
            costs[pos],
            {
                "n": options.n,
                "rewards": rewards[pos].tolist(),
                "shaped": shaped[pos].tolist(),
                "chosen": int(chosen[pos]),
            },
        )
        for pos in range(len(prompts))
    ]


def run_streaming_bon(
    lm: LanguageModelBase,
    rm: Reward | None,
    prompts: list[str],
    keys: list[int],
    options: DecodingOptions,
    progress: Callable[[int], None],
) -> list[RowOutput]:
    """Streaming best-of-N with early rejection (after Sun et al. 2024).

    All N samples of every prompt advance together. Every `checkpoint_tokens` tokens the
    live partial responses are scored (and finished ones with their final text), recorded
    in the Rust `StreamingBestOfN`, and the weakest `reject_fraction` of each prompt's live
    samples are rejected and leave the LM cache. Finished samples keep their ranking slot.
    A decoder reward model that reads the LM's ids keeps each live sample's KV cache, so a
    checkpoint runs only the tokens drawn since the previous one (`PartialResponseScorer`).
    The answer is the best finished sample by final steering reward. With
    `reject_fraction=0` nothing is rejected and the result equals `bon`.
    """
    reward = require_reward_model(rm, options.method)
    n = options.n
    timer = PhaseTimer.for_device(lm.device)
    costs = [Cost() for _ in prompts]
    sampler, samples = draw_samples(lm, prompts, keys, options, costs, timer, progress)
    state = StreamingBestOfN(len(prompts), n)
    flat = [s for group in samples for s in group]
    cached = (
        PartialResponseScorer(
            reward,
            [prompts[s.owner] for s in flat],
            [_id(s, n) for s in flat],
            max_response_tokens=options.max_new_tokens,
            special_tokens=options.special_tokens_in_prompts,
        )
        if options.reject_fraction > 0 and shares_cache(reward, lm)
        else None
    )
    if cached is not None:
        for sample, tokens in zip(flat, cached.head_tokens, strict=True):
            costs[sample.owner].rm_tokens += tokens
    unrecorded: list[Sample] = []  # finished since the last record

    def score_live(live: list[Sample]) -> np.ndarray:
        if cached is None or not live:
            texts = [lm.decode(s.response_ids) for s in live]
            return score_texts(
                reward,
                prompts,
                [s.owner for s in live],
                texts,
                costs,
                timer,
                special_tokens=options.special_tokens_in_prompts,
            )
        with timer.phase("rm"):
            scores, ran = cached.score([_id(s, n) for s in live], [s.response_ids for s in live])
        for sample, tokens in zip(live, ran, strict=True):
            costs[sample.owner].rm_tokens += tokens
        for owner in {s.owner for s in live}:
            costs[owner].rm_calls += 1
        return scores

    def record(live: list[Sample]) -> None:
        finished = list(unrecorded)
        unrecorded.clear()
        if not finished and not live:
            return
        final = score_samples(reward, prompts, finished, costs, timer, options)
        scores = np.concatenate([final, score_live(live)])
        with timer.phase("select"):
            ids = np.array([_id(s, n) for s in finished + live], dtype=np.int64)
            done = np.array([True] * len(finished) + [False] * len(live), dtype=bool)
            state.record(ids, scores, done)

    checkpoints = 0
    while sampler.live:
        unrecorded.extend(sampler.extend(options.checkpoint_tokens))
        if sampler.live and options.reject_fraction > 0:
            record(list(sampler.live))
            with timer.phase("select"):
                rejected = set(state.prune(reject_fraction=options.reject_fraction).tolist())
            sampler.drop([s for s in sampler.live if _id(s, n) in rejected])
            checkpoints += 1
    record([])
    with timer.phase("select"):
        best, _ = state.best_finished()
        scores = state.scores().reshape(len(prompts), n)
        finished = state.finished_mask().reshape(len(prompts), n)
    timer.charge(costs)
    outputs = []
    for pos in range(len(prompts)):
        chosen = int(best[pos]) - pos * n
        outputs.append(
            sample_output(
                samples[pos][chosen],
                scores[pos, chosen],
                costs[pos],
                {
                    "n": n,
                    # Final rewards of finished samples; None for rejected ones.
                    "rewards": [
                        float(scores[pos, i]) if finished[pos, i] else None for i in range(n)
                    ],
                    "chosen": chosen,
                    "rejected": int((~finished[pos]).sum()),
                    "checkpoints": checkpoints,
                },
            )
        )
    return outputs


def _id(sample: Sample, n: int) -> int:
    """The sample's slot in `StreamingBestOfN`: prompt position · N + sample index."""
    return sample.owner * n + sample.key[1]
