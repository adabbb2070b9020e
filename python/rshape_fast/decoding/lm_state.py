"""A batch of token sequences advancing through a causal LM: next-token logits per row.

A thin layer over `rshape_fast.kv_batch.KVBatch` (left padding, explicit positions, row
surgery) that returns what a decoder needs from each forward: the last position's logits
(and last-layer hidden state when asked).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.kv_batch import KVBatch
from rshape_fast.models import LanguageModel, LanguageModelBase


def encode_prompts(
    lm: LanguageModelBase, prompts: Sequence[str], options: DecodingOptions
) -> list[list[int]]:
    """The LM input ids of each prompt (chat template and special tokens as the options
    say), refused before any decoding when a prompt plus `max_new_tokens` exceeds the LM's
    context."""
    ids = [
        lm.encode(
            p, chat_template=options.chat_template, special_tokens=options.special_tokens_in_prompts
        )
        for p in prompts
    ]
    lm.check_context(ids, options.max_new_tokens)
    return ids


class LMState(KVBatch):
    """The LM's KV batch. `prefill` runs the prompts, `advance` appends one token per row;
    both return next-token logits `[rows, V]` (float32). Rows are kept, dropped or forked
    with `select`. `tokens[row]` counts the prompt and every token the row ran."""

    def __init__(self, lm: LanguageModel, prompt_ids: Sequence[Sequence[int]]) -> None:
        super().__init__(lm.model, prompt_ids, lm.pad_token_id)
        self.lm = lm

    def _logits(self, *, hidden: bool) -> tuple[torch.Tensor, ...]:
        out = self.forward(logits_to_keep=1, output_hidden_states=hidden)
        logits = out.logits[:, -1, :].float()
        if hidden:
            return logits, out.hidden_states[-1][:, -1, :].float()
        return (logits,)

    def prefill(self, *, hidden: bool = False) -> tuple[torch.Tensor, ...]:
        """Run the prompts; return next-token logits `[rows, V]` (and last hidden states)."""
        return self._logits(hidden=hidden)

    def advance(self, tokens: torch.Tensor, *, hidden: bool = False) -> tuple[torch.Tensor, ...]:
        """Append one token per row; return next-token logits `[rows, V]`."""
        self.append(tokens)
        return self._logits(hidden=hidden)
