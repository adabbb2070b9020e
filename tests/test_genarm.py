"""GenARM (`method="genarm"`) and SRS-GenARM: the decoding against references, and the
ARM's training pairs. The trained ARM's accuracy is checked in tests/test_arm_train.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rshape_fast as rf
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.errors import ModelError, ParameterError

PROMPTS = ["Tell me about your day.", "What is a good breakfast?", "Describe the sea."]


@pytest.fixture(scope="module")
def tiny_arm(tmp_path_factory, save_tiny_causal_lm) -> str:
    return save_tiny_causal_lm(tmp_path_factory.mktemp("arm"), seed=7)


@torch.inference_mode()
def _naive_genarm(lm, arm_lm, prompt: str, weight: float, tokens: int) -> list[int]:
    """GenARM greedy, the obvious way: full forwards of both models on the whole sequence,
    argmax of log_softmax(base) + weight · log_softmax(arm) over the vocabulary."""
    ids = lm.encode(prompt)
    out: list[int] = []
    for _ in range(tokens):
        x = torch.tensor([ids + out])
        base = torch.log_softmax(lm.model(input_ids=x).logits[0, -1].double(), -1)
        arm = torch.log_softmax(arm_lm.model(input_ids=x).logits[0, -1].double(), -1)
        out.append(int(torch.argmax(base + weight * arm)))
        if out[-1] in lm.eos_token_ids:
            break
    return out


def test_one_step_matches_the_numpy_reference(tiny_lm, tiny_arm):
    from rshape_fast.models import load_lm

    arm_lm = load_lm(tiny_arm)
    result = rf.generate(
        PROMPTS,
        lm=tiny_lm,
        method="genarm",
        arm=tiny_arm,
        arm_weight=2.0,
        shaping="raw",
        k=tiny_lm.vocab_size,
        max_new_tokens=1,
        chat_template=True,
    )
    for prompt, row in zip(PROMPTS, result, strict=True):
        x = torch.tensor([tiny_lm.encode(prompt)])
        with torch.inference_mode():
            base = tiny_lm.model(input_ids=x).logits[0, -1].double().numpy()
            arm = arm_lm.model(input_ids=x).logits[0, -1].double().numpy()

        def log_softmax(z: np.ndarray) -> np.ndarray:
            return z - z.max() - np.log(np.exp(z - z.max()).sum())

        reference = log_softmax(base) + 2.0 * log_softmax(arm)
        # An EOS choice ends the row with no token ids.
        assert (row.token_ids or [min(tiny_lm.eos_token_ids)])[0] == int(np.argmax(reference))


def test_raw_over_the_whole_vocabulary_is_genarm(tiny_lm, tiny_arm):
    from rshape_fast.models import load_lm

    arm_lm = load_lm(tiny_arm)
    ours = rf.generate(
        PROMPTS[:2],
        lm=tiny_lm,
        method="genarm",
        arm=tiny_arm,
        arm_weight=1.5,
        shaping="raw",
        k=tiny_lm.vocab_size,
        max_new_tokens=8,
    )
    for prompt, row in zip(PROMPTS[:2], ours, strict=True):
        naive = _naive_genarm(tiny_lm, arm_lm, prompt, 1.5, 8)
        if naive and naive[-1] in tiny_lm.eos_token_ids:
            naive = naive[:-1]
        assert row.token_ids == naive
        assert row.extras["reward_path"] == "arm"
        # One ARM forward per step after the prefill: the ARM's cost is counted.
        assert row.cost.rm_calls >= 1 and row.cost.rm_tokens > len(tiny_lm.encode(prompt))


@pytest.mark.parametrize("shaping", ["srs", "raw"])
def test_batched_equals_one_prompt_at_a_time(tiny_lm, tiny_arm, shaping):
    knobs = dict(lm=tiny_lm, method="genarm", arm=tiny_arm, shaping=shaping, k=10, max_new_tokens=8)
    batched = rf.generate(PROMPTS, batch_size=3, **knobs)
    alone = [rf.generate([p], batch_size=1, **knobs)[0] for p in PROMPTS]
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]
    sampled = dict(knobs, greedy=False, temperature=0.8, seed=5)
    assert [r.token_ids for r in rf.generate(PROMPTS, batch_size=3, **sampled)] == [
        rf.generate([p], batch_size=1, **sampled)[0].token_ids for p in PROMPTS
    ]


@pytest.mark.model
def test_zero_arm_weight_is_base_greedy(lm):
    prompts = PROMPTS[:2]
    base = rf.generate(prompts, lm=lm, method="base", max_new_tokens=12)
    genarm = rf.generate(
        prompts,
        lm=lm,
        rm=None,
        method="genarm",
        arm="smollm2-135m-instruct",
        arm_weight=0.0,
        max_new_tokens=12,
    )
    assert [r.token_ids for r in genarm] == [r.token_ids for r in base]


def test_an_arm_with_another_vocabulary_is_refused(
    tmp_path, tiny_lm, smollm2_tokenizer, save_tiny_causal_lm
):
    other = save_tiny_causal_lm(tmp_path, seed=3, vocab_size=len(smollm2_tokenizer) + 64)
    with pytest.raises(ModelError, match="does not share the tokenizer"):
        rf.generate(PROMPTS[:1], lm=tiny_lm, method="genarm", arm=other, max_new_tokens=2)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"method": "genarm"}, "arm-train"),
        ({"method": "args", "arm": "x"}, "only method 'genarm'"),
        ({"method": "args", "arm_weight": 2.0}, "only method 'genarm'"),
        ({"method": "genarm", "arm": "x", "weight": 2.0}, "arm_weight"),
        ({"method": "genarm", "arm": "x", "arm_weight": -1.0}, "arm_weight"),
    ],
)
def test_arm_knobs_are_checked(knobs, message):
    with pytest.raises(ParameterError, match=message):
        DecodingOptions(**knobs)


def test_pairs_are_every_two_samples_apart_by_min_gap():
    from rshape_fast.cd.data import Sample
    from rshape_fast.genarm.train import make_pairs

    rewards = [0.5, -1.0, 2.0, 0.45]
    samples = [
        Sample("p", "prompt", i, [i], f"t{i}", r, "length", "", 0, 1) for i, r in enumerate(rewards)
    ]
    group, dropped = make_pairs(samples, min_gap=0.1)
    assert group.pairs == [(0, 1), (2, 0), (2, 1), (3, 1), (2, 3)]
    assert group.responses == [[0], [1], [2], [3]]
    assert dropped == 1  # 0.5 against 0.45
