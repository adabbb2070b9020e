"""A batch of token sequences advancing through a causal LM with its KV cache.

Rows are left-padded so every row's next token sits at the same column; positions are
passed explicitly so padding never shifts a row's rotary positions. Rows can be dropped
(finished) or duplicated (several samples of one prompt) by gathering the cache.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from rshape_fast.models import LanguageModel


class LMState:
    """The LM's KV cache and masks for a batch of rows.

    `prefill` runs the prompts and returns the next-token logits of each row; `advance`
    appends one token per row and returns the next logits; `select` keeps (or repeats)
    rows by index. Counters `calls` and `tokens` (per row) feed the cost accounting.
    """

    def __init__(self, lm: LanguageModel, prompt_ids: list[list[int]]) -> None:
        self.lm = lm
        self.device = lm.device
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((len(prompt_ids), width), lm.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
        for row, ids in enumerate(prompt_ids):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        self._pending = input_ids.to(self.device)
        self.mask = mask.to(self.device)
        self.cache = DynamicCache(config=lm.model.config)
        self.calls = 0
        self.tokens = [len(ids) for ids in prompt_ids]

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    def _forward(self, input_ids: torch.Tensor, *, hidden: bool) -> tuple[torch.Tensor, ...]:
        q = input_ids.shape[1]
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)[:, -q:]
        out = self.lm.model(
            input_ids=input_ids,
            attention_mask=self.mask,
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
            output_hidden_states=hidden,
        )
        self.calls += 1
        logits = out.logits[:, -1, :].float()
        if hidden:
            return logits, out.hidden_states[-1][:, -1, :].float()
        return (logits,)

    @torch.inference_mode()
    def prefill(self, *, hidden: bool = False) -> tuple[torch.Tensor, ...]:
        """Run the prompts; return next-token logits `[rows, V]` (and last hidden states)."""
        return self._forward(self._pending, hidden=hidden)

    @torch.inference_mode()
    def advance(self, tokens: torch.Tensor, *, hidden: bool = False) -> tuple[torch.Tensor, ...]:
        """Append one token per row; return next-token logits `[rows, V]`."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)
        for row in range(self.rows):
            self.tokens[row] += 1
        return self._forward(tokens.to(self.device).view(-1, 1), hidden=hidden)

    def select(self, rows: torch.Tensor | list[int]) -> None:
        """Keep the given rows, in that order (an index may repeat to fork a row)."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self.tokens = [self.tokens[int(i)] for i in index.tolist()]
