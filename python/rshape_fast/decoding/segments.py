"""Segment-level search: `segment` (accept/resample, after CARDS) and `segment_beam`.

A segment is what the response generator (`Sampler`, or `VllmGenerator` on vLLM) draws in
segment mode: it ends at a delimiter, at high next-token entropy (after
`min_segment_tokens`), at `max_segment_tokens`, or with the response (EOS, stop string,
`max_new_tokens`). Segments are scored as the whole response so far,
`r(prompt, prefix ⊕ segment)`, by the steering reward model.

Seeding: segment s of round (or beam rank) j at segment number d of prompt key q is keyed
`(q, d, j, s)`, so `segment` round 0 and `segment_beam` rank 0 draw the same segments
from the same prefix. That makes the two comparable exactly: `segment_beam` with
`beam_width=1` keeps, at every step, the best of the `segment_samples` segments of its one
prefix, which is `segment` with `retries=0` and an `accept_threshold` no segment reaches
(take the best seen) — the greedy segment choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rshape_fast._core import SegmentBeam
from rshape_fast.decoding.ensemble import Reward
from rshape_fast.decoding.lm_state import encode_prompts
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.phase_timer import PhaseTimer
from rshape_fast.decoding.registry import require_reward_model
from rshape_fast.decoding.response_sampler import (
    Sample,
    response_generator,
    sample_output,
    score_samples,
)
from rshape_fast.decoding.results import Cost, RowOutput
from rshape_fast.models import LanguageModelBase
from rshape_fast.shaping import shape_rewards, stackelberg_threshold


def _draw_segments(
    lm: LanguageModelBase,
    options: DecodingOptions,
    costs: list[Cost],
    timer: PhaseTimer,
    prompt_ids: list[list[int]],
    heads: Sequence[tuple[int, list[int], tuple[int, ...]]],
    progress: Callable[[int], None],
) -> list[Sample]:
    """`segment_samples` segments for each `(owner, response prefix, key head)`.

    Returns the finished segments, grouped by head in order; sample s of a head is keyed
    `(*key_head, s)`.
    """
    sampler = response_generator(lm, options, costs, timer, segments=True, progress=progress)
    samples = [
        Sample(owner=owner, key=(*head, s), prefix=list(prefix))
        for owner, prefix, head in heads
        for s in range(options.segment_samples)
    ]
    contexts = [prompt_ids[owner] + prefix for owner, prefix, _ in heads]
    parents = [j for j in range(len(heads)) for _ in range(options.segment_samples)]
    sampler.start(contexts, samples, parents)
    sampler.run()
    return samples


def run_segment(
    lm: LanguageModelBase,
    rm: Reward | None,
    prompts: list[str],
    keys: list[int],
    options: DecodingOptions,
    progress: Callable[[int], None],
) -> list[RowOutput]:
    """Segment-level rejection sampling.

    For every prompt's current prefix, draw `segment_samples` segments and score them. The
    first segment seen (earliest round, then sample order) whose reward reaches the
    threshold is accepted. The threshold is `accept_threshold` when given, else the SRS
    threshold m* of all segments drawn for this prefix so far (uniform probabilities,
    γ = e^{min(B/β, 2)}). Without an accepted segment another round is drawn, up to
    `retries` more; then the best segment seen is taken. Note that m* never exceeds the
    best reward it is computed from, so with the default threshold the first round always
    accepts; retries matter with a fixed `accept_threshold`.
    """
    reward = require_reward_model(rm, options.method)
    timer = PhaseTimer.for_device(lm.device)
    costs = [Cost() for _ in prompts]
    prompt_ids = encode_prompts(lm, prompts, options)
    gamma = options.sequence_gamma
    responses: list[list[int]] = [[] for _ in prompts]
    final: list[Sample | None] = [None] * len(prompts)
    segments: list[list[str]] = [[] for _ in prompts]
    attempts: list[list[int]] = [[] for _ in prompts]
    segment_rewards: list[list[float]] = [[] for _ in prompts]
    live = list(range(len(prompts)))
    number = 0
    while live:
        seen: dict[int, list[tuple[Sample, float]]] = {pos: [] for pos in live}
        chosen: dict[int, Sample] = {}
        pending = list(live)
        for round_ in range(options.retries + 1):
            heads = [(pos, responses[pos], (keys[pos], number, round_)) for pos in pending]
            drawn = _draw_segments(lm, options, costs, timer, prompt_ids, heads, progress)
            scores = score_samples(reward, prompts, drawn, costs, timer, options)
            with timer.phase("select"):
                for sample, score in zip(drawn, scores.tolist(), strict=True):
                    seen[sample.owner].append((sample, score))
                still = []
                for pos in pending:
                    rewards = np.array([r for _, r in seen[pos]], dtype=np.float32)
                    threshold = (
                        options.accept_threshold
                        if options.accept_threshold is not None
                        else float(stackelberg_threshold(rewards, gamma=gamma))
                    )
                    passing = np.flatnonzero(rewards >= threshold)
                    if passing.size:
                        chosen[pos] = seen[pos][int(passing[0])][0]
                        attempts[pos].append(round_ + 1)
                    else:
                        still.append(pos)
                pending = still
            if not pending:
                break
        for pos in pending:  # retry budget spent: the best seen (ties: the earliest)
            best = int(np.argmax([r for _, r in seen[pos]]))
            chosen[pos] = seen[pos][best][0]
            attempts[pos].append(options.retries + 1)
        for pos in live:
            sample = chosen[pos]
            score = next(r for s, r in seen[pos] if s is sample)
            segments[pos].append(lm.decode(sample.response_ids[len(responses[pos]) :]))
            segment_rewards[pos].append(score)
            responses[pos] = sample.response_ids
            if sample.final:
                final[pos] = sample
        live = [pos for pos in live if final[pos] is None]
        number += 1
    timer.charge(costs)
    outputs = []
    for pos in range(len(prompts)):
        answer = final[pos]
        assert answer is not None
        outputs.append(
            sample_output(
                answer,
                segment_rewards[pos][-1],
                costs[pos],
                {
                    "segments": segments[pos],
                    "attempts": attempts[pos],
                    "segment_rewards": segment_rewards[pos],
                },
            )
        )
    return outputs


def _sequence_hash(sample: Sample) -> int:
    """Hash of the whole response (and whether it is complete) for duplicate detection.

    Tuples of ints hash the same in every process (no string salting), so runs repeat.
    """
    return hash((tuple(sample.response_ids), sample.final))


def run_segment_beam(
    lm: LanguageModelBase,
    rm: Reward | None,
    prompts: list[str],
    keys: list[int],
    options: DecodingOptions,
    progress: Callable[[int], None],
) -> list[RowOutput]:
    """Segment-level beam search with the Rust `SegmentBeam`.

    Each prompt keeps up to `beam_width` prefixes; every live prefix is expanded with
    `segment_samples` sampled segments, the expansions are scored and shaped within each
    prompt's expansion set (`options.shaping`, sequence-level caps, uniform
    probabilities), and the `beam_width` best survive (duplicates dropped, finished ones
    carried). Every expansion ends at `max_new_tokens` at the latest, so the beam always
    finishes; the answer is the member of the final beam with the highest steering reward
    (raw rewards: shaped scores of different steps come from different candidate sets).
    """
    reward = require_reward_model(rm, options.method)
    timer = PhaseTimer.for_device(lm.device)
    costs = [Cost() for _ in prompts]
    prompt_ids = encode_prompts(lm, prompts, options)
    shaping = options.sequence_shape_params
    beam = SegmentBeam(len(prompts), options.beam_width)
    by_serial: dict[int, tuple[Sample, float]] = {}
    # Live members in the order of the last `keep`: (owner, response prefix, rank in prompt).
    members: list[tuple[int, list[int], int]] = [(pos, [], 0) for pos in range(len(prompts))]
    parents_of_members = [-1] * len(prompts)  # before the first step no member exists
    depth = 0
    steps = [0] * len(prompts)  # per prompt: steps in which it still had live members
    while members:
        for pos in {owner for owner, _, _ in members}:
            steps[pos] += 1
        heads = [(pos, prefix, (keys[pos], depth, rank)) for pos, prefix, rank in members]
        drawn = _draw_segments(lm, options, costs, timer, prompt_ids, heads, progress)
        raw = score_samples(reward, prompts, drawn, costs, timer, options)
        with timer.phase("select"):
            owners = np.array([s.owner for s in drawn], dtype=np.int64)
            shaped = np.empty_like(raw)
            for pos in np.unique(owners):
                rows = np.flatnonzero(owners == pos)
                calibrated = raw[rows] / np.float32(options.reward_scale or 1.0)
                shaped[rows] = shape_rewards(calibrated, shaping=options.shaping, params=shaping)
            parent = np.repeat(
                np.array(parents_of_members, dtype=np.int64), options.segment_samples
            )
            keep, serials = beam.step(
                owners,
                parent,
                shaped,
                np.array([s.final for s in drawn], dtype=bool),
                np.array([_sequence_hash(s) for s in drawn], dtype=np.int64),
            )
        for sample, serial, score in zip(drawn, serials.tolist(), raw.tolist(), strict=True):
            by_serial[int(serial)] = (sample, score)
        ranks: dict[int, int] = {}
        members = []
        for i in keep.tolist():
            owner = drawn[i].owner
            members.append((owner, drawn[i].response_ids, ranks.get(owner, 0)))
            ranks[owner] = ranks.get(owner, 0) + 1
        parents_of_members = list(range(len(members)))
        depth += 1
    timer.charge(costs)
    outputs = []
    for pos in range(len(prompts)):
        finalists = [by_serial[serial] for serial, _, done in beam.members(pos) if done]
        # Every expansion stops at the budget at the latest, so the final beam is all
        # finished; max() keeps the first (best-ranked) member on equal rewards.
        sample, score = max(finalists, key=lambda item: item[1])
        outputs.append(
            sample_output(
                sample,
                score,
                costs[pos],
                {
                    "beam_width": options.beam_width,
                    "segment_samples": options.segment_samples,
                    "steps": steps[pos],
                    "final_beam_rewards": [r for _, r in finalists],
                },
            )
        )
    return outputs
