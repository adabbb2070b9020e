"""The sequence-level methods drawing through vLLM (`VllmGenerator`)."""

from __future__ import annotations

import numpy as np
import pytest

import rshape_fast as rf
from rshape_fast.errors import EngineError

N = 4
TOKENS = 32


@pytest.mark.parametrize("method", ["bon", "streaming_bon"])
def test_chosen_sample_is_the_best_by_the_reward_models_own_score(vllm_lm, rm, prompts, method):
    results = rf.generate(
        prompts,
        lm=vllm_lm,
        rm=rm,
        method=method,
        n=N,
        max_new_tokens=TOKENS,
        checkpoint_tokens=8,
        reject_fraction=0.0,
        greedy=False,
    )
    for result in results:
        assert result.engine == "vllm"
        own = float(rm.score([result.prompt], [result.text])[0])
        assert result.reward == pytest.approx(own, abs=1e-5)
        rewards = np.asarray(result.extras["rewards"], dtype=float)
        if method == "bon":  # every sample was scored whole: the chosen one is their best
            assert len(rewards) == N
            assert own == pytest.approx(rewards.max(), abs=1e-5)


@pytest.mark.parametrize("method", ["bon", "streaming_bon", "soft_bon", "segment", "segment_beam"])
def test_same_call_twice_and_alone_or_in_a_batch_give_the_same_tokens(vllm_lm, rm, prompts, method):
    knobs = dict(method=method, n=N, max_new_tokens=TOKENS, checkpoint_tokens=8, greedy=False)
    first = rf.generate(prompts, lm=vllm_lm, rm=rm, **knobs)
    again = rf.generate(prompts, lm=vllm_lm, rm=rm, **knobs)
    alone = rf.generate(prompts[1:2], lm=vllm_lm, rm=rm, **knobs)
    assert [r.token_ids for r in first] == [r.token_ids for r in again]
    assert alone[0].token_ids == first[1].token_ids
    for result in first:
        assert result.stop_reason in ("eos", "length", "stop_string")
        assert 0 < len(result.token_ids) <= TOKENS
        assert result.text == vllm_lm.decode(result.token_ids)
        assert result.cost.generated_tokens > 0 and result.cost.lm_calls > 0


def test_stop_string_cuts_where_the_transformers_engine_cuts(vllm_lm, rm, prompts):
    """The stop rule is the package's: the text ends before the stop string."""
    results = rf.generate(
        prompts, lm=vllm_lm, rm=rm, method="bon", n=2, max_new_tokens=TOKENS, stop=[" the "]
    )
    for result in results:
        assert " the " not in result.text
        if result.stop_reason == "stop_string":
            assert " the " in vllm_lm.decode(result.token_ids)


def test_entropy_segments_are_refused_on_vllm(vllm_lm, rm, prompts):
    with pytest.raises(EngineError, match="entropy_threshold"):
        rf.generate(
            prompts, lm=vllm_lm, rm=rm, method="segment", entropy_threshold=2.0, max_new_tokens=8
        )
