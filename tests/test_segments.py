"""Segment-level search (segment, segment_beam): the segment-end rule on the tiny model,
the search itself on the real default models with small budgets."""

from __future__ import annotations

import pytest

from rshape_fast.decoding import generate
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.phase_timer import PhaseTimer
from rshape_fast.decoding.response_sampler import Sample, Sampler
from rshape_fast.decoding.results import Cost
from rshape_fast.decoding.segments import run_segment, run_segment_beam
from rshape_fast.errors import ParameterError

PROMPTS = [
    "Tell me about your new phone.",
    "What do you think about rainy Mondays?",
]
# Segments of at most 5 tokens inside a 10-token budget: several segments per response.
KNOBS = dict(max_new_tokens=10, max_segment_tokens=5, segment_samples=2, seed=4)


def _no_progress(tokens: int) -> None:
    del tokens


def _segments(lm, **knobs):
    """Eight segments drawn after the first prompt, in segment mode."""
    options = DecodingOptions(method="segment", temperature=1.0, **knobs)
    sampler = Sampler(lm, options, [Cost()], PhaseTimer(), segments=True)
    samples = [Sample(owner=0, key=(0, 0, 0, s)) for s in range(8)]
    sampler.start([lm.encode(PROMPTS[0])], samples, [0] * 8)
    sampler.run()
    return samples


# ---------------------------------------------------------------- segment-end rule (tiny)


def test_segment_ends_at_delimiter_or_length(tiny_lm):
    delimiters = ("e", "a")
    for s in _segments(
        tiny_lm, segment_delimiters=delimiters, max_segment_tokens=6, max_new_tokens=50
    ):
        assert 1 <= len(s.tokens) <= 6
        before = tiny_lm.decode(s.tokens[:-1])
        # The segment ends at the first token that brings in a delimiter, not later.
        assert not any(d in before for d in delimiters)
        if s.reason == "delimiter":
            assert any(d in tiny_lm.decode(s.tokens) for d in delimiters)
        elif s.reason == "segment_length":
            assert len(s.tokens) == 6
        else:
            assert s.reason == "eos" and s.tokens[-1] in tiny_lm.eos_token_ids
    reasons = {
        s.reason for s in _segments(tiny_lm, segment_delimiters=delimiters, max_segment_tokens=6)
    }
    assert "delimiter" in reasons


def test_segment_ends_at_high_entropy_after_min_tokens(tiny_lm):
    # A random model is always unsure (entropy ~ log V), so every segment ends by entropy
    # exactly at min_segment_tokens unless EOS or a delimiter comes first.
    segs = _segments(
        tiny_lm,
        entropy_threshold=1.0,
        min_segment_tokens=3,
        max_segment_tokens=10,
        segment_delimiters=("\x00",),
    )
    assert all(s.reason in ("entropy", "eos") for s in segs)
    assert any(s.reason == "entropy" for s in segs)
    assert all(len(s.tokens) == 3 for s in segs if s.reason == "entropy")


def test_response_budget_ends_the_segment_as_length(tiny_lm):
    segs = _segments(tiny_lm, max_new_tokens=2, max_segment_tokens=10, segment_delimiters=("\x00",))
    assert all(s.reason in ("length", "eos") and len(s.tokens) <= 2 for s in segs)
    assert all(s.final for s in segs)


@pytest.mark.parametrize("method", ["segment", "segment_beam"])
def test_same_seed_same_output_tiny(tiny_lm, tiny_rm, method):
    knobs = dict(lm=tiny_lm, rm=tiny_rm, method=method, temperature=1.0, **KNOBS)
    a = generate(PROMPTS, **knobs)
    b = generate(PROMPTS, **knobs)
    c = generate(PROMPTS, **{**knobs, "seed": 5})
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert [r.token_ids for r in a] != [r.token_ids for r in c]


# ---------------------------------------------------------------- search (real models)


@pytest.fixture(scope="module")
def segment(lm, rm):
    return generate(PROMPTS, lm=lm, rm=rm, method="segment", **KNOBS)


@pytest.fixture(scope="module")
def beam(lm, rm):
    return generate(PROMPTS, lm=lm, rm=rm, method="segment_beam", beam_width=2, **KNOBS)


@pytest.mark.model
def test_segment_respects_budgets(lm, segment):
    for r in segment:
        assert r.stop_reason in ("eos", "length") and 1 <= len(r.token_ids) <= 10
        assert r.text == lm.decode(r.token_ids)
        segs = r.extras["segments"]
        assert "".join(segs) == r.text
        assert len(segs) >= 2  # 10 tokens in segments of at most 5
        assert len(r.extras["attempts"]) == len(segs)
        # The SRS threshold never exceeds the best reward it comes from: round 1 accepts.
        assert r.extras["attempts"] == [1] * len(segs)
        assert r.reward == pytest.approx(r.extras["segment_rewards"][-1], abs=1e-4)
        assert r.cost.generated_tokens >= KNOBS["segment_samples"] * len(segs)


@pytest.mark.model
def test_segment_retries_when_nothing_passes(lm, rm):
    (r,) = generate(
        PROMPTS[:1], lm=lm, rm=rm, method="segment", accept_threshold=1e6, retries=1, **KNOBS
    )
    assert r.extras["attempts"] == [2] * len(r.extras["segments"])
    assert len(r.token_ids) <= 10


@pytest.mark.model
def test_beam_of_width_one_is_the_greedy_segment_choice(lm, rm):
    # Greedy segment choice: at every step take the highest-reward of the S segments drawn
    # for the current prefix. `segment` does that when no segment can be accepted and there
    # are no retries; `segment_beam` does it with one beam member. Both key segment s of
    # step d as (prompt, d, 0, s), so they see the same segments.
    greedy = generate(
        PROMPTS, lm=lm, rm=rm, method="segment", accept_threshold=1e6, retries=0, **KNOBS
    )
    beam1 = generate(PROMPTS, lm=lm, rm=rm, method="segment_beam", beam_width=1, **KNOBS)
    for g, b in zip(greedy, beam1, strict=True):
        assert b.token_ids == g.token_ids
        assert b.extras["steps"] == len(g.extras["segments"])


@pytest.mark.model
def test_beam_returns_the_best_of_its_final_beam(lm, beam):
    for r in beam:
        finals = r.extras["final_beam_rewards"]
        assert 1 <= len(finals) <= 2
        assert r.reward == pytest.approx(max(finals), abs=1e-4)
        assert r.stop_reason in ("eos", "length") and len(r.token_ids) <= 10
        assert r.cost.rm_calls == r.extras["steps"]


@pytest.mark.model
def test_beam_batch_equals_one_at_a_time(lm, rm, beam):
    one = generate(
        PROMPTS, lm=lm, rm=rm, method="segment_beam", beam_width=2, batch_size=1, **KNOBS
    )
    assert [r.token_ids for r in one] == [r.token_ids for r in beam]


@pytest.mark.model
def test_bad_input_is_a_clear_error(lm, rm):
    with pytest.raises(ParameterError, match="needs a reward model"):
        run_segment(lm, None, PROMPTS, [0, 1], DecodingOptions(method="segment"), _no_progress)
    with pytest.raises(ParameterError, match="needs a reward model"):
        run_segment_beam(
            lm, None, PROMPTS, [0, 1], DecodingOptions(method="segment_beam"), _no_progress
        )
    with pytest.raises(ParameterError, match="beam_width"):
        generate(PROMPTS, lm=lm, rm=rm, method="segment_beam", beam_width=0)
    with pytest.raises(ParameterError, match="min_segment_tokens"):
        generate(
            PROMPTS, lm=lm, rm=rm, method="segment", min_segment_tokens=9, max_segment_tokens=4
        )
    with pytest.raises(ParameterError, match="segment_delimiters"):
        generate(PROMPTS, lm=lm, rm=rm, method="segment", segment_delimiters=("",))
