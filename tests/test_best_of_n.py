"""The best-of-N family (bon, soft_bon, streaming_bon) and the shared batched sampler.

Model tests use the real default models with tiny budgets; the sampler's own rules are
checked on the tiny random model, which is fast.
"""

from __future__ import annotations

import numpy as np
import pytest

from rshape_fast.decoding import generate
from rshape_fast.decoding.best_of_n import run_bon, run_streaming_bon
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.phase_timer import PhaseTimer
from rshape_fast.decoding.response_sampler import Sample, Sampler
from rshape_fast.decoding.results import Cost
from rshape_fast.decoding.token_draws import prompt_key
from rshape_fast.errors import ParameterError
from rshape_fast.models import TextRewardModel

PROMPTS = [
    "Tell me about your new phone.",
    "What do you think about rainy Mondays?",
]
# Small enough for a loaded 2-core machine, large enough for rejection to matter.
KNOBS = dict(n=4, max_new_tokens=10, seed=3, temperature=1.0, checkpoint_tokens=3)


def _no_progress(tokens: int) -> None:
    del tokens


def _draw(lm, prompts, n, *, seed=0, max_new_tokens=6):
    """All samples of `prompts` drawn by the sampler, as token lists `[prompt][sample]`,
    keyed as `generate` keys them (by the prompt text)."""
    keys = [prompt_key(p) for p in prompts]
    options = DecodingOptions(
        method="bon", n=n, seed=seed, max_new_tokens=max_new_tokens, temperature=1.0
    )
    costs = [Cost() for _ in prompts]
    sampler = Sampler(lm, options, costs, PhaseTimer())
    samples = [Sample(owner=p, key=(keys[p], i)) for p in range(len(prompts)) for i in range(n)]
    contexts = [lm.encode(p) for p in prompts]
    sampler.start(contexts, samples, [s.owner for s in samples])
    sampler.run()
    return [[s for s in samples if s.owner == p] for p in range(len(prompts))], costs


# ---------------------------------------------------------------- sampler (tiny model)


def test_sampler_is_independent_of_batching(tiny_lm):
    together, _ = _draw(tiny_lm, PROMPTS, 3, seed=5)
    (alone,), _ = _draw(tiny_lm, PROMPTS[1:], 3, seed=5)
    assert [s.tokens for s in together[1]] == [s.tokens for s in alone]
    again, _ = _draw(tiny_lm, PROMPTS, 3, seed=5)
    other, _ = _draw(tiny_lm, PROMPTS, 3, seed=6)
    assert [[s.tokens for s in g] for g in again] == [[s.tokens for s in g] for g in together]
    assert [[s.tokens for s in g] for g in other] != [[s.tokens for s in g] for g in together]


def test_sampler_rules_and_cost(tiny_lm):
    groups, costs = _draw(tiny_lm, PROMPTS, 3, max_new_tokens=6)
    for group, cost in zip(groups, costs, strict=True):
        # Samples of one prompt share its prefill but draw their own tokens.
        assert len({tuple(s.tokens) for s in group}) > 1
        for s in group:
            assert s.reason in ("eos", "length") and 1 <= len(s.tokens) <= 6
            if s.reason == "length":
                assert len(s.tokens) == 6
            else:
                assert s.tokens[-1] in tiny_lm.eos_token_ids
            assert s.text == tiny_lm.decode(s.response_ids)
        assert cost.generated_tokens == sum(len(s.tokens) for s in group)
        # One prefill plus one forward per further step while any sample is live.
        assert cost.lm_calls == max(len(s.tokens) for s in group)


def test_sampler_stop_string_cuts_the_text(tiny_lm):
    options = DecodingOptions(method="bon", n=1, max_new_tokens=12, stop=("e",), seed=1)
    sampler = Sampler(tiny_lm, options, [Cost()], PhaseTimer())
    samples = [Sample(owner=0, key=(0, i)) for i in range(6)]
    sampler.start([tiny_lm.encode(PROMPTS[0])], samples, [0] * 6)
    sampler.run()
    cut = [s for s in samples if s.reason == "stop_string"]
    assert cut, "some random sample should produce an 'e' within 12 tokens"
    for s in cut:
        assert "e" not in s.text and "e" in tiny_lm.decode(s.tokens)


def test_streaming_equals_bon_without_rejection_tiny(tiny_lm, tiny_rm):
    knobs = dict(n=5, max_new_tokens=8, seed=2, temperature=1.0, checkpoint_tokens=2)
    bon = generate(PROMPTS, lm=tiny_lm, rm=tiny_rm, method="bon", **knobs)
    same = generate(
        PROMPTS, lm=tiny_lm, rm=tiny_rm, method="streaming_bon", reject_fraction=0.0, **knobs
    )
    for a, b in zip(bon, same, strict=True):
        assert a.token_ids == b.token_ids and a.extras["chosen"] == b.extras["chosen"]
        assert a.cost.generated_tokens == b.cost.generated_tokens
    pruned = generate(
        PROMPTS, lm=tiny_lm, rm=tiny_rm, method="streaming_bon", reject_fraction=0.5, **knobs
    )
    for a, b in zip(bon, pruned, strict=True):
        assert b.cost.generated_tokens < a.cost.generated_tokens
        assert b.extras["rejected"] > 0
        finished = [r for r in b.extras["rewards"] if r is not None]
        assert b.extras["rewards"][b.extras["chosen"]] == max(finished)


# ---------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def pruned(lm, rm):
    return generate(PROMPTS, lm=lm, rm=rm, method="streaming_bon", reject_fraction=0.5, **KNOBS)


@pytest.fixture(scope="module")
def bon(lm, rm):
    return generate(PROMPTS, lm=lm, rm=rm, method="bon", **KNOBS)


@pytest.fixture(scope="module")
def soft(lm, rm):
    return generate(PROMPTS, lm=lm, rm=rm, method="soft_bon", weight=1.5, **KNOBS)


@pytest.mark.model
def test_bon_returns_the_best_of_its_samples(lm, rm, bon, soft):
    n = KNOBS["n"]
    for result, other in zip(bon, soft, strict=True):
        rewards = result.extras["rewards"]
        assert result.extras["n"] == n and len(rewards) == n
        assert result.extras["chosen"] == int(np.argmax(rewards))
        # The returned text is that sample: its rescored reward is the recorded one.
        assert result.reward == pytest.approx(max(rewards), abs=1e-4)
        assert result.stop_reason in ("eos", "length")
        assert len(result.token_ids) <= KNOBS["max_new_tokens"]
        assert result.text == lm.decode(result.token_ids)
        # soft_bon draws from the very same samples.
        assert other.extras["rewards"] == pytest.approx(rewards, abs=1e-5)
        assert other.reward == pytest.approx(rewards[other.extras["chosen"]], abs=1e-4)
        c = result.cost
        assert len(result.token_ids) <= c.generated_tokens <= n * KNOBS["max_new_tokens"]
        assert c.rm_calls == 1 and c.rm_tokens > 0 and c.lm_calls >= 1
        assert c.seconds_total >= c.seconds_lm + c.seconds_rm > 0


@pytest.mark.model
def test_bon_matches_samples_drawn_directly(lm, bon):
    groups, _ = _draw(lm, PROMPTS, KNOBS["n"], seed=KNOBS["seed"], max_new_tokens=10)
    for result, group in zip(bon, groups, strict=True):
        assert result.token_ids == group[result.extras["chosen"]].response_ids


@pytest.mark.model
def test_soft_bon_shaping_is_monotone_and_capped(soft):
    for result in soft:
        shaped = result.extras["shaped"]
        rewards = result.extras["rewards"]
        # Shaping is monotone within the set: the order of the samples is kept.
        if len(set(rewards)) == len(rewards):
            assert np.argsort(shaped).tolist() == np.argsort(rewards).tolist()
        # Sequence-level caps: B_eff = min(B, 2·spread) bounds the shaped rewards.
        assert max(shaped) <= min(12.0, 2.0 * np.ptp(rewards)) + 1e-4


@pytest.mark.model
def test_streaming_without_rejection_equals_bon(lm, rm, bon):
    same = generate(PROMPTS, lm=lm, rm=rm, method="streaming_bon", reject_fraction=0.0, **KNOBS)
    for a, b in zip(bon, same, strict=True):
        assert b.token_ids == a.token_ids
        assert b.extras["chosen"] == a.extras["chosen"]
        assert b.extras["rewards"] == pytest.approx(a.extras["rewards"], abs=1e-5)
        assert b.cost.generated_tokens == a.cost.generated_tokens


@pytest.mark.model
def test_streaming_rejection_saves_tokens(bon, pruned):
    n = KNOBS["n"]
    for a, b in zip(bon, pruned, strict=True):
        assert b.cost.generated_tokens < a.cost.generated_tokens
        rewards = b.extras["rewards"]
        finished = [r for r in rewards if r is not None]
        assert 1 <= len(finished) < n and b.extras["rejected"] == n - len(finished)
        assert rewards[b.extras["chosen"]] == max(finished)
        assert b.reward == pytest.approx(max(finished), abs=1e-4)
        assert b.cost.rm_calls > 1  # partial scoring at the checkpoints


@pytest.mark.model
def test_bon_batch_equals_one_at_a_time(lm, rm, bon):
    one = generate(PROMPTS, lm=lm, rm=rm, method="bon", batch_size=1, **KNOBS)
    assert [r.token_ids for r in one] == [r.token_ids for r in bon]


@pytest.mark.model
def test_bad_input_is_a_clear_error(lm, rm):
    options = DecodingOptions(method="bon")
    with pytest.raises(ParameterError, match="rm: method 'bon' needs a reward model"):
        run_bon(lm, None, PROMPTS, [0, 1], options, _no_progress)
    with pytest.raises(ParameterError, match="needs a reward model"):
        run_streaming_bon(
            lm, None, PROMPTS, [0, 1], DecodingOptions(method="streaming_bon"), _no_progress
        )
    with pytest.raises(ParameterError, match="n"):
        generate(PROMPTS, lm=lm, rm=rm, method="bon", n=0)
    with pytest.raises(ParameterError, match="reject_fraction"):
        generate(PROMPTS, lm=lm, rm=rm, method="streaming_bon", reject_fraction=1.0)
    bad = TextRewardModel(lambda texts: [float("nan")] * len(texts))
    with pytest.raises(ValueError, match="non-finite"):
        generate(PROMPTS[:1], lm=lm, rm=bad, method="bon", n=2, max_new_tokens=2)
