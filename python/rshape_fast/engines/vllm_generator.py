"""The sequence-level methods' `ResponseGenerator` on vLLM.

`Sampler` (transformers) draws one token per step for every live sample; `VllmGenerator`
hands each `extend(m)` to vLLM as one request per live sample (its context, the prompt ⊕
the response so far, with at most m new tokens), so vLLM batches and schedules the samples
and reuses their shared prefixes (prefix caching). What stays the same:

- **the stop rule**: `StopRule` (rows.py) is applied to the returned tokens one by one, so
  EOS, stop strings, the `max_new_tokens` budget and segment delimiters end a sample at the
  same token as on the transformers engine; tokens vLLM drew past that point are dropped.
  vLLM is told the stop strings and delimiters too, only to stop drawing early;
- **the seeds**: the request extending sample `key` from its token t is seeded by
  `(seed, *key, t)`, so a sample's tokens depend on its key and on where each request
  starts, never on the batch, the other prompts or the order;
- **the costs**: one LM call per owner per round, the context tokens vLLM did not find in
  its prefix cache plus the tokens drawn.

The draws themselves are vLLM's (its sampler and random streams), so they differ from the
transformers engine's draws for the same keys. Ending a segment at high next-token entropy
needs the full distribution at every step, which a request does not return: it is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.phase_timer import PhaseTimer
from rshape_fast.decoding.response_sampler import Sample
from rshape_fast.decoding.results import Cost
from rshape_fast.decoding.rows import StopRule
from rshape_fast.decoding.token_draws import row_seeds
from rshape_fast.engines.vllm_model import VllmLanguageModel
from rshape_fast.errors import EngineError

__all__ = ["VllmGenerator", "accept_tokens", "sampling_params"]


def sampling_params(
    lm: VllmLanguageModel,
    options: DecodingOptions,
    *,
    max_tokens: int,
    seed: int,
    greedy: bool,
    stop: Sequence[str] = (),
    extra_args: dict[str, Any] | None = None,
) -> Any:
    """vLLM's `SamplingParams` for one request: EOS is the LM's set (vLLM's own EOS rule is
    off), no detokenisation (this package decodes), vLLM's temperature, top-k and top-p."""
    from vllm import SamplingParams

    return SamplingParams(
        n=1,
        max_tokens=max_tokens,
        temperature=0.0 if greedy else options.temperature,
        top_k=options.top_k or 0,
        top_p=options.top_p if options.top_p is not None else 1.0,
        seed=seed,
        ignore_eos=True,
        stop_token_ids=sorted(lm.eos_token_ids),
        stop=list(stop) or None,
        include_stop_str_in_output=True,
        detokenize=bool(stop),
        extra_args=extra_args,
    )


def accept_tokens(
    stop: StopRule, prefix: list[int], tokens: list[int], drawn: Sequence[int]
) -> tuple[str | None, str | None]:
    """Append `drawn` to `tokens` one at a time until the stop rule ends the response;
    return its (reason, text) as `StopRule.check` gives them, or (None, None)."""
    for token in drawn:
        tokens.append(int(token))
        reason, text = stop.check(prefix, tokens)
        if reason is not None:
            return reason, text
    return None, None


def prompt_seed(seed: int, key: Sequence[int]) -> int:
    """The vLLM seed of a request keyed `(seed, *key)` (63 bits: vLLM takes a signed int)."""
    return int(row_seeds(seed, [tuple(key)])[0]) >> 1


class VllmGenerator:
    """Draws samples through vLLM; the `ResponseGenerator` of the module docstring."""

    def __init__(
        self,
        lm: VllmLanguageModel,
        options: DecodingOptions,
        costs: Sequence[Cost],
        timer: PhaseTimer,
        *,
        segments: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if segments and options.entropy_threshold is not None:
            raise EngineError(
                "entropy_threshold: ending segments at high entropy needs every step's full "
                "distribution, which vLLM does not return; use the transformers engine"
            )
        self.lm = lm
        self.options = options
        self.costs = costs
        self.timer = timer
        self.segments = segments
        self.progress = progress
        self.stop = StopRule(lm, options, segments=segments)
        self.stop_strings = [*options.stop, *(options.segment_delimiters if segments else ())]
        self.live: list[Sample] = []
        self.contexts: dict[int, list[int]] = {}

    def start(
        self, contexts: Sequence[list[int]], samples: list[Sample], parents: Sequence[int]
    ) -> None:
        """Sample `i` continues `contexts[parents[i]]` (full LM input ids)."""
        self.contexts = {id(s): list(contexts[p]) for s, p in zip(samples, parents, strict=True)}
        self.live = list(samples)

    def drop(self, samples: Sequence[Sample]) -> None:
        gone = {id(s) for s in samples}
        self.live = [s for s in self.live if id(s) not in gone]

    def _budget(self, sample: Sample) -> int:
        left = self.options.max_new_tokens - len(sample.prefix) - len(sample.tokens)
        if self.segments:
            left = min(left, self.options.max_segment_tokens - len(sample.tokens))
        return left

    def extend(self, tokens: int) -> list[Sample]:
        """Up to `tokens` more tokens for every live sample, in one vLLM call."""
        from vllm.inputs import TokensPrompt

        if not self.live:
            return []
        opts = self.options
        prompts, params = [], []
        for sample in self.live:
            context = self.contexts[id(sample)] + sample.tokens
            prompts.append(TokensPrompt(prompt_token_ids=context))
            params.append(
                sampling_params(
                    self.lm,
                    opts,
                    max_tokens=min(tokens, self._budget(sample)),
                    seed=prompt_seed(opts.seed, (*sample.key, len(sample.tokens))),
                    greedy=False,
                    stop=self.stop_strings,
                )
            )
        with self.timer.phase("lm"):
            outputs = self.lm.llm.generate(prompts, params, use_tqdm=False)
        finished, keep, drawn = [], [], 0
        for sample, prompt, out in zip(self.live, prompts, outputs, strict=True):
            before = len(sample.tokens)
            reason, text = accept_tokens(
                self.stop, sample.prefix, sample.tokens, out.outputs[0].token_ids
            )
            added = len(sample.tokens) - before
            drawn += added
            cost = self.costs[sample.owner]
            cost.generated_tokens += added
            cost.lm_tokens += (
                len(prompt["prompt_token_ids"]) - int(out.num_cached_tokens or 0) + added
            )
            if reason is None:
                keep.append(sample)
            else:
                sample.reason = reason
                sample.text = text if text is not None else self.lm.decode(sample.response_ids)
                finished.append(sample)
        for owner in {s.owner for s in self.live}:
            self.costs[owner].lm_calls += 1
        if self.progress is not None:
            self.progress(drawn)
        self.live = keep
        return finished

    def run(self) -> None:
        """Extend every sample to its end (vLLM draws each in one request)."""
        while self.live:
            self.extend(max(self._budget(s) for s in self.live))
