"""On a CUDA GPU (`make gpu-check` runs these there): decoding on `cuda` with tiny
real-architecture models, the `torch.topk` candidate path, the torch sampling rule and the
reward model's cached scorer on the GPU, each against the CPU. Skipped, with the reason,
where there is no GPU."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import rshape_fast as rf
from rshape_fast.decoding.choosers import top_candidates
from rshape_fast.decoding.reward_scorers import CachedCandidateScorer, TextCandidateScorer
from rshape_fast.decoding.token_draws import sample_tokens
from rshape_fast.errors import DeviceError
from rshape_fast.models import LanguageModel, RewardModel

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason=f"no CUDA GPU here (torch {torch.__version__}); make gpu-check runs these on one",
    ),
]
PROMPTS = ["Tell me about your day.", "What is the best way to learn to cook?"]


@pytest.fixture(scope="module")
def gpu_models(tiny_lm, tiny_rm):
    """Copies of the tiny models on the GPU (the session's own stay on the CPU)."""
    lm = LanguageModel.from_model(
        copy.deepcopy(tiny_lm.model), tiny_lm.tokenizer, name="tiny-cuda", device="cuda"
    )
    rm = RewardModel(
        copy.deepcopy(tiny_rm.model),
        tiny_rm.tokenizer,
        template="{prompt}\n{response}",
        name="tiny-rm-cuda",
        device="cuda",
    )
    return lm, rm


def test_topk_path_on_the_gpu_equals_the_rust_kernel():
    logits = torch.randn(4, 49152, generator=torch.Generator().manual_seed(0))
    cpu_values, cpu_ids = top_candidates(logits, 10)
    gpu_values, gpu_ids = top_candidates(logits.cuda(), 10)
    assert gpu_ids.device.type == "cuda"
    np.testing.assert_array_equal(gpu_ids.cpu().numpy(), cpu_ids.numpy())
    np.testing.assert_allclose(gpu_values, cpu_values, rtol=1e-6)


def test_sampling_rule_on_the_gpu_equals_the_cpu():
    logits = torch.randn(8, 49152, generator=torch.Generator().manual_seed(1)) * 3
    uniforms = np.random.default_rng(0).random(8)
    for top_p in (None, 0.9):
        cpu = sample_tokens(logits, uniforms, temperature=0.7, top_k=50, top_p=top_p)
        gpu = sample_tokens(logits.cuda(), uniforms, temperature=0.7, top_k=50, top_p=top_p)
        assert gpu.device.type == "cuda"
        np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy())


def test_cached_scorer_on_the_gpu_equals_text_scoring(gpu_models):
    lm, rm = gpu_models
    candidates = torch.tensor([[264, 1347, 3111], [42, 7, 900]])
    cached = CachedCandidateScorer(rm, PROMPTS).score(candidates.cuda())
    text = TextCandidateScorer(rm, lm, PROMPTS).score(candidates)
    np.testing.assert_allclose(cached, text, atol=1e-3, rtol=1e-3)


def test_args_decodes_on_the_gpu(gpu_models):
    lm, rm = gpu_models
    results = rf.generate(PROMPTS, lm=lm, rm=rm, device="cuda", max_new_tokens=8)
    assert all(r.extras["reward_path"] == "cached" for r in results)
    assert all(len(r.token_ids) <= 8 and np.isfinite(r.reward) for r in results)
    assert results[0].cost.seconds_lm > 0 and results[0].cost.seconds_rm > 0
    sampled = rf.generate(PROMPTS, lm=lm, rm=rm, greedy=False, top_p=0.9, seed=3, max_new_tokens=8)
    again = rf.generate(PROMPTS, lm=lm, rm=rm, greedy=False, top_p=0.9, seed=3, max_new_tokens=8)
    assert [r.token_ids for r in sampled] == [r.token_ids for r in again]


def test_a_gpu_model_with_device_cpu_is_refused(gpu_models):
    lm, rm = gpu_models
    with pytest.raises(DeviceError, match="is on cuda"):
        rf.generate(PROMPTS, lm=lm, rm=rm, device="cpu", max_new_tokens=2)
