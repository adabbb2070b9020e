"""Batched base-model sampling of whole responses or segments, shared by the sequence methods.

One `Sampler` advances many samples (rows) through one `LMState`: every distinct context
(prompt, or prompt ⊕ response so far) is prefilled once and forked with `LMState.select`
into the samples that continue it, so N samples of a prompt share the prompt's KV cache.
Each row's token at step t is drawn with the uniform keyed by `(seed, *row.key, t)`, never
by the row it occupies, so a batch of prompts and one prompt at a time draw the same tokens,
and two methods that give a sample the same key (bon and streaming_bon) draw the same
sample. Finished or rejected rows leave the cache before the next forward.

Rows stop by the one `StopRule` (rows.py). In segment mode a segment also ends, before a
token is drawn, when the entropy of the next-token distribution exceeds `entropy_threshold`
once the segment has `min_segment_tokens` tokens (`entropy`).

With `hidden_states=True` (controlled-decoding data) every drawn token is run through the LM
at once, finishing ones included, and each sample keeps the last-layer hidden state after
each of its tokens.

The sampler is the generator interface of the sequence-level methods: `start` rows from
contexts (forking shared ones), `step` extends them by a token or to a stop, `drop` removes
rows (docs/scaling.md maps it onto a serving engine).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from rshape_fast.decoding.ensemble import Reward, RewardEnsemble
from rshape_fast.decoding.lm_state import LMState
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.phase_timer import PhaseTimer
from rshape_fast.decoding.results import Cost, RowOutput
from rshape_fast.decoding.rows import FINAL_REASONS, StopRule, strip_eos
from rshape_fast.decoding.token_draws import row_seeds, row_uniforms, sample_tokens
from rshape_fast.errors import InputTypeError, InvalidInputError
from rshape_fast.models import LanguageModel, LanguageModelBase, RewardModel


@dataclass
class Sample:
    """One row of a `Sampler`: a response (or segment) being drawn for prompt `owner`.

    `key` identifies the draw for seeding: the token at step t of this run uses the seed
    of `(run seed, *key, t)`. `prefix` holds response tokens generated before this run
    (segment search continues a prefix); `tokens` the ones drawn in this run.
    """

    owner: int
    key: tuple[int, ...]
    prefix: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    reason: str | None = None
    text: str = ""
    hidden: list[torch.Tensor] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.reason is not None

    @property
    def final(self) -> bool:
        """Whether the whole response is complete (not just a segment)."""
        return self.reason in FINAL_REASONS

    @property
    def response_ids(self) -> list[int]:
        """Prefix ⊕ tokens of this run, without a closing EOS token."""
        return strip_eos(self.prefix + self.tokens, self.reason)


def sample_output(sample: Sample, reward: float, cost: Cost, extras: dict[str, Any]) -> RowOutput:
    """The result row of a finished sample (response ids without a closing EOS) and the
    steering reward it was chosen by."""
    assert sample.reason is not None
    return RowOutput(
        token_ids=sample.response_ids,
        text=sample.text,
        stop_reason=sample.reason,
        reward=float(reward),
        cost=cost,
        extras=extras,
    )


def score_texts(
    rm: Reward,
    prompts: Sequence[str],
    owners: Sequence[int],
    texts: Sequence[str],
    costs: Sequence[Cost],
    timer: PhaseTimer,
    *,
    special_tokens: bool = False,
) -> np.ndarray:
    """Steering rewards of `(prompts[owner], text)` pairs in one batched call (float32).
    `special_tokens` is as in `RewardModel.score`.

    Charges each owner one reward call and the tokens of its scored texts. Reward models
    tokenise the formatted pair exactly as `RewardModel.score` does, so the counts are the
    model's real input sizes; plain text scorers have no tokens to count. An ensemble
    scores with every member and combines per owner (its texts are one candidate set).
    """
    if not texts:
        return np.zeros(0, dtype=np.float32)
    pair_prompts = [prompts[o] for o in owners]
    members = rm.members if isinstance(rm, RewardEnsemble) else [rm]
    scores = []
    with timer.phase("rm"):
        for member in members:
            if isinstance(member, RewardModel):
                ids = [
                    member.encode_pair(p, t, special_tokens=special_tokens)
                    for p, t in zip(pair_prompts, texts, strict=True)
                ]
                scores.append(member.score_ids(ids))
                for owner, seq in zip(owners, ids, strict=True):
                    costs[owner].rm_tokens += len(seq)
            else:
                scores.append(
                    member.score(pair_prompts, list(texts), special_tokens=special_tokens)
                )
    for owner in set(owners):
        costs[owner].rm_calls += len(members)
    if isinstance(rm, RewardEnsemble):
        return rm.combine(np.stack(scores), sets=np.asarray(owners))
    return np.asarray(scores[0], dtype=np.float32)


def score_samples(
    rm: Reward,
    prompts: Sequence[str],
    samples: Sequence[Sample],
    costs: Sequence[Cost],
    timer: PhaseTimer,
    options: DecodingOptions,
) -> np.ndarray:
    """`score_texts` of finished samples: each one's text against its owner's prompt."""
    return score_texts(
        rm,
        prompts,
        [s.owner for s in samples],
        [s.text for s in samples],
        costs,
        timer,
        special_tokens=options.special_tokens_in_prompts,
    )


def next_token_entropy(logits: torch.Tensor) -> np.ndarray:
    """Entropy in nats of softmax(logits) per row (the base distribution, temperature 1)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return (-(logp.exp() * logp).sum(-1)).cpu().numpy()


class ResponseGenerator(Protocol):
    """The seam between the sequence-level methods and whatever draws their samples: start
    rows from contexts (forking shared ones), extend them by up to m tokens or to a stop,
    drop rows. `Sampler` runs on the transformers engine, `VllmGenerator`
    (rshape_fast/engines/vllm_generator.py) on vLLM; `response_generator` picks the
    language model's."""

    live: list[Sample]

    def start(
        self, contexts: Sequence[list[int]], samples: list[Sample], parents: Sequence[int]
    ) -> None: ...

    def extend(self, tokens: int) -> list[Sample]: ...

    def drop(self, samples: Sequence[Sample]) -> None: ...

    def run(self) -> None: ...


def response_generator(
    lm: LanguageModelBase,
    options: DecodingOptions,
    costs: Sequence[Cost],
    timer: PhaseTimer,
    *,
    segments: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ResponseGenerator:
    """The generator of the language model's engine (arguments as for `Sampler`)."""
    if isinstance(lm, LanguageModel):
        return Sampler(lm, options, costs, timer, segments=segments, progress=progress)
    from rshape_fast.engines.vllm_generator import VllmGenerator
    from rshape_fast.engines.vllm_model import VllmLanguageModel

    if not isinstance(lm, VllmLanguageModel):
        raise InputTypeError(f"lm: no response generator for a {type(lm).__name__}")
    return VllmGenerator(lm, options, costs, timer, segments=segments, progress=progress)


class Sampler:
    """Draws samples from the base LM for a batch; see the module docstring for the rules.

    Usage: `start(contexts, samples, parents)`, then `step()` until `live` is empty (or
    `run()`); `drop(...)` removes rows between steps (early rejection). `progress(n)` is told
    the tokens drawn in each step.
    """

    def __init__(
        self,
        lm: LanguageModel,
        options: DecodingOptions,
        costs: Sequence[Cost],
        timer: PhaseTimer,
        *,
        segments: bool = False,
        hidden_states: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.lm = lm
        self.options = options
        self.costs = costs
        self.timer = timer
        self.segments = segments
        self.hidden_states = hidden_states
        self.progress = progress
        self.stop = StopRule(lm, options, segments=segments)
        self.live: list[Sample] = []
        self._state: LMState | None = None
        self._logits: torch.Tensor | None = None
        # Tokens drawn in the last step and not yet run through the LM: the forward is
        # deferred so rows dropped in between (finished or rejected) are never computed.
        self._pending: torch.Tensor | None = None

    def start(
        self, contexts: Sequence[list[int]], samples: list[Sample], parents: Sequence[int]
    ) -> None:
        """Prefill each context once and fork it into the samples that continue it.

        `contexts[j]` are full LM input ids (prompt ⊕ response prefix); sample `i`
        continues `contexts[parents[i]]`.
        """
        if len(samples) != len(parents):
            raise InvalidInputError("one parent context per sample")
        if not samples:
            self.live = []
            return
        with self.timer.phase("lm"):
            state = LMState(self.lm, list(contexts))
            (logits,) = state.prefill()
        for j, ctx in enumerate(contexts):
            owners = {s.owner for s, p in zip(samples, parents, strict=True) if p == j}
            for owner in owners:
                self.costs[owner].lm_tokens += len(ctx)
        for owner in {s.owner for s in samples}:
            self.costs[owner].lm_calls += 1
        index = list(parents)
        state.select(index)
        self._state = state
        self._logits = logits[torch.as_tensor(index, dtype=torch.long, device=logits.device)]
        self._pending = None
        self.live = list(samples)

    def _advance(self, *, hidden: bool = False) -> None:
        if self._pending is None:
            return
        assert self._state is not None
        with self.timer.phase("lm"):
            out = self._state.advance(self._pending, hidden=hidden)
        self._logits = out[0]
        if hidden:
            for sample, state in zip(self.live, out[1], strict=True):
                sample.hidden.append(state.cpu())
        for sample in self.live:
            self.costs[sample.owner].lm_tokens += 1
        for owner in {s.owner for s in self.live}:
            self.costs[owner].lm_calls += 1
        self._pending = None

    def drop(self, samples: Sequence[Sample]) -> None:
        """Remove live samples (e.g. rejected ones) before the next step."""
        gone = {id(s) for s in samples}
        keep = [row for row, s in enumerate(self.live) if id(s) not in gone]
        self._keep(keep)

    def _keep(self, keep: list[int]) -> None:
        if len(keep) == len(self.live):
            return
        self.live = [self.live[row] for row in keep]
        if not keep:
            self._state, self._logits, self._pending = None, None, None
            return
        assert self._state is not None
        self._state.select(keep)
        index = torch.as_tensor(keep, dtype=torch.long)
        if self._pending is not None:
            self._pending = self._pending[index]
        else:
            assert self._logits is not None
            self._logits = self._logits[index.to(self._logits.device)]

    def step(self) -> list[Sample]:
        """Draw one token for every live sample; return the samples that finished."""
        if not self.live:
            return []
        self._advance()
        assert self._logits is not None
        opts = self.options
        finished: list[Sample] = []
        if self.segments and opts.entropy_threshold is not None:
            # A segment ends where the model is unsure what comes next: the next token
            # starts the following segment, so it is not drawn here.
            with self.timer.phase("select"):
                entropy = next_token_entropy(self._logits)
            keep = []
            for row, sample in enumerate(self.live):
                long_enough = len(sample.tokens) >= opts.min_segment_tokens
                if long_enough and entropy[row] > opts.entropy_threshold:
                    self._finish(sample, "entropy", None)
                    finished.append(sample)
                else:
                    keep.append(row)
            self._keep(keep)
            if not self.live:
                return finished
            assert self._logits is not None
        with self.timer.phase("select"):
            keys = [(*s.key, len(s.tokens)) for s in self.live]
            uniforms = row_uniforms(row_seeds(opts.seed, keys))
            tokens = sample_tokens(
                self._logits,
                uniforms,
                temperature=opts.temperature,
                top_k=opts.top_k,
                top_p=opts.top_p,
            ).cpu()
        keep = []
        for row, (sample, token) in enumerate(zip(self.live, tokens.tolist(), strict=True)):
            sample.tokens.append(int(token))
            self.costs[sample.owner].generated_tokens += 1
            reason, text = self.stop.check(sample.prefix, sample.tokens)
            if reason is None:
                keep.append(row)
            else:
                self._finish(sample, reason, text)
                finished.append(sample)
        if self.progress is not None:
            self.progress(len(tokens))
        self._pending = tokens
        if self.hidden_states:
            # The data needs the state after every token, the last one too: run them now.
            self._advance(hidden=True)
        self._keep(keep)
        return finished

    def extend(self, tokens: int) -> list[Sample]:
        """Draw up to `tokens` more tokens for every live sample (fewer for those that stop
        first); return the samples that finished meanwhile."""
        finished: list[Sample] = []
        for _ in range(tokens):
            if not self.live:
                break
            finished.extend(self.step())
        return finished

    def run(self) -> None:
        """Step until every sample is done."""
        while self.live:
            self.step()

    def _finish(self, sample: Sample, reason: str, text: str | None) -> None:
        sample.reason = reason
        sample.text = text if text is not None else self.lm.decode(sample.response_ids)
