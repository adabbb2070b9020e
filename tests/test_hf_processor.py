"""ARGS inside `model.generate`: `RewardGuidedLogitsProcessor` against `rshape_fast.generate`."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList

from rshape_fast.decoding import generate
from rshape_fast.errors import ParameterError, ShapeError
from rshape_fast.hf import RewardGuidedLogitsProcessor
from rshape_fast.kv_batch import left_pad

PROMPTS = [
    "Write a short review of the restaurant you visited last night.",
    "What do you think about rainy Mondays?",
    "Tell me about your new phone.",
]
MAX_NEW = 16


def _hf_generate(lm, processor, prompts, **kwargs):
    ids, mask = left_pad([lm.encode(p) for p in prompts], lm.pad_token_id, lm.device)
    out = lm.model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=MAX_NEW,
        logits_processor=LogitsProcessorList([processor]),
        pad_token_id=lm.pad_token_id,
        eos_token_id=sorted(lm.eos_token_ids),
        **kwargs,
    )
    responses = []
    for row in out[:, ids.shape[1] :].tolist():
        ended = [i for i, t in enumerate(row) if t in lm.eos_token_ids]
        responses.append(row[: ended[0]] if ended else row)
    return responses


@pytest.mark.model
@pytest.mark.parametrize("shaping", ["srs", "raw"])
def test_generate_with_the_processor_is_args_greedy(lm, rm, shaping):
    ours = generate(PROMPTS, lm=lm, rm=rm, method="args", shaping=shaping, max_new_tokens=MAX_NEW)
    processor = RewardGuidedLogitsProcessor(lm, rm, PROMPTS, shaping=shaping)
    assert processor.path == "cached"
    theirs = _hf_generate(lm, processor, PROMPTS, do_sample=False)
    assert theirs == [r.token_ids for r in ours]


def test_processor_refuses_a_changing_batch_and_bad_knobs(tiny_lm, tiny_rm):
    with pytest.raises(ParameterError, match="not a knob"):
        RewardGuidedLogitsProcessor(tiny_lm, tiny_rm, PROMPTS, greedy=False)
    with pytest.raises(ParameterError, match="k:"):
        RewardGuidedLogitsProcessor(tiny_lm, tiny_rm, PROMPTS, k=10**7)
    processor = RewardGuidedLogitsProcessor(tiny_lm, tiny_rm, PROMPTS, k=4)
    scores = torch.randn(3, tiny_lm.vocab_size)
    out = processor(torch.zeros((3, 5), dtype=torch.long), scores)
    assert torch.isfinite(out).sum(-1).tolist() == [4, 4, 4]
    with pytest.raises(ShapeError, match="rows"):
        processor(torch.zeros((2, 6), dtype=torch.long), scores[:2])
    with pytest.raises(ShapeError, match="grew"):
        processor(torch.zeros((3, 8), dtype=torch.long), scores)


def test_finished_rows_pass_through(tiny_lm, tiny_rm):
    processor = RewardGuidedLogitsProcessor(tiny_lm, tiny_rm, PROMPTS[:2], k=3)
    scores = torch.randn(2, tiny_lm.vocab_size)
    processor(torch.zeros((2, 4), dtype=torch.long), scores)
    eos = min(tiny_lm.eos_token_ids)
    step = torch.tensor([[0, 0, 0, 0, eos], [0, 0, 0, 0, 5]])
    out = processor(step, scores)
    assert torch.equal(out[0], scores[0])  # row 0 ended: untouched
    assert int(torch.isfinite(out[1]).sum()) == 3
    assert processor.live == [1]
