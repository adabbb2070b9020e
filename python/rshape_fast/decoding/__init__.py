"""Decoding entry points: `generate` (all methods) and `stream` (token-level, text as chosen)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from rshape_fast.decoding.best_of_n import run_bon, run_soft_bon, run_streaming_bon
from rshape_fast.decoding.controlled import run_controlled
from rshape_fast.decoding.options import METHODS, PERTURBATIONS, SHAPINGS, DecodingOptions
from rshape_fast.decoding.results import Cost, GenerationResult
from rshape_fast.decoding.segments import run_segment, run_segment_beam
from rshape_fast.decoding.token_level import TokenLevelDecoder
from rshape_fast.errors import InvalidInputError, ParameterError
from rshape_fast.models import (
    LanguageModel,
    RewardModel,
    TextRewardModel,
    as_reward_model,
    load_lm,
)

__all__ = [
    "METHODS",
    "PERTURBATIONS",
    "SHAPINGS",
    "Cost",
    "DecodingOptions",
    "GenerationResult",
    "generate",
    "stream",
]

TOKEN_LEVEL = ("base", "args")


class Runner(Protocol):
    """Decodes one batch of prompts; returns one output per prompt, in order.

    Outputs have `index`, `token_ids`, `text`, `stop_reason`, `cost` and optionally
    `extras` (see `token_level.RowOutput`).
    """

    def __call__(
        self,
        lm: LanguageModel,
        rm: RewardModel | TextRewardModel | None,
        prompts: list[str],
        indices: list[int],
        options: DecodingOptions,
    ) -> list[Any]: ...


def run_token_level(
    lm: LanguageModel,
    rm: RewardModel | TextRewardModel | None,
    prompts: list[str],
    indices: list[int],
    options: DecodingOptions,
) -> list[Any]:
    """`base` and `args`: one `TokenLevelDecoder` over the batch."""
    decoder = TokenLevelDecoder(lm, rm, prompts, indices, options)
    for _ in decoder.steps():
        pass
    return [decoder.outputs[pos] for pos in range(len(prompts))]


# Method name -> batch runner; DecodingOptions has already checked the name.
RUNNERS: dict[str, Runner] = {
    "base": run_token_level,
    "args": run_token_level,
    "bon": run_bon,
    "soft_bon": run_soft_bon,
    "streaming_bon": run_streaming_bon,
    "cd": run_controlled,
    "segment": run_segment,
    "segment_beam": run_segment_beam,
}


def _resolve(
    lm: LanguageModel | str | None,
    rm: RewardModel | TextRewardModel | str | Callable[..., Any] | None,
    method: str,
    device: str,
) -> tuple[LanguageModel, RewardModel | TextRewardModel | None]:
    model = (
        lm
        if isinstance(lm, LanguageModel)
        else load_lm(lm or "smollm2-135m-instruct", device=device)
    )
    if rm is None and method != "base":
        rm = "smollm2-sentiment"
    return model, None if rm is None else as_reward_model(rm)


def _check_prompts(prompts: Sequence[str] | str) -> list[str]:
    if isinstance(prompts, str):
        raise InvalidInputError("prompts: pass a list of strings, not a single string")
    out = list(prompts)
    if not out:
        raise InvalidInputError("prompts: the list of prompts is empty")
    for i, p in enumerate(out):
        if not isinstance(p, str) or not p.strip():
            raise InvalidInputError(f"prompts: prompt {i} is empty or not a string")
    return out


def _finish(
    rm: RewardModel | TextRewardModel | None,
    prompts: list[str],
    indices: list[int],
    outputs: list[Any],
    method: str,
) -> list[GenerationResult]:
    rewards: list[float | None] = [None] * len(outputs)
    if rm is not None:
        scores = rm.score([prompts[i] for i in indices], [o.text for o in outputs])
        rewards = [float(s) for s in np.asarray(scores)]
    return [
        GenerationResult(
            index=o.index,
            prompt=prompts[o.index],
            text=o.text,
            token_ids=o.token_ids,
            reward=r,
            stop_reason=o.stop_reason,
            method=method,
            cost=o.cost,
            extras=getattr(o, "extras", {}),
        )
        for o, r in zip(outputs, rewards, strict=True)
    ]


def _batches(n: int, size: int) -> Iterable[list[int]]:
    for start in range(0, n, size):
        yield list(range(start, min(start + size, n)))


def generate(
    prompts: Sequence[str],
    *,
    lm: LanguageModel | str | None = None,
    rm: RewardModel | TextRewardModel | str | Callable[..., Any] | None = None,
    device: str = "cpu",
    progress: bool = False,
    on_result: Callable[[GenerationResult], None] | None = None,
    **knobs: Any,
) -> list[GenerationResult]:
    """Decode every prompt with `method` and return one `GenerationResult` per prompt.

    Args:
        prompts: the user prompts (non-empty strings).
        lm: a `LanguageModel`, a built-in name or a local HF folder (default SmolLM2-135M).
        rm: the steering reward: a `RewardModel`, a `TextRewardModel`, a callable
            `list[str] -> list[float]`, a built-in name or a folder (default
            "smollm2-sentiment"; not needed for `method="base"`).
        device: where models named by string are loaded ("cpu", "cuda", ...).
        progress: show a progress bar over prompts.
        on_result: called with each result as soon as its batch finishes (for
            incremental JSONL writing).
        **knobs: the fields of `DecodingOptions`: method ("base", "args", ...), shaping
            ("srs", "raw", "meanstd", "minmax", "cap", "meansoft", "srs_hard"), k, weight
            (λ), bound (B), alpha (α), beta (β, default 1/λ), spread_ratio, max_weight,
            max_exponent, cap, perturbation ("none", "noise", "random", "reversed"),
            noise_variance, greedy, temperature, top_k, top_p, max_new_tokens,
            batch_size, seed, chat_template, stop (tuple of stop strings).

    Returns:
        Results in prompt order, each with text, token ids, the steering reward of the
        final response (None when there is no reward model), stop reason and cost.
    """
    if "stop" in knobs and knobs["stop"] is not None:
        knobs["stop"] = tuple(knobs["stop"])
    unknown = set(knobs) - set(DecodingOptions.__dataclass_fields__)
    if unknown:
        raise ParameterError(f"{sorted(unknown)[0]}: unknown option of generate()")
    options = DecodingOptions(**knobs)
    texts = _check_prompts(prompts)
    model, reward = _resolve(lm, rm, options.method, device)
    runner = RUNNERS[options.method]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc=f"{options.method}/{options.shaping}", unit="prompt")
    results: list[GenerationResult] = []
    try:
        for batch in _batches(len(texts), options.batch_size):
            outputs = runner(model, reward, [texts[i] for i in batch], batch, options)
            done = _finish(reward, texts, batch, outputs, options.method)
            for result in done:
                if on_result is not None:
                    on_result(result)
            results.extend(done)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    return results


def stream(
    prompt: str,
    *,
    lm: LanguageModel | str | None = None,
    rm: RewardModel | TextRewardModel | str | Callable[..., Any] | None = None,
    device: str = "cpu",
    **knobs: Any,
) -> Iterator[str]:
    """Yield the response to one prompt piece by piece, as each token is chosen.

    Takes the same knobs as `generate` (token-level methods only: "base" and "args").
    """
    options = DecodingOptions(**{**knobs, "batch_size": 1})
    if options.method not in TOKEN_LEVEL:
        raise ParameterError(f"method: stream() supports {TOKEN_LEVEL}, not {options.method!r}")
    (text,) = _check_prompts([prompt])
    model, reward = _resolve(lm, rm, options.method, device)
    decoder = TokenLevelDecoder(model, reward, [text], [0], options)
    tokens: list[int] = []
    shown = ""
    for emitted in decoder.steps():
        tokens.extend(token for _, token in emitted if token not in model.eos_token_ids)
        current = model.decode(tokens)
        # A token may end inside a multi-byte character; wait until it decodes cleanly.
        if current.startswith(shown) and not current.endswith("\ufffd") and current != shown:
            yield current[len(shown) :]
            shown = current
    final = decoder.outputs[0].text
    if final.startswith(shown) and len(final) > len(shown):
        yield final[len(shown) :]
