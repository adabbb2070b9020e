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
from transformers import PreTrainedModel

from rshape_fast.decoding.ensemble import Reward, RewardEnsemble
from rshape_fast.errors import ContextLengthError, InvalidInputError, ModelError, NonFiniteError
from rshape_fast.kv_batch import KVBatch
from rshape_fast.models import LanguageModelBase, RewardModel, TextRewardModel


class CachedCandidateScorer:
    """Candidate rewards from a decoder reward model with a prefix KV cache.

    The reward model may sit on another device than the LM: candidate ids are moved to it
    and its cache stays there. With `max_response_tokens`, a row whose longest input (head,
    that many response tokens, the last one a candidate, and the tail) exceeds the reward
    model's context is refused before any work; `special_tokens` is as in
    `RewardModel.template_ids`.
    """

    path = "cached"

    def __init__(
        self,
        rm: RewardModel,
        prompts: Sequence[str],
        *,
        max_response_tokens: int | None = None,
        special_tokens: bool = False,
    ) -> None:
        parts = rm.backbone_and_head()
        if parts is None:
            raise ModelError("the cached scorer needs a decoder reward model with a score head")
        backbone, self.head = parts
        if not isinstance(backbone, PreTrainedModel):
            raise ModelError(f"the reward model's body is a {type(backbone).__name__}")
        heads, tails = zip(
            *(rm.template_ids(p, special_tokens=special_tokens) for p in prompts), strict=True
        )
        if len({tuple(t) for t in tails}) != 1:
            # The tail follows the response, so it can only vary if the template puts the
            # prompt after the response; blocks of one length keep the step one forward.
            raise ModelError(
                "the reward template's text after {response} must not depend on the prompt"
            )
        if max_response_tokens is not None:
            _check_rm_context(rm, heads, len(tails[0]), max_response_tokens)
        # Pad id 0: padding is masked out, so any id gives the same rewards.
        self.batch = KVBatch(backbone, heads, pad_id=0)
        self.tail = torch.tensor(tails[0], dtype=torch.long, device=self.batch.device)

    @property
    def rows(self) -> int:
        return self.batch.rows

    @property
    def calls(self) -> int:
        return self.batch.calls

    @property
    def tokens(self) -> list[int]:
        return self.batch.tokens

    def commit(self, tokens: torch.Tensor) -> None:
        """Append the chosen token of every row; it is run with the next step's blocks."""
        self.batch.append(tokens)

    def select(self, rows: torch.Tensor | list[int]) -> None:
        """Keep the given rows in that order (repeats fork a row)."""
        self.batch.select(rows)

    def flush(self) -> list[int]:
        """Run the pending tokens into the cache now (e.g. a shared head, before `select`
        forks rows from it); returns the tokens each row ran."""
        ran = [int(t) for t in self.batch.pending_mask.sum(-1).tolist()]
        if self.batch.pending_ids.shape[1] > 0:
            self.batch.forward()
        return ran

    @torch.inference_mode()
    def score(self, candidates: torch.Tensor) -> np.ndarray:
        """Rewards `[rows, k]` of `prefix ⊕ candidate ⊕ tail` for candidate ids `[rows, k]`."""
        rows, k = candidates.shape
        candidates = candidates.to(self.batch.device)
        tail_len = int(self.tail.numel())
        block = 1 + tail_len
        pend = int(self.batch.pending_ids.shape[1])
        blocks = torch.cat(
            [candidates.unsqueeze(-1), self.tail.expand(rows, k, tail_len)], dim=2
        ).reshape(rows, k * block)
        out = self.batch.forward_blocks(blocks, block)
        last = pend + torch.arange(k, device=self.batch.device) * block + (block - 1)
        rewards = self.head(out.last_hidden_state[:, last, :]).squeeze(-1).float()
        # The candidate blocks are scratch: drop them, keep the committed tokens.
        self.batch.crop(k * block)
        result = rewards.cpu().numpy()
        if not np.isfinite(result).all():
            raise NonFiniteError("reward model returned NaN or inf for a candidate")
        return result


class TextCandidateScorer:
    """Candidate rewards through text: decode, then score all `rows·k` texts at once
    (`RewardModel.score` refuses a text longer than the model's context)."""

    path = "text"

    def __init__(
        self,
        rm: RewardModel | TextRewardModel,
        lm: LanguageModelBase,
        prompts: Sequence[str],
        *,
        special_tokens: bool = False,
    ) -> None:
        self.rm = rm
        self.special_tokens = special_tokens
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
        return self.rm.score(prompts, texts, special_tokens=self.special_tokens).reshape(rows, k)


class PartialResponseScorer:
    """Rewards of partial responses that grow in lockstep, from a prefix KV cache.

    Each row is a response identified by an integer id. `score(ids, responses)` takes the
    still-live rows (a subset of the previous call's, each response extending what it was
    then, all of one length) and returns `r(prompt, response ⊕ tail)` for each. Its last
    token is scored as a one-token candidate; the tokens before it are committed to the
    cache, so a row's tokens are run once over the whole decode, and the template head
    once per distinct prompt (`head_tokens` says where that work is charged).
    """

    def __init__(
        self,
        rm: RewardModel,
        prompts: Sequence[str],
        ids: Sequence[int],
        *,
        max_response_tokens: int | None = None,
        special_tokens: bool = False,
    ) -> None:
        if len(ids) != len(prompts) or len(set(ids)) != len(ids):
            raise InvalidInputError("one distinct id per prompt row")
        # The template head is run once per distinct prompt and forked to its rows.
        distinct = {p: j for j, p in enumerate(dict.fromkeys(prompts))}
        self.scorer = CachedCandidateScorer(
            rm,
            list(distinct),
            max_response_tokens=max_response_tokens,
            special_tokens=special_tokens,
        )
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
            raise InvalidInputError("one response per id, all of one length")
        unknown = [i for i in ids if int(i) not in self.rows]
        if unknown:
            raise InvalidInputError(f"ids {unknown} are not live rows of this scorer")
        if length <= self.fed:
            raise InvalidInputError(
                f"responses must be longer than the {self.fed} tokens already scored"
            )
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


class EnsembleCandidateScorer:
    """Candidate rewards of every member of a `RewardEnsemble`, each from its own scorer
    (a cached member keeps its own KV cache). `score` returns `[M, rows, k]`; the chooser
    combines them, since `logsigmoid` needs the candidates' base probabilities."""

    def __init__(
        self,
        ensemble: RewardEnsemble,
        lm: LanguageModelBase,
        prompts: Sequence[str],
        *,
        max_response_tokens: int | None = None,
        special_tokens: bool = False,
    ):
        self.scorers: list[CandidateScorer] = [
            candidate_scorer(
                m,
                lm,
                prompts,
                max_response_tokens=max_response_tokens,
                special_tokens=special_tokens,
            )
            for m in ensemble.members
        ]
        self.path: str = "+".join(s.path for s in self.scorers)

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.scorers)

    @property
    def tokens(self) -> list[int]:
        return [sum(t) for t in zip(*(s.tokens for s in self.scorers), strict=True)]

    def commit(self, tokens: torch.Tensor) -> None:
        for scorer in self.scorers:
            scorer.commit(tokens)

    def select(self, rows: torch.Tensor | list[int]) -> None:
        for scorer in self.scorers:
            scorer.select(rows)

    def score(self, candidates: torch.Tensor) -> np.ndarray:
        return np.stack([s.score(candidates) for s in self.scorers])


def cache_refusal(rm: Reward, lm: LanguageModelBase) -> str | None:
    """Why the reward model cannot score the LM's token ids from a prefix KV cache, or None
    when it can. Devices do not matter: the cached scorer moves ids to the reward model."""
    if isinstance(rm, RewardEnsemble):
        return "an ensemble scores through its members"
    if not isinstance(rm, RewardModel):
        return f"{rm!r} scores text, not token ids"
    return rm.cache_refusal(lm.tokenizer)


def shares_cache(rm: Reward, lm: LanguageModelBase) -> TypeGuard[RewardModel]:
    """Whether the reward model can score the LM's token ids from a prefix KV cache."""
    return cache_refusal(rm, lm) is None


CandidateScorer = CachedCandidateScorer | TextCandidateScorer | EnsembleCandidateScorer


def candidate_scorer(
    rm: Reward,
    lm: LanguageModelBase,
    prompts: Sequence[str],
    *,
    max_response_tokens: int | None = None,
    special_tokens: bool = False,
) -> CandidateScorer:
    """The fastest exact scorer the reward model allows; its `path` says which one ran.

    `max_response_tokens` (the run's `max_new_tokens`) lets the cached scorer refuse, up
    front, a prompt whose reward-model input cannot fit; `special_tokens` says whether
    special-token strings in the prompts act as control tokens (`RewardModel.score`).
    """
    if isinstance(rm, RewardEnsemble):
        return EnsembleCandidateScorer(
            rm, lm, prompts, max_response_tokens=max_response_tokens, special_tokens=special_tokens
        )
    if shares_cache(rm, lm):
        return CachedCandidateScorer(
            rm, prompts, max_response_tokens=max_response_tokens, special_tokens=special_tokens
        )
    return TextCandidateScorer(rm, lm, prompts, special_tokens=special_tokens)


def _check_rm_context(
    rm: RewardModel, heads: Sequence[Sequence[int]], tail: int, max_response_tokens: int
) -> None:
    """Refuse a row whose longest reward-model input exceeds the reward model's context."""
    limit = rm.max_positions
    if limit is None:
        return
    for index, head in enumerate(heads):
        need = len(head) + max_response_tokens + tail
        if need > limit:
            raise ContextLengthError(
                f"max_new_tokens: reward model {rm.name!r} reads prompt {index} as "
                f"{len(head):,} tokens before the response, up to {max_response_tokens:,} "
                f"response tokens and {tail:,} after it: {need:,} positions, more than its "
                f"context ({limit:,} positions)"
            )
