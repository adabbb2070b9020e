"""`VllmArgsLogitsProcessor` following vLLM's batch changes, driven by hand: requests added,
swapped, moved, removed and preempted (added again with the tokens they have), with the
transformers LM's logits. Its choices must be `generate(method="args")`'s."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

import rshape_fast as rf
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.engines.vllm_processor import VllmArgsLogitsProcessor, xargs_for

STEPS = 8


def _processor(hf_lm) -> VllmArgsLogitsProcessor:
    folder = hf_lm.tokenizer.name_or_path
    model_config = SimpleNamespace(
        tokenizer=folder, model=folder, hf_config=hf_lm.model.config, max_model_len=1024
    )
    return VllmArgsLogitsProcessor(
        SimpleNamespace(model_config=model_config), torch.device("cpu"), False
    )


@torch.inference_mode()
def _logits(hf_lm, prompt_ids: list[int], output: list[int]) -> torch.Tensor:
    ids = torch.tensor([prompt_ids + output])
    return hf_lm.model(input_ids=ids).logits[0, -1].float()


def test_adds_swaps_removals_and_preemption_give_the_transformers_choices(hf_lm, rm, prompts):
    options = DecodingOptions(method="args", weight=1.0, max_new_tokens=STEPS)
    expected = rf.generate(prompts[:2], lm=hf_lm, rm=rm, options=options)
    processor = _processor(hf_lm)
    ids = [hf_lm.encode(p) for p in prompts[:2]]
    params = [
        SamplingParams(
            temperature=0.0, max_tokens=STEPS, extra_args=xargs_for(p, 0, rm.name, options)
        )
        for p in prompts[:2]
    ]
    outputs: list[list[int]] = [[], []]
    # Batch index -> request, as vLLM's persistent batch holds them.
    slots: dict[int, int] = {0: 0, 1: 1}
    updates = {
        0: BatchUpdate(
            2, [], [(0, params[0], ids[0], outputs[0]), (1, params[1], ids[1], outputs[1])], []
        ),
        2: BatchUpdate(2, [], [], [(0, 1, MoveDirectionality.SWAP)]),
        # Request 0 (now at index 1) is preempted ...
        4: BatchUpdate(1, [1], [], []),
        # ... and comes back, with the tokens it has, at index 1; then moves to index 0 and
        # request 1 to index 1 (a swap).
        5: BatchUpdate(
            2, [], [(1, params[0], ids[0], outputs[0])], [(1, 0, MoveDirectionality.SWAP)]
        ),
    }
    for step in range(STEPS):
        update = updates.get(step)
        if step == 2:
            slots = {0: 1, 1: 0}
        elif step == 4:
            slots = {0: 1}
        elif step == 5:
            slots = {0: 0, 1: 1}
        processor.update_state(update)
        logits = torch.stack([_logits(hf_lm, ids[r], outputs[r]) for _, r in sorted(slots.items())])
        chosen = processor.apply(logits.clone())
        for index, request in slots.items():
            row = chosen[index]
            assert torch.isfinite(row).sum() == 1
            outputs[request].append(int(row.argmax()))
    # Request 0 sat out one step (preempted); an EOS may end either response early.
    for result, output in zip(expected, outputs, strict=True):
        same = min(len(output), len(result.token_ids))
        assert same >= STEPS - 3
        assert output[:same] == result.token_ids[:same]


def test_a_request_that_cannot_be_set_up_ends_instead_of_stopping_the_engine(hf_lm, rm, prompts):
    processor = _processor(hf_lm)
    # A reward-model context too short for max_tokens: refused when the request is added.
    options = DecodingOptions(method="args", max_new_tokens=10_000)
    params = SamplingParams(
        temperature=0.0, max_tokens=10_000, extra_args=xargs_for(prompts[0], 0, rm.name, options)
    )
    ids = hf_lm.encode(prompts[0])
    processor.update_state(BatchUpdate(1, [], [(0, params, ids, [])], []))
    # vLLM hands apply() a tensor it may change in place (clone: ours is an inference tensor).
    row = processor.apply(_logits(hf_lm, ids, []).unsqueeze(0).clone())[0]
    assert int(row.argmax()) in hf_lm.eos_token_ids
    assert torch.isfinite(row).sum() == 1
