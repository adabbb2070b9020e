"""ARGS and SRS-ARGS on vLLM (`VllmArgsLogitsProcessor`) against the transformers engine."""

from __future__ import annotations

import pytest
from vllm import SamplingParams

import rshape_fast as rf
from rshape_fast.engines.vllm_processor import VllmArgsLogitsProcessor
from rshape_fast.errors import EngineError, ParameterError

TOKENS = 32


@pytest.fixture(scope="module")
def agreeing(vllm_lm, hf_lm, prompts):
    """The prompts on which vLLM's greedy base decoding equals the transformers engine's
    (where the two engines' logits pick the same tokens, ARGS must too)."""
    ours = rf.generate(prompts, lm=vllm_lm, method="base", max_new_tokens=TOKENS)
    theirs = rf.generate(prompts, lm=hf_lm, method="base", max_new_tokens=TOKENS)
    same = [p for p, a, b in zip(prompts, ours, theirs, strict=True) if a.token_ids == b.token_ids]
    print(f"greedy base decoding agrees on {len(same)}/{len(prompts)} prompts")
    assert same, "vLLM and transformers disagree on every prompt: nothing to compare ARGS on"
    return same


@pytest.mark.parametrize(
    "knobs",
    [
        {"shaping": "srs"},
        {"shaping": "raw"},
        {"shaping": "srs", "greedy": False, "temperature": 0.7, "top_p": 0.9, "seed": 3},
        {"shaping": "srs", "reward_scale": 0.5, "perturbation": "noise"},
    ],
    ids=["srs", "raw", "srs-sampled", "srs-scaled-noise"],
)
def test_args_tokens_equal_the_transformers_engine(vllm_lm, hf_lm, rm, agreeing, knobs):
    common = dict(method="args", weight=1.0, k=10, max_new_tokens=TOKENS, **knobs)
    ours = rf.generate(agreeing, lm=vllm_lm, rm=rm, **common)
    theirs = rf.generate(agreeing, lm=hf_lm, rm=rm, **common)
    print(f"ARGS {knobs}: compared on {len(agreeing)} prompts")
    for a, b in zip(ours, theirs, strict=True):
        assert a.engine == "vllm" and b.engine == "transformers"
        assert a.token_ids == b.token_ids
        assert a.reward == pytest.approx(b.reward, abs=1e-5)
        # The processor's reward-model work is counted as the transformers engine counts it.
        assert (a.cost.rm_calls, a.cost.rm_tokens) == (b.cost.rm_calls, b.cost.rm_tokens)


def test_ensemble_args_equal_the_transformers_engine(vllm_lm, hf_lm, agreeing):
    common = dict(
        method="args",
        rm=["smollm2-sentiment", "smollm2-chat-judge"],
        ensemble="min",
        max_new_tokens=16,
    )
    ours = rf.generate(agreeing[:1], lm=vllm_lm, **common)
    theirs = rf.generate(agreeing[:1], lm=hf_lm, **common)
    assert ours[0].token_ids == theirs[0].token_ids


def test_args_steers_away_from_base(vllm_lm, rm, prompts):
    base = rf.generate(prompts, lm=vllm_lm, rm=rm, method="base", max_new_tokens=TOKENS)
    args = rf.generate(prompts, lm=vllm_lm, rm=rm, method="args", weight=2.0, max_new_tokens=TOKENS)
    assert sum(a.reward for a in args) > sum(b.reward for b in base)


def test_cd_is_refused_on_vllm(vllm_lm, prompts):
    with pytest.raises(ParameterError, match="transformers engine only"):
        rf.generate(prompts, lm=vllm_lm, method="cd", value_head="head.pt", max_new_tokens=4)


def test_auto_reward_scale_and_stream_are_refused_on_vllm(vllm_lm, rm, prompts):
    with pytest.raises(EngineError, match="auto"):
        rf.generate(
            prompts, lm=vllm_lm, rm=rm, method="args", reward_scale="auto", max_new_tokens=4
        )
    with pytest.raises(ParameterError, match="stream"):
        list(rf.stream(prompts[0], lm=vllm_lm, rm=rm, method="args", max_new_tokens=4))


def test_a_reward_without_a_name_cannot_cross_into_the_worker(vllm_lm, prompts):
    with pytest.raises(EngineError, match="name or folder"):
        rf.generate(
            prompts, lm=vllm_lm, rm=lambda p, r: [0.0] * len(r), method="args", max_new_tokens=4
        )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"rshape_weigth": 1.0}, "unknown key"),
        ({"rshape_weight": 1.0}, "rshape_prompt"),
        ({"rshape_prompt": "hi", "rshape_k": 0}, "k"),
        ({"rshape_prompt": "hi", "rshape_shaping": "nope"}, "shaping"),
        ({"rshape_prompt": "hi", "rshape_reward_scale": "auto"}, "auto"),
        ({"rshape_prompt": "hi", "rshape_rm": "no-such-model"}, "neither a built-in"),
        ({"rshape_prompt": "hi", "rshape_rm_dtype": "int8"}, "rm_dtype"),
    ],
)
def test_bad_request_knobs_are_refused_before_the_engine(extra, message):
    with pytest.raises(ValueError, match=message):
        VllmArgsLogitsProcessor.validate_params(SamplingParams(extra_args=extra))


def test_a_request_without_knobs_is_not_guided():
    VllmArgsLogitsProcessor.validate_params(SamplingParams(extra_args={"other": 1}))
    VllmArgsLogitsProcessor.validate_params(SamplingParams())
