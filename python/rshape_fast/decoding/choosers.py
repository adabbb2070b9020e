"""Choosers: the part of a token-level step that picks each row's next token.

The token loop (`token_loop.py`) owns everything a step shares: the LM's KV batch, the
rows and their stop rule, costs and timing. A chooser gets the step's metadata and the
current logits and returns one token per live row, as transformers' `LogitsProcessorList`
and vLLM's sampler compose a step from small parts (docs/architecture.md, "A step"):

- `BaseChooser`: the LM alone, greedy or sampled (temperature, top-k, top-p).
- `ArgsChooser`: ARGS / SRS-ARGS: top-k, rewards of `prefix ⊕ candidate`, one Rust
  `fuse_and_select` (shaping, fusion, choice) for the batch. When sampling, `top_k` and
  `top_p` cut the fused distribution over the k candidates, as transformers and vLLM apply
  their warpers after the logits processors.
- `GenArmChooser`: GenARM and shaped GenARM: `ArgsChooser` with the candidates' rewards read
  from an autoregressive reward model's next-token log-probabilities (`ArmScorer`).
- `ValueHeadChooser`: controlled decoding: `log p_T(v) + λ·V(prefix ⊕ v)`, with the k
  candidates run through the LM itself so that the chosen one needs no forward of its own.

A new token-level method is a chooser: a class with `choose(meta, logits)` and
`select(rows)` (plus `calls`/`tokens` counters when it does model work of its own).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch

from rshape_fast.decoding.arm_scorer import ArmScorer, load_arm
from rshape_fast.decoding.ensemble import Reward, RewardEnsemble
from rshape_fast.decoding.lm_state import LMState, encode_prompts
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.phase_timer import PhaseTimer
from rshape_fast.decoding.reward_scorers import CandidateScorer, candidate_scorer
from rshape_fast.decoding.rows import Counted
from rshape_fast.decoding.token_draws import row_seeds, row_uniforms, sample_tokens
from rshape_fast.decoding.value_head import load_value_head
from rshape_fast.errors import NonFiniteError, ParameterError
from rshape_fast.models import LanguageModel, LanguageModelBase
from rshape_fast.perturbations import perturb_rewards
from rshape_fast.shaping import fuse_and_select, topk


@dataclass(frozen=True)
class StepMetadata:
    """What every chooser may need to know about one step (like vLLM's SamplingMetadata).

    `row_keys[row]` is `(prompt key, step)` of each live row; `seeds` their per-row seeds
    (None when decoding greedily).
    """

    step: int
    row_keys: list[tuple[int, int]]
    seeds: np.ndarray | None
    timer: PhaseTimer


class Chooser(Protocol):
    """Picks one token per live row. `choose` returns `(tokens [rows] on the CPU, next
    logits or None)`: next logits when the chooser already ran the chosen tokens through
    the LM (the loop then skips its own forward). `path` names the reward scorer that ran
    ("cached" or "text"), None when no reward model scores candidates."""

    counters: Counted | None
    path: str | None

    def choose(
        self, meta: StepMetadata, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def select(self, rows: list[int]) -> None: ...


def top_candidates(logits: torch.Tensor, k: int) -> tuple[np.ndarray, torch.Tensor]:
    """Top-k logits (numpy float32, on the host) and their ids (torch, on the logits' device).

    On the CPU this is the Rust `topk`; on an accelerator `torch.topk`, where the logits live.
    """
    if logits.device.type == "cpu":
        values, ids = topk(logits.float().numpy(), k)
        return values, torch.from_numpy(ids)
    values_t, ids_t = torch.topk(logits.float(), k, dim=-1)
    return values_t.cpu().numpy(), ids_t


class BaseChooser:
    """The base model alone: argmax, or a draw keyed by the row's seed."""

    counters: Counted | None = None
    path: str | None = None

    def __init__(self, options: DecodingOptions) -> None:
        self.options = options

    def choose(
        self, meta: StepMetadata, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        opts = self.options
        with meta.timer.phase("select"):
            uniforms = None if meta.seeds is None else row_uniforms(meta.seeds)
            tokens = sample_tokens(
                logits, uniforms, temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p
            )
        return tokens.cpu(), None

    def select(self, rows: list[int]) -> None:
        del rows  # nothing per row


class ArgsChooser:
    """ARGS with any shaping scheme: `logit + λ·shaped reward(prefix ⊕ token)` over the top-k.

    The candidates' probabilities for the SRS threshold are the softmax of their logits
    (docs/algorithms.md §2.4). The reward scorer is the cached one when the reward model
    allows it (`path` says which ran). Rewards are divided by `options.reward_scale` (a
    number by now: `generate` resolves "auto") before they are perturbed and shaped.
    """

    def __init__(
        self,
        lm: LanguageModelBase,
        rm: Reward,
        prompts: list[str],
        options: DecodingOptions,
    ) -> None:
        scorer = candidate_scorer(
            rm,
            lm,
            prompts,
            max_response_tokens=options.max_new_tokens,
            special_tokens=options.special_tokens_in_prompts,
        )
        self._init(options, scorer, rm if isinstance(rm, RewardEnsemble) else None)

    def _init(
        self,
        options: DecodingOptions,
        scorer: CandidateScorer | ArmScorer,
        ensemble: RewardEnsemble | None,
    ) -> None:
        self.options = options
        self.params = options.shape_params  # built (and checked) once, not every step
        self.ensemble = ensemble
        self.scorer = scorer
        self.counters: Counted | None = scorer
        self.path: str | None = scorer.path

    def fuse(
        self, meta: StepMetadata, logits: torch.Tensor
    ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Top-k ids `[rows, k]`, their fused scores `[rows, k]` and each row's choice."""
        opts = self.options
        with meta.timer.phase("select"):
            values, ids = top_candidates(logits, opts.k)
        with meta.timer.phase("rm"):
            rewards = self.scorer.score(ids)
        with meta.timer.phase("select"):
            if self.ensemble is not None:
                rewards = self.ensemble.combine_candidates(rewards, values)
            if opts.reward_scale is not None:
                rewards = rewards / np.float32(opts.reward_scale)
            if opts.perturbation != "none":
                noise_seeds = row_seeds(opts.seed, [(*key, 1) for key in meta.row_keys])
                rewards = perturb_rewards(
                    rewards, opts.perturbation, noise_seeds, noise_variance=opts.noise_variance
                )
            chosen, fused = fuse_and_select(
                values,
                rewards,
                weight=opts.fusion_weight,
                shaping=opts.shaping,
                probs_from_base=True,
                greedy=opts.greedy,
                temperature=opts.temperature,
                seed=meta.seeds,
                params=self.params,
                top_k=opts.top_k,
                top_p=opts.top_p,
            )
        return ids, fused, np.asarray(chosen)

    def choose(
        self, meta: StepMetadata, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        ids, _, chosen = self.fuse(meta, logits)
        tokens = ids.gather(1, torch.from_numpy(chosen).to(ids.device).view(-1, 1))
        tokens = tokens.view(-1).cpu()
        self.scorer.commit(tokens)
        return tokens, None

    def select(self, rows: list[int]) -> None:
        self.scorer.select(rows)


class GenArmChooser(ArgsChooser):
    """GenARM (Xu et al., 2025) as an ARGS chooser: the reward of candidate `v` is the
    autoregressive reward model's `log π_ARM(v | prefix)`, weighted by `arm_weight`.

    With `shaping="raw"` and `k` the vocabulary size, the fused score is
    `logit_base(v) + arm_weight · log π_ARM(v)`, which ranks and samples as
    `log π_base + arm_weight · log π_ARM` over the whole vocabulary: GenARM. Any other scheme
    shapes the ARM's log-probabilities of the base top-k as ARGS shapes a reward model's
    (`srs`: SRS-GenARM). One ARM forward per step, on its own KV cache. Sampling takes the
    temperature as the paper does (docs/algorithms.md §4): the fused score is divided by
    `(1 + arm_weight) · temperature`.
    """

    def __init__(self, lm: LanguageModel, prompts: list[str], options: DecodingOptions) -> None:
        assert options.arm is not None  # DecodingOptions checks it for `genarm`
        arm = load_arm(options.arm, lm)
        scorer = ArmScorer(arm, encode_prompts(arm, prompts, options))
        tempered = replace(options, temperature=options.temperature * (1 + options.arm_weight))
        self._init(tempered, scorer, None)


class ValueHeadChooser:
    """Controlled decoding: top-k tokens scored by `log p_T(v) + λ·V(prefix ⊕ v)`.

    One step for the whole batch: the base term is `log softmax(logits / T)` of the k
    tokens; ONE LM forward runs `rows × k` one-token blocks (each sees its row's cached
    prefix and itself, at the next position), giving each candidate's hidden state (the
    input of `V`) and its next-token logits; the value head scores them in one call; one Rust
    `fuse_and_select(shaping="raw")` picks (the head learnt shaped targets already); the
    chosen block's KV column is kept, so the chosen token needs no forward of its own.
    When sampling, the draw is from `softmax(score)`: the base term already carries the
    temperature, so it is not applied twice.
    """

    path: str | None = None

    def __init__(self, lm: LanguageModel, state: LMState, options: DecodingOptions) -> None:
        assert options.value_head is not None  # DecodingOptions checks it for `cd`
        self.head = load_value_head(options.value_head, device=lm.device)
        hidden = int(lm.model.config.hidden_size)
        if self.head.hidden_size != hidden:
            raise ParameterError(
                f"value_head: {options.value_head} was trained on hidden size "
                f"{self.head.hidden_size} (LM {self.head.config.get('lm')!r}), but {lm.name!r} "
                f"has {hidden}"
            )
        self.state = state
        self.options = options
        self.calls = 0
        self.tokens = [0] * state.rows
        self.counters: Counted | None = self

    def choose(
        self, meta: StepMetadata, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        opts = self.options
        rows = self.state.rows
        with meta.timer.phase("select"):
            top_logits, ids = top_candidates(logits, opts.k)
            # log p_T of the candidates: tempered logits minus the row's log-normaliser.
            norm = torch.logsumexp(logits.float() / opts.temperature, dim=-1, keepdim=True)
            base = top_logits / np.float32(opts.temperature) - norm.cpu().numpy()
        with meta.timer.phase("lm"):
            out = self.state.forward_blocks(
                ids, 1, same_position=True, logits_to_keep=opts.k, output_hidden_states=True
            )
            cand_logits, cand_hidden = out.logits.float(), out.hidden_states[-1].float()
        with meta.timer.phase("rm"):
            with torch.inference_mode():
                values = self.head(cand_hidden).float().cpu().numpy()
            self.calls += 1
            self.tokens = [t + opts.k for t in self.tokens]
            if not np.isfinite(values).all():
                raise NonFiniteError("value head returned NaN or inf for a candidate")
        with meta.timer.phase("select"):
            chosen, _ = fuse_and_select(
                base,
                values,
                weight=opts.weight,
                shaping="raw",
                probs_from_base=True,
                greedy=opts.greedy,
                temperature=1.0,
                seed=meta.seeds,
                top_k=opts.top_k,
                top_p=opts.top_p,
            )
            chosen_t = torch.from_numpy(np.asarray(chosen, dtype=np.int64))
            tokens = ids.cpu().gather(1, chosen_t.view(-1, 1)).view(-1)
        with meta.timer.phase("lm"):
            self.state.keep_column(opts.k, chosen_t)
            next_logits = cand_logits[torch.arange(rows), chosen_t.to(cand_logits.device)]
        return tokens, next_logits

    def select(self, rows: list[int]) -> None:
        self.tokens = [self.tokens[row] for row in rows]
