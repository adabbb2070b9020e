"""Token-level decoding of one batch: the base model alone, or ARGS with any shaping.

One step for the whole batch (architecture.md, "Data flow"): LM forward on the last
token with the KV cache → top-k where the logits live → rewards of all `rows·k`
candidates in one reward-model forward → one Rust `fuse_and_select` call → append, drop
finished rows from both caches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from rshape_fast.decoding.lm_state import LMState
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.results import Cost, PhaseTimer
from rshape_fast.decoding.reward_state import candidate_scorer
from rshape_fast.decoding.sampling import row_seeds, row_uniforms, sample_tokens
from rshape_fast.errors import ParameterError
from rshape_fast.models import LanguageModel, RewardModel, TextRewardModel
from rshape_fast.perturbations import perturb_rewards
from rshape_fast.shaping import fuse_and_select, topk


@dataclass
class RowOutput:
    """A finished row: its prompt index, tokens, text and why it stopped."""

    index: int
    token_ids: list[int]
    text: str
    stop_reason: str
    cost: Cost = field(default_factory=Cost)


def top_candidates(logits: torch.Tensor, k: int) -> tuple[np.ndarray, torch.Tensor]:
    """Top-k logits (numpy float32, on the host) and their ids (torch, on the logits' device)."""
    if k > logits.shape[-1]:
        raise ParameterError(f"k: {k} is larger than the vocabulary ({logits.shape[-1]})")
    if logits.device.type == "cpu":
        values, ids = topk(logits.float().numpy(), k)
        return values, torch.from_numpy(ids)
    values_t, ids_t = torch.topk(logits.float(), k, dim=-1)
    return values_t.cpu().numpy(), ids_t


def stop_check(
    lm: LanguageModel, tokens: list[int], token: int, stop: Sequence[str], length_left: int
) -> tuple[str | None, str | None]:
    """(stop reason or None, text truncated at a stop string or None) after appending `token`."""
    if token in lm.eos_token_ids:
        return "eos", None
    if stop:
        text = lm.decode(tokens)
        hits = [text.find(s) for s in stop if s in text]
        if hits:
            return "stop_string", text[: min(hits)]
    if length_left == 0:
        return "length", None
    return None, None


class TokenLevelDecoder:
    """Decodes one batch of prompts with `method` "base" or "args".

    Iterate `steps()` to advance; each item lists the `(prompt index, token id)` chosen
    in that step. After it is exhausted, `outputs` holds one `RowOutput` per prompt.
    """

    def __init__(
        self,
        lm: LanguageModel,
        rm: RewardModel | TextRewardModel | None,
        prompts: Sequence[str],
        indices: Sequence[int],
        options: DecodingOptions,
    ) -> None:
        if options.method not in ("base", "args"):
            raise ParameterError(
                f"method: TokenLevelDecoder runs base or args, not {options.method!r}"
            )
        if options.method == "args" and rm is None:
            raise ParameterError("rm: method 'args' needs a reward model")
        if options.k > lm.vocab_size:
            raise ParameterError(f"k: {options.k} is larger than the vocabulary ({lm.vocab_size})")
        self.lm = lm
        self.rm = rm
        self.options = options
        self.prompts = list(prompts)
        self.indices = list(indices)
        self.prompt_ids = [lm.encode(p, chat_template=options.chat_template) for p in self.prompts]
        self.outputs: dict[int, RowOutput] = {}

    def steps(self) -> Iterator[list[tuple[int, int]]]:
        opts = self.options
        timer = PhaseTimer()
        use_rm = opts.method == "args"
        with timer.phase("lm"):
            lm_state = LMState(self.lm, self.prompt_ids)
            (logits,) = lm_state.prefill()
        scorer = None
        if use_rm:
            assert self.rm is not None
            with timer.phase("rm"):
                scorer = candidate_scorer(self.rm, self.lm, self.prompts)
        live = list(range(len(self.prompts)))  # positions into self.prompts, one per row
        responses: list[list[int]] = [[] for _ in self.prompts]
        costs = [Cost() for _ in self.prompts]
        for step in range(opts.max_new_tokens):
            keys = [(self.indices[p], step) for p in live]
            seeds = None if opts.greedy else row_seeds(opts.seed, keys)
            if use_rm:
                assert scorer is not None
                with timer.phase("select"):
                    values, ids = top_candidates(logits, opts.k)
                with timer.phase("rm"):
                    rewards = scorer.score(ids)
                with timer.phase("select"):
                    if opts.perturbation != "none":
                        noise_seeds = row_seeds(opts.seed, [(*key, 1) for key in keys])
                        rewards = perturb_rewards(
                            rewards,
                            opts.perturbation,
                            noise_seeds,
                            noise_variance=opts.noise_variance,
                        )
                    chosen, _ = fuse_and_select(
                        values,
                        rewards,
                        weight=opts.weight,
                        scheme=opts.shaping,
                        probs_from_base=True,
                        greedy=opts.greedy,
                        temperature=opts.temperature,
                        seed=seeds,
                        **opts.shaping_kwargs(),
                    )
                    tokens = ids.gather(1, torch.from_numpy(chosen).to(ids.device).view(-1, 1))
                    tokens = tokens.view(-1).cpu()
            else:
                with timer.phase("select"):
                    uniforms = None if seeds is None else row_uniforms(seeds)
                    tokens = sample_tokens(
                        logits,
                        uniforms,
                        temperature=opts.temperature,
                        top_k=opts.top_k,
                        top_p=opts.top_p,
                    ).cpu()
            if scorer is not None:
                scorer.commit(tokens)
            keep: list[int] = []
            emitted: list[tuple[int, int]] = []
            for row, (pos, token) in enumerate(zip(live, tokens.tolist(), strict=True)):
                responses[pos].append(token)
                emitted.append((self.indices[pos], token))
                reason, text = stop_check(
                    self.lm, responses[pos], token, opts.stop, opts.max_new_tokens - step - 1
                )
                if reason is None:
                    keep.append(row)
                    continue
                ids_out = responses[pos]
                if reason == "eos":
                    ids_out = ids_out[:-1]
                costs[pos].lm_calls = lm_state.calls
                costs[pos].lm_tokens = lm_state.tokens[row]
                if scorer is not None:
                    costs[pos].rm_calls = scorer.calls
                    costs[pos].rm_tokens = scorer.tokens[row]
                costs[pos].generated_tokens = len(responses[pos])
                self.outputs[pos] = RowOutput(
                    index=self.indices[pos],
                    token_ids=ids_out,
                    text=text if text is not None else self.lm.decode(ids_out),
                    stop_reason=reason,
                    cost=costs[pos],
                )
            yield emitted
            if not keep:
                break
            if len(keep) < len(live):
                lm_state.select(keep)
                if scorer is not None:
                    scorer.select(keep)
                live = [live[row] for row in keep]
                tokens = tokens[keep]
            with timer.phase("lm"):
                (logits,) = lm_state.advance(tokens)
        timer.charge(costs)
