"""ARGS inside transformers' `model.generate`: `RewardGuidedLogitsProcessor`.

For users who already decode with `model.generate(...)`: the processor scores the top-k
next tokens of every row by `logit + λ·shaped reward(prefix ⊕ token)` with any shaping
scheme, and returns those fused scores on the top-k with −inf elsewhere. With
`do_sample=False` that is ARGS greedy (the same tokens as `rshape_fast.generate(
method="args")`); with sampling it is ARGS sampling from the fused scores (after whatever
warpers `generate` applies, e.g. its temperature).

It keeps the reward model's KV cache across steps (the cached candidate scorer, when the
reward model allows it) by reading the token each row appended since the previous call from
`input_ids`. Rows that finished (their last token is an EOS id) leave the reward model's
cache; their scores are passed through unchanged, since `generate` pads them anyway.

    lm = rf.LanguageModel.from_model(model, tokenizer)
    processor = RewardGuidedLogitsProcessor(lm, rm, prompts, shaping="srs")
    out = model.generate(**batch, logits_processor=[processor], do_sample=False)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from transformers import LogitsProcessor

from rshape_fast.decoding.choosers import ArgsChooser, StepMetadata
from rshape_fast.decoding.ensemble import steering_reward
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.phase_timer import PhaseTimer
from rshape_fast.errors import InvalidInputError, ParameterError, ShapeError
from rshape_fast.models import LanguageModel

__all__ = ["RewardGuidedLogitsProcessor"]

# The DecodingOptions knobs that mean something inside `generate`'s own loop.
_KNOBS = frozenset(
    {"k", "weight", "shaping", "bound", "alpha", "beta", "spread_ratio", "max_weight",
     "max_exponent", "cap", "ensemble", "uwo_weight", "max_new_tokens",
     "special_tokens_in_prompts"}
)  # fmt: skip


class RewardGuidedLogitsProcessor(LogitsProcessor):
    """ARGS / SRS-ARGS as a transformers `LogitsProcessor` (see the module docstring).

    Args:
        lm: the language model `generate` runs, wrapped (`LanguageModel.from_model`); its
            tokenizer decides whether the reward model can score its ids from a cache.
        rm: the steering reward (a reward model, a text reward, a callable, a built-in name,
            or a list of them combined by `ensemble`).
        prompts: the batch's user prompts, in row order (the reward template needs them).
        **knobs: the ARGS knobs of `DecodingOptions`: k, weight (λ), shaping, bound, alpha,
            beta, spread_ratio, max_weight, max_exponent, cap, ensemble, uwo_weight; and
            max_new_tokens (give the generate call's: the reward model's longest input is
            checked against its context up front) and special_tokens_in_prompts (as the
            prompts were encoded for the LM).
    """

    def __init__(self, lm: LanguageModel, rm: Any, prompts: Sequence[str], **knobs: Any) -> None:
        if isinstance(prompts, str) or not prompts:
            raise InvalidInputError("prompts: give the batch's prompts as a non-empty list")
        unknown = sorted(set(knobs) - _KNOBS)
        if unknown:
            raise ParameterError(f"{unknown[0]}: not a knob of RewardGuidedLogitsProcessor")
        options = DecodingOptions(method="args", **knobs)
        if options.k > lm.vocab_size:
            raise ParameterError(f"k: {options.k} is larger than the vocabulary ({lm.vocab_size})")
        self.lm = lm
        self.rows = len(prompts)
        reward = steering_reward(rm, mode=options.ensemble, uwo_weight=options.uwo_weight)
        self.chooser = ArgsChooser(lm, reward, list(prompts), options)
        #: The reward scorer that runs ("cached" or "text"; members joined by "+").
        self.path = self.chooser.path
        self.live = list(range(self.rows))  # batch rows still in the reward model's cache
        self.width: int | None = None  # input_ids width at the previous call
        self.timer = PhaseTimer.for_device(lm.device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, width = input_ids.shape
        if rows != self.rows:
            raise ShapeError(
                f"input_ids has {rows} rows but the processor was built for {self.rows} "
                "prompts (the batch must not change between steps; beam search and "
                "num_return_sequences > 1 are not supported)"
            )
        if self.width is not None:
            if width != self.width + 1:
                raise ShapeError(
                    f"input_ids grew from {self.width} to {width} columns; a processor must "
                    "see every step of one generate call (build a new one per call)"
                )
            self._commit(input_ids[:, -1])
        self.width = width
        out = scores.clone()
        if not self.live:
            return cast(torch.FloatTensor, out)
        meta = StepMetadata(step=0, row_keys=[], seeds=None, timer=self.timer)
        live_scores = scores[self.live]
        ids, fused, _ = self.chooser.fuse(meta, live_scores)
        fused_t = torch.from_numpy(fused).to(device=scores.device, dtype=scores.dtype)
        block = torch.full_like(live_scores, float("-inf"))
        block.scatter_(1, ids.to(scores.device), fused_t)
        out[torch.as_tensor(self.live, device=scores.device)] = block
        return cast(torch.FloatTensor, out)

    def _commit(self, appended: torch.Tensor) -> None:
        """Feed each live row's new token to the reward model; drop rows that just ended."""
        tokens = appended[self.live].cpu()
        self.chooser.scorer.commit(tokens)
        keep = [i for i, t in enumerate(tokens.tolist()) if t not in self.lm.eos_token_ids]
        if len(keep) < len(self.live):
            self.live = [self.live[i] for i in keep]
            if keep:
                self.chooser.select(keep)
