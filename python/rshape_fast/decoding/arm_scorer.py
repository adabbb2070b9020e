"""Candidate rewards from an autoregressive reward model (GenARM's ARM).

An ARM is a causal LM trained so that its log-probabilities sum to the reward
(`rshape arm-train`): the token-level reward of candidate `v` after a prefix is
`log π_ARM(v | prompt, prefix)`. `ArmScorer` keeps the ARM's own KV cache of every row and
answers, for any candidate ids, their log-probabilities from one next-token distribution
per step, so scoring k candidates, or the whole vocabulary, costs one ARM forward.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from rshape_fast.decoding.lm_state import LMState
from rshape_fast.errors import ModelError, NonFiniteError
from rshape_fast.models import LanguageModel, load_lm

__all__ = ["ArmScorer", "load_arm"]


@functools.lru_cache(maxsize=4)
def _load(name: str, device: str, dtype: torch.dtype) -> LanguageModel:
    return load_lm(name, device=device, dtype=dtype)


def load_arm(name: str, lm: LanguageModel) -> LanguageModel:
    """The ARM `name` (a built-in name or causal-LM folder) on the LM's device and dtype,
    loaded once per process; refused unless it shares the LM's tokenizer and vocabulary,
    since its log-probabilities are read at the LM's token ids."""
    arm = _load(name, str(lm.device), lm.model.dtype)
    if arm.tokenizer.get_vocab() != lm.tokenizer.get_vocab() or arm.vocab_size != lm.vocab_size:
        raise ModelError(
            f"arm: {name!r} does not share the tokenizer of LM {lm.name!r} (vocabularies of "
            f"{arm.vocab_size} and {lm.vocab_size} rows differ); an ARM must be trained from "
            "the LM's tokenizer (rshape arm-train starts from the LM)"
        )
    return arm


class ArmScorer:
    """`log π_ARM(candidate | prefix)` for every row, from the ARM's KV cache.

    `commit(tokens)` appends each row's chosen token (run with the next `score`, so rows
    dropped in between are never computed); `select(rows)` keeps rows. `calls` counts ARM
    forwards, `tokens` the tokens each row ran through the ARM.
    """

    path = "arm"

    @torch.inference_mode()
    def __init__(self, arm: LanguageModel, prompt_ids: Sequence[Sequence[int]]) -> None:
        self.state = LMState(arm, prompt_ids)
        (logits,) = self.state.prefill()
        self.logprobs = torch.log_softmax(logits.float(), dim=-1)
        self.pending: torch.Tensor | None = None
        self.calls = 1
        self.tokens = [len(ids) for ids in prompt_ids]

    @torch.inference_mode()
    def score(self, candidates: torch.Tensor) -> np.ndarray:
        """Log-probabilities `[rows, k]` of candidate ids `[rows, k]`."""
        if self.pending is not None:
            (logits,) = self.state.advance(self.pending)
            self.logprobs = torch.log_softmax(logits.float(), dim=-1)
            self.calls += 1
            self.tokens = [t + 1 for t in self.tokens]
            self.pending = None
        result = self.logprobs.gather(1, candidates.to(self.logprobs.device)).cpu().numpy()
        if not np.isfinite(result).all():
            raise NonFiniteError("the ARM returned a NaN or infinite log-probability")
        return result

    def commit(self, tokens: torch.Tensor) -> None:
        self.pending = tokens

    def select(self, rows: torch.Tensor | list[int]) -> None:
        index = torch.as_tensor(rows, dtype=torch.long)
        self.state.select(index)
        if self.pending is not None:
            self.pending = self.pending[index]
        else:
            self.logprobs = self.logprobs[index.to(self.logprobs.device)]
        self.tokens = [self.tokens[i] for i in index.tolist()]
