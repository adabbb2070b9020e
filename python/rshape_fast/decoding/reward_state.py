"""Scoring the k candidate next tokens of every row with the reward model.

Two paths with the same meaning, `r(prompt, response ⊕ candidate)`:

* `CachedCandidateScorer` (the reward model is a decoder with a score head and shares
  the LM's tokenizer): the reward model keeps a KV cache of `head ⊕ response` for each
  row. One forward per step runs, for all rows at once, the tokens chosen since the last
  call plus k blocks `candidate ⊕ tail` (the template's fixed suffix). A 4-D attention
  mask lets every block see the cached prefix and itself only, so no cache is copied
  per candidate. The blocks are then cropped from the cache; the chosen tokens stay.
* `TextCandidateScorer` (anything else): decode each candidate continuation to text and
  call `RewardModel.score` on all `rows·k` texts in one batch. Correct, slower.

`PartialResponseScorer` reuses the cached path for responses that grow together
(streaming best-of-N checkpoints): each checkpoint runs only the tokens drawn since the
previous one plus the template tail, instead of every response from its first token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeGuard

import numpy as np
import torch
from transformers import DynamicCache

from rshape_fast.errors import NonFiniteError
from rshape_fast.models import LanguageModel, RewardModel, TextRewardModel


class CachedCandidateScorer:
    """Candidate rewards from a decoder reward model with a prefix KV cache."""

    def __init__(self, rm: RewardModel, prompts: Sequence[str]) -> None:
        parts = rm.backbone_and_head()
        if parts is None:
            raise TypeError("CachedCandidateScorer needs a decoder reward model with a score head")
        self.backbone, self.head = parts
        self.device = rm.device
        heads, tails = zip(*(rm.template_ids(p) for p in prompts), strict=True)
        if len({tuple(t) for t in tails}) != 1:
            # The tail follows the response, so it can only vary if the template puts the
            # prompt after the response; blocks of one length keep the step one forward.
            raise ValueError(
                "the reward template's text after {response} must not depend on the prompt"
            )
        self.tail = torch.tensor(tails[0], dtype=torch.long, device=self.device)
        width = max(len(h) for h in heads)
        self.pad_id = 0
        ids = torch.full((len(heads), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(heads), width), dtype=torch.long)
        for row, head in enumerate(heads):
            ids[row, width - len(head) :] = torch.tensor(head, dtype=torch.long)
            mask[row, width - len(head) :] = 1
        # `mask` covers what is in the cache; `pending` holds chosen tokens not yet run.
        self.mask = torch.zeros((len(heads), 0), dtype=torch.long, device=self.device)
        self.pending_ids = ids.to(self.device)
        self.pending_mask = mask.to(self.device)
        self.cache = DynamicCache(config=rm.model.config)
        self.calls = 0
        self.tokens = [0] * len(heads)

    @property
    def rows(self) -> int:
        return int(self.pending_ids.shape[0])

    def commit(self, tokens: torch.Tensor) -> None:
        """Append the chosen token of every row; it is run with the next step's blocks."""
        col = tokens.to(self.device).view(-1, 1)
        self.pending_ids = torch.cat([self.pending_ids, col], dim=1)
        self.pending_mask = torch.cat([self.pending_mask, torch.ones_like(col)], dim=1)

    def select(self, rows: torch.Tensor | list[int]) -> None:
        """Keep the given rows in that order (repeats fork a row)."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self.pending_ids = self.pending_ids[index]
        self.pending_mask = self.pending_mask[index]
        self.tokens = [self.tokens[int(i)] for i in index.tolist()]

    @torch.inference_mode()
    def flush(self) -> list[int]:
        """Run the pending tokens into the cache now (e.g. a shared head, before `select`
        forks rows from it); returns the tokens each row ran."""
        ran = self.pending_mask.sum(-1).tolist()
        if self.pending_ids.shape[1] == 0:
            return ran
        full_mask = torch.cat([self.mask, self.pending_mask], dim=1)
        positions = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, self.mask.shape[1] :]
        self.backbone(
            input_ids=self.pending_ids,
            attention_mask=full_mask,
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
        )
        self.mask = full_mask
        self.pending_ids = self.pending_ids[:, :0]
        self.pending_mask = self.pending_mask[:, :0]
        self.calls += 1
        self.tokens = [t + r for t, r in zip(self.tokens, ran, strict=True)]
        return ran

    @torch.inference_mode()
    def score(self, candidates: torch.Tensor) -> np.ndarray:
        """Rewards `[rows, k]` of `prefix ⊕ candidate ⊕ tail` for candidate ids `[rows, k]`."""
        rows, k = candidates.shape
        candidates = candidates.to(self.device)
        tail_len = int(self.tail.numel())
        block = 1 + tail_len
        pend = self.pending_ids.shape[1]
        blocks = torch.cat(
            [candidates.unsqueeze(-1), self.tail.expand(rows, k, tail_len)], dim=2
        ).reshape(rows, k * block)
        input_ids = torch.cat([self.pending_ids, blocks], dim=1)

        past = self.mask.shape[1]
        full_mask = torch.cat([self.mask, self.pending_mask], dim=1)  # [rows, past + pend]
        seen = full_mask.sum(-1, keepdim=True)  # real tokens before the blocks
        pend_pos = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, past:]
        block_pos = seen + torch.arange(block, device=self.device).repeat(k).unsqueeze(0)
        positions = torch.cat([pend_pos, block_pos], dim=1)

        allowed = self._block_mask(full_mask, pend, k, block)
        dtype = next(self.backbone.parameters()).dtype
        bias = torch.zeros(allowed.shape, dtype=dtype, device=self.device)
        bias.masked_fill_(~allowed, torch.finfo(dtype).min)
        out = self.backbone(
            input_ids=input_ids,
            attention_mask=bias.unsqueeze(1),
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
        )
        last = pend + torch.arange(k, device=self.device) * block + (block - 1)
        hidden = out.last_hidden_state[:, last, :]
        rewards = self.head(hidden).squeeze(-1).float()
        # The candidate blocks are scratch: drop them, keep the committed tokens.
        self.cache.crop(-(k * block))
        self.mask = full_mask
        self.pending_ids = self.pending_ids[:, :0]
        self.pending_mask = self.pending_mask[:, :0]
        self.calls += 1
        for row in range(rows):
            self.tokens[row] += int(full_mask[row, past:].sum()) + k * block
        result = rewards.cpu().numpy()
        if not np.isfinite(result).all():
            raise NonFiniteError("reward model returned NaN or inf for a candidate")
        return result

    def _block_mask(self, full_mask: torch.Tensor, pend: int, k: int, block: int) -> torch.Tensor:
        """Boolean `[rows, q, kv]`: who may attend to whom in one scoring forward."""
        rows, kv_prev = full_mask.shape  # kv_prev = past + pend
        past = kv_prev - pend
        q = pend + k * block
        dev = self.device
        allowed = torch.zeros((rows, q, kv_prev + k * block), dtype=torch.bool, device=dev)
        real = full_mask.bool()
        # Everyone sees the real cached prefix.
        allowed[:, :, :past] = real[:, :past].unsqueeze(1)
        # Pending tokens: causal among themselves (and only real ones).
        causal = torch.ones((pend, pend), dtype=torch.bool, device=dev).tril()
        allowed[:, :pend, past:kv_prev] = causal.unsqueeze(0) & real[:, past:].unsqueeze(1)
        # Blocks see all real pending tokens, and their own block causally.
        allowed[:, pend:, past:kv_prev] = real[:, past:].unsqueeze(1)
        own = torch.block_diag(*[torch.ones((block, block), dtype=torch.bool)] * k).tril()
        allowed[:, pend:, kv_prev:] = own.to(dev).unsqueeze(0)
        # A padding query row must see something, or softmax turns it into NaN.
        diag = torch.arange(pend, device=dev)
        allowed[:, diag, past + diag] = True
        return allowed


class TextCandidateScorer:
    """Candidate rewards through text: decode, then score all `rows·k` texts at once."""

    def __init__(
        self,
        rm: RewardModel | TextRewardModel,
        lm: LanguageModel,
        prompts: Sequence[str],
    ) -> None:
        self.rm = rm
        self.lm = lm
        self.prompts = list(prompts)
        self.responses: list[list[int]] = [[] for _ in self.prompts]
        self.calls = 0
        self.tokens = [0] * len(self.prompts)

    @property
    def rows(self) -> int:
        return len(self.prompts)

    def commit(self, tokens: torch.Tensor) -> None:
        for row, token in enumerate(tokens.tolist()):
            self.responses[row].append(int(token))

    def select(self, rows: torch.Tensor | list[int]) -> None:
        index = torch.as_tensor(rows, dtype=torch.long).tolist()
        self.prompts = [self.prompts[i] for i in index]
        self.responses = [list(self.responses[i]) for i in index]
        self.tokens = [self.tokens[i] for i in index]

    def score(self, candidates: torch.Tensor) -> np.ndarray:
        rows, k = candidates.shape
        cand = candidates.tolist()
        prompts, texts = [], []
        for row in range(rows):
            for token in cand[row]:
                prompts.append(self.prompts[row])
                texts.append(self.lm.decode([*self.responses[row], token]))
            self.tokens[row] += k * (len(self.responses[row]) + 1)
        self.calls += 1
        return self.rm.score(prompts, texts).reshape(rows, k)


class PartialResponseScorer:
    """Rewards of partial responses that grow in lockstep, from a prefix KV cache.

    Each row is a response identified by an integer id. `score(ids, responses)` takes the
    still-live rows (a subset of the previous call's, each response extending what it was
    then, all of one length) and returns `r(prompt, response ⊕ tail)` for each. Its last
    token is scored as a one-token candidate; the tokens before it are committed to the
    cache, so a row's tokens are run once over the whole decode, and the template head
    once per distinct prompt (`head_tokens` says where that work is charged).
    """

    def __init__(self, rm: RewardModel, prompts: Sequence[str], ids: Sequence[int]) -> None:
        if len(ids) != len(prompts) or len(set(ids)) != len(ids):
            raise ValueError("one distinct id per prompt row")
        # The template head is run once per distinct prompt and forked to its rows.
        distinct = {p: j for j, p in enumerate(dict.fromkeys(prompts))}
        self.scorer = CachedCandidateScorer(rm, list(distinct))
        ran = self.scorer.flush()
        parents = [distinct[p] for p in prompts]
        self.scorer.select(parents)
        # Reward-model tokens run for each row's head: all of it on the prompt's first row.
        self.head_tokens = [
            ran[j] if j not in parents[:row] else 0 for row, j in enumerate(parents)
        ]
        self.rows = {int(i): row for row, i in enumerate(ids)}
        self.fed = 0  # response tokens in the cache (or pending) for every live row

    def score(
        self, ids: Sequence[int], responses: Sequence[Sequence[int]]
    ) -> tuple[np.ndarray, list[int]]:
        """Rewards `[len(ids)]` and the reward-model tokens each row ran in this call."""
        length = len(responses[0]) if responses else 0
        if len(ids) != len(responses) or any(len(r) != length for r in responses):
            raise ValueError("one response per id, all of one length")
        unknown = [i for i in ids if int(i) not in self.rows]
        if unknown:
            raise ValueError(f"ids {unknown} are not live rows of this scorer")
        if length <= self.fed:
            raise ValueError(f"responses must be longer than the {self.fed} tokens already scored")
        self.scorer.select([self.rows[int(i)] for i in ids])
        self.rows = {int(i): row for row, i in enumerate(ids)}
        tokens = torch.tensor([list(r) for r in responses], dtype=torch.long)
        for col in range(self.fed, length - 1):
            self.scorer.commit(tokens[:, col])
        before = list(self.scorer.tokens)
        rewards = self.scorer.score(tokens[:, length - 1 :])[:, 0]
        self.scorer.commit(tokens[:, length - 1])
        self.fed = length
        return rewards, [a - b for a, b in zip(self.scorer.tokens, before, strict=True)]


def shares_cache(rm: RewardModel | TextRewardModel, lm: LanguageModel) -> TypeGuard[RewardModel]:
    """Whether the reward model can score the LM's token ids from a prefix KV cache."""
    return (
        isinstance(rm, RewardModel)
        and rm.backbone_and_head() is not None
        and rm.shares_tokenizer(lm.tokenizer)
        and rm.device == lm.device
    )


def candidate_scorer(
    rm: RewardModel | TextRewardModel, lm: LanguageModel, prompts: Sequence[str]
) -> CachedCandidateScorer | TextCandidateScorer:
    """The fastest exact scorer the reward model allows."""
    if shares_cache(rm, lm):
        return CachedCandidateScorer(rm, prompts)
    return TextCandidateScorer(rm, lm, prompts)
