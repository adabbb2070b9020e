"""Token-level decoding on the real default models: the fast path against a naive loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import rshape_fast
from rshape_fast.bench.naive import bisection_threshold, naive_args
from rshape_fast.decoding import generate, stream
from rshape_fast.decoding.reward_scorers import (
    CachedCandidateScorer,
    PartialResponseScorer,
    TextCandidateScorer,
)
from rshape_fast.errors import InvalidInputError, NonFiniteError, ParameterError
from rshape_fast.models import RewardModel, TextRewardModel

pytestmark = pytest.mark.model

PROMPTS = [
    "Write a short review of the restaurant you visited last night.",
    "What do you think about rainy Mondays?",
    "Tell me about your new phone.",
]


@pytest.mark.parametrize("shaping", ["srs", "raw"])
def test_fast_path_matches_naive_loop(lm, rm, shaping):
    fast = generate(PROMPTS, lm=lm, rm=rm, method="args", shaping=shaping, max_new_tokens=24)
    for prompt, result in zip(PROMPTS, fast, strict=True):
        naive = naive_args(lm, rm, prompt, shaping=shaping, max_new_tokens=24)
        if naive and naive[-1] in lm.eos_token_ids:
            assert result.stop_reason == "eos"
            naive = naive[:-1]
        assert result.token_ids == naive, prompt


def test_batch_equals_one_at_a_time(lm, rm):
    batched = generate(PROMPTS, lm=lm, rm=rm, max_new_tokens=16, batch_size=3)
    for i, prompt in enumerate(PROMPTS):
        (single,) = generate([prompt], lm=lm, rm=rm, max_new_tokens=16)
        assert batched[i].token_ids == single.token_ids
        assert batched[i].reward == pytest.approx(single.reward, abs=1e-4)


@pytest.mark.parametrize("method", ["args", "base"])
def test_same_seed_same_sample(lm, rm, method):
    knobs = dict(lm=lm, rm=rm, method=method, greedy=False, temperature=1.0, max_new_tokens=16)
    a = generate(PROMPTS[:2], seed=7, **knobs)
    b = generate(PROMPTS[:2], seed=7, **knobs)
    c = generate(PROMPTS[:2], seed=8, **knobs)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert [r.token_ids for r in a] != [r.token_ids for r in c]
    # Draws are keyed by the prompt's index, not its batch row: batch size changes nothing.
    one_by_one = generate(PROMPTS[:2], seed=7, batch_size=1, **knobs)
    assert [r.token_ids for r in one_by_one] == [r.token_ids for r in a]


def test_base_greedy_matches_transformers_generate(lm):
    (result,) = generate(PROMPTS[:1], lm=lm, method="base", max_new_tokens=20)
    ids = torch.tensor([lm.encode(PROMPTS[0])])
    with torch.inference_mode():
        out = lm.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False
        )
    expected = out[0, ids.shape[1] :].tolist()
    if expected[-1] in lm.eos_token_ids:
        expected = expected[:-1]
    assert result.token_ids == expected
    assert result.reward is None


def test_result_fields_and_cost(lm, rm):
    (r,) = generate(PROMPTS[:1], lm=lm, rm=rm, max_new_tokens=8)
    assert r.method == "args" and r.stop_reason in ("eos", "length")
    assert len(r.token_ids) <= 8
    assert r.text == lm.decode(r.token_ids)
    assert r.reward == pytest.approx(float(rm.score([PROMPTS[0]], [r.text])[0]), abs=1e-5)
    c = r.cost
    assert c.lm_calls == c.generated_tokens  # prefill + one advance per further token
    assert c.rm_calls == c.generated_tokens  # one reward forward per step
    assert c.rm_tokens >= 10 * c.generated_tokens
    assert c.seconds_total >= c.seconds_lm + c.seconds_rm > 0


def test_stream_concatenates_to_generate(lm, rm):
    pieces = list(stream(PROMPTS[0], lm=lm, rm=rm, max_new_tokens=12))
    (result,) = generate(PROMPTS[:1], lm=lm, rm=rm, max_new_tokens=12)
    assert len(pieces) > 1
    assert "".join(pieces) == result.text


def test_stop_string(lm):
    (free,) = generate(PROMPTS[:1], lm=lm, method="base", max_new_tokens=30)
    word = free.text.split()[2]
    (stopped,) = generate(PROMPTS[:1], lm=lm, method="base", max_new_tokens=30, stop=[word])
    assert stopped.stop_reason == "stop_string"
    assert word not in stopped.text
    assert free.text.startswith(stopped.text)


def test_cached_scorer_matches_full_recompute(lm, rm):
    prompts = ["short", "a much longer prompt that pads the other row"]
    scorer = CachedCandidateScorer(rm, prompts)
    backbone, head = rm.backbone_and_head()
    responses: list[list[int]] = [[], []]
    rng = np.random.default_rng(0)
    for _ in range(3):
        cand = torch.from_numpy(rng.integers(0, lm.vocab_size, size=(2, 4)))
        got = scorer.score(cand)
        for row, prompt in enumerate(prompts):
            h, t = rm.template_ids(prompt)
            for j in range(4):
                seq = torch.tensor([h + responses[row] + [int(cand[row, j])] + t])
                with torch.inference_mode():
                    hidden = backbone(input_ids=seq).last_hidden_state[0, -1]
                    want = float(head(hidden))
                assert got[row, j] == pytest.approx(want, abs=2e-4)
        chosen = cand[:, 0]
        scorer.commit(chosen)
        for row in range(2):
            responses[row].append(int(chosen[row]))


@pytest.mark.parametrize("template", ["judge", "{prompt}\n{response}"])
def test_partial_scorer_matches_full_recompute_as_rows_drop(lm, rm, template):
    # The second template puts the prompt in the head, so heads of different lengths are
    # left-padded when they are run together.
    if template != "judge":
        rm = RewardModel(rm.model, rm.tokenizer, template=template)
    prompts = ["short", "a much longer prompt that pads the other rows", "short"]
    ids = [7, 3, 11]
    scorer = PartialResponseScorer(rm, prompts, ids)
    # Each distinct prompt's template head runs once, charged to its first row.
    heads = [len(rm.template_ids(p)[0]) for p in prompts]
    assert scorer.head_tokens == [heads[0], heads[1], 0]
    rng = np.random.default_rng(1)
    responses = {i: [] for i in ids}
    live = list(ids)
    for grow, drop in ((3, None), (1, 3), (4, None)):
        if drop is not None:
            live.remove(drop)
        for i in live:
            responses[i] += rng.integers(0, lm.vocab_size, size=grow).tolist()
        got, ran = scorer.score(live, [responses[i] for i in live])
        for row, i in enumerate(live):
            head, tail = rm.template_ids(prompts[ids.index(i)])
            want = rm.score_ids([head + responses[i] + tail])[0]
            assert got[row] == pytest.approx(want, abs=2e-4)
            assert ran[row] >= grow + len(tail)
    with pytest.raises(ValueError, match="longer"):
        scorer.score(live, [responses[i] for i in live])
    with pytest.raises(ValueError, match="not live"):
        scorer.score([3], [responses[3] + [1]])


def test_text_scorer_path_runs_with_a_callable(lm):
    positive = ("good", "great", "love", "happy", "wonderful")
    count = TextRewardModel(
        lambda texts: [sum(t.lower().count(w) for w in positive) for t in texts]
    )
    (r,) = generate(PROMPTS[:1], lm=lm, rm=count, max_new_tokens=10, weight=2.0)
    assert len(r.token_ids) > 0 and r.reward is not None
    scorer = TextCandidateScorer(count, lm, PROMPTS[:1])
    scores = scorer.score(torch.tensor([[lm.tokenizer.encode(" great")[0], 0]]))
    assert scores[0, 0] == 1.0 and scores[0, 1] == 0.0


def test_bad_input_is_a_clear_error(lm, rm):
    with pytest.raises(InvalidInputError, match="prompts"):
        generate([], lm=lm, rm=rm)
    with pytest.raises(InvalidInputError, match="prompt"):
        generate(["ok", "   "], lm=lm, rm=rm)
    with pytest.raises(ParameterError, match="k"):
        generate(PROMPTS[:1], lm=lm, rm=rm, k=lm.vocab_size + 1)
    with pytest.raises(ParameterError, match="method"):
        generate(PROMPTS[:1], lm=lm, rm=rm, method="beam")
    with pytest.raises(ParameterError, match="shaping"):
        generate(PROMPTS[:1], lm=lm, rm=rm, shaping="zscore")
    with pytest.raises(ParameterError, match="temperature"):
        generate(PROMPTS[:1], lm=lm, rm=rm, temperature=0.0)
    with pytest.raises(ParameterError, match="not_a_knob"):
        generate(PROMPTS[:1], lm=lm, rm=rm, not_a_knob=1)
    nan_rm = TextRewardModel(lambda texts: [math.nan] * len(texts))
    with pytest.raises(NonFiniteError):
        generate(PROMPTS[:1], lm=lm, rm=nan_rm, max_new_tokens=2)


def test_perturbations_change_the_steering(lm, rm):
    base = generate(PROMPTS[:2], lm=lm, rm=rm, max_new_tokens=16, weight=2.0)
    reversed_ = generate(
        PROMPTS[:2], lm=lm, rm=rm, max_new_tokens=16, weight=2.0, perturbation="reversed"
    )
    assert [r.token_ids for r in base] != [r.token_ids for r in reversed_]
    again = generate(
        PROMPTS[:2], lm=lm, rm=rm, max_new_tokens=16, weight=2.0, perturbation="noise", seed=3
    )
    twice = generate(
        PROMPTS[:2], lm=lm, rm=rm, max_new_tokens=16, weight=2.0, perturbation="noise", seed=3
    )
    assert [r.token_ids for r in again] == [r.token_ids for r in twice]


def test_bisection_reference_agrees_with_exact_threshold():
    rng = np.random.default_rng(1)
    for _ in range(20):
        r = rng.normal(size=10)
        p = rng.random(10)
        p /= p.sum()
        exact = rshape_fast.stackelberg_threshold(r, p, gamma=1.7)
        assert bisection_threshold(r, p, 1.7) == pytest.approx(exact, abs=1e-6 * np.ptp(r))
