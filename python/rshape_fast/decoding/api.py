"""Decoding entry points: `generate` (every method) and `stream` (token-level, as chosen)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from rshape_fast.cache import DEFAULT_LM, DEFAULT_REWARD_MODEL
from rshape_fast.decoding.calibration import resolve_reward_scale
from rshape_fast.decoding.ensemble import Reward, RewardEnsemble, steering_reward
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.progress import TokenProgress
from rshape_fast.decoding.registry import TOKEN_LEVEL, method_spec
from rshape_fast.decoding.results import GenerationResult, RowOutput
from rshape_fast.decoding.token_draws import default_keys, prompt_key
from rshape_fast.decoding.token_loop import TokenLoop
from rshape_fast.errors import InputTypeError, InvalidInputError, ParameterError
from rshape_fast.models import (
    LanguageModel,
    LanguageModelBase,
    RewardModel,
    TextRewardModel,
    load_lm,
)
from rshape_fast.models.loading import check_model_device, resolve_device

RewardLike = RewardModel | TextRewardModel | RewardEnsemble | str | Callable[..., Any]


def _given_models(lm: LanguageModelBase, reward: Reward | None) -> list[tuple[str, Any]]:
    """`(name, device)` of every model object of a run that sits on a torch device."""
    out: list[tuple[str, Any]] = [(f"lm {lm.name!r}", lm.device)]
    members = reward.members if isinstance(reward, RewardEnsemble) else [reward]
    out.extend((f"rm {m.name!r}", m.device) for m in members if isinstance(m, RewardModel))
    return out


def _resolve(
    lm: LanguageModelBase | str | None,
    rm: RewardLike | Sequence[RewardLike] | None,
    options: DecodingOptions,
    device: str | None,
    dtype: str,
    rm_dtype: str | None,
) -> tuple[LanguageModelBase, Reward | None]:
    """The models of a run; names are loaded on `device` (default "cpu"), in `dtype`
    (`rm_dtype`). A given model object on another device than an explicit `device` is
    refused: it would run where it is, not where `device` says."""
    target = resolve_device(device or "cpu")
    model = (
        lm
        if isinstance(lm, LanguageModelBase)
        else load_lm(lm or DEFAULT_LM, device=target, dtype=dtype)
    )
    if rm is None and options.method != "base":
        rm = DEFAULT_REWARD_MODEL
    reward = (
        None
        if rm is None
        else steering_reward(
            rm,
            mode=options.ensemble,
            uwo_weight=options.uwo_weight,
            device=target,
            dtype=rm_dtype or dtype,
        )
    )
    if device is not None:
        for name, where in _given_models(model, reward):
            check_model_device(name, where, target)
    return model, reward


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


def _check_keys(keys: Sequence[str] | None, prompts: list[str]) -> list[str]:
    if keys is None:
        return default_keys(prompts)
    if isinstance(keys, str):
        raise InvalidInputError("keys: pass a list of strings, one per prompt")
    out = list(keys)
    if len(out) != len(prompts):
        raise InvalidInputError(f"keys: {len(out)} keys for {len(prompts)} prompts")
    if not all(isinstance(k, str) and k for k in out):
        raise InvalidInputError("keys: every key must be a non-empty string")
    if len(set(out)) != len(out):
        raise InvalidInputError("keys: keys must be distinct (they key each prompt's draws)")
    return out


def _options(options: DecodingOptions | None, knobs: dict[str, Any]) -> DecodingOptions:
    """The run's options: `options` as given, or built from the keyword knobs (not both)."""
    if options is not None:
        if not isinstance(options, DecodingOptions):
            raise InputTypeError(
                f"options: expected a DecodingOptions, got {type(options).__name__}"
            )
        if knobs:
            raise ParameterError(
                f"options: pass a DecodingOptions or keyword knobs, not both (got "
                f"{sorted(knobs)[0]}=); use dataclasses.replace(options, ...) to change one"
            )
        return options
    for name in ("stop", "segment_delimiters"):
        if knobs.get(name) is not None:
            knobs[name] = tuple(knobs[name])
    unknown = set(knobs) - set(DecodingOptions.__dataclass_fields__)
    if unknown:
        raise ParameterError(f"{sorted(unknown)[0]}: unknown option of generate()")
    return DecodingOptions(**knobs)


def _results(
    rm: Reward | None,
    prompts: list[str],
    keys: list[str],
    batch: list[int],
    outputs: list[RowOutput],
    options: DecodingOptions,
    engine: str,
) -> list[GenerationResult]:
    """The batch's results; rows the method has not scored are scored here, in one call.

    An ensemble's members score every final response once: their rewards go into the
    results, and the rows still unscored get the ensemble reward combined from them.
    """
    rewards = [o.reward for o in outputs]
    todo = [i for i, r in enumerate(rewards) if r is None]
    scores: np.ndarray | None = None
    if isinstance(rm, RewardEnsemble):
        members = rm.score_members(
            [prompts[p] for p in batch],
            [o.text for o in outputs],
            special_tokens=options.special_tokens_in_prompts,
        )
        for o, column in zip(outputs, members.T.tolist(), strict=True):
            o.extras["member_rewards"] = column
        scores = rm.final_rewards(members[:, todo])
    elif rm is not None and todo:
        scores = rm.score(
            [prompts[batch[i]] for i in todo],
            [outputs[i].text for i in todo],
            special_tokens=options.special_tokens_in_prompts,
        )
    if scores is not None:
        for i, score in zip(todo, np.asarray(scores).tolist(), strict=True):
            rewards[i] = float(score)
    knobs = options.to_dict()
    return [
        GenerationResult(
            index=pos,
            key=keys[pos],
            prompt=prompts[pos],
            text=o.text,
            token_ids=o.token_ids,
            reward=r,
            stop_reason=o.stop_reason,
            method=options.method,
            options=knobs,
            cost=o.cost,
            extras=o.extras,
            engine=engine,
        )
        for pos, o, r in zip(batch, outputs, rewards, strict=True)
    ]


def generate(
    prompts: Sequence[str],
    *,
    lm: LanguageModelBase | str | None = None,
    rm: RewardLike | Sequence[RewardLike] | None = None,
    keys: Sequence[str] | None = None,
    device: str | None = None,
    dtype: str = "float32",
    rm_dtype: str | None = None,
    progress: bool = False,
    on_result: Callable[[GenerationResult], None] | None = None,
    options: DecodingOptions | None = None,
    **knobs: Any,
) -> list[GenerationResult]:
    """Decode every prompt with `method` and return one `GenerationResult` per prompt.

    Args:
        prompts: the user prompts (non-empty strings).
        lm: a language model (`load_lm(...)`, on the transformers engine or
            `engine="vllm"`), a built-in name or a local HF folder (default SmolLM2-135M).
        rm: the steering reward: a `RewardModel`, a `TextRewardModel`, a callable
            `list[str] -> list[float]`, a built-in name or a folder (default
            "smollm2-sentiment"; not needed for `method="base"`), or a list of those: an
            ensemble combined by the `ensemble` knob ("mean", "min", "uwo", "logsigmoid").
        keys: one distinct string per prompt that keys its random draws (e.g. prompt ids).
            Default: the prompt text (with its occurrence number for repeats), so a prompt's
            result never depends on its position, its batch or the other prompts.
        device: where models named by string are loaded ("cpu", "cuda", ...; default
            "cpu"). When given, model objects must already be there (a `DeviceError`
            names both devices otherwise); leave it unset to run given models where they
            are, the reward model possibly on another device than the LM.
        dtype: the dtype models named by string are loaded in ("float32", "bfloat16",
            "float16"); `rm_dtype` overrides it for the reward model(s).
        progress: show a progress bar of generated tokens (tokens/s, ETA).
        on_result: called with each result as soon as its batch finishes (for
            incremental JSONL writing).
        options: every knob at once, as a `DecodingOptions` (as vLLM takes
            `sampling_params=` and transformers `generation_config=`); then no `**knobs`.
        **knobs: the fields of `DecodingOptions`: method ("base", "args", "cd", "bon", ...),
            shaping ("srs", "raw", "meanstd", "minmax", "cap", "meansoft", "srs_hard"), k,
            weight (λ), bound (B), alpha (α), beta (β, default 1/λ), spread_ratio,
            max_weight, max_exponent, cap, perturbation, noise_variance, greedy,
            temperature, top_k, top_p, max_new_tokens, batch_size, seed, chat_template,
            stop (stop strings), and the knobs of the sequence-level methods and of cd.

    Returns:
        Results in prompt order, each with text, token ids, the steering reward of the
        final response (None when there is no reward model), stop reason, cost, its key
        and every knob of the run.
    """
    options = _options(options, dict(knobs))
    texts = _check_prompts(prompts)
    names = _check_keys(keys, texts)
    int_keys = [prompt_key(k) for k in names]
    model, reward = _resolve(lm, rm, options, device, dtype, rm_dtype)
    scale = resolve_reward_scale(options, model, reward)
    run_options = replace(options, reward_scale=scale)
    run = method_spec(options.method).runner(model.engine)
    results: list[GenerationResult] = []
    with TokenProgress(len(texts), options, progress) as bar:
        for start in range(0, len(texts), options.batch_size):
            batch = list(range(start, min(start + options.batch_size, len(texts))))
            outputs = run(
                model,
                reward,
                [texts[i] for i in batch],
                [int_keys[i] for i in batch],
                run_options,
                bar.advance,
            )
            if scale is not None:
                for output in outputs:
                    output.extras["reward_scale"] = scale
            done = _results(reward, texts, names, batch, outputs, options, model.engine)
            bar.finish_batch(len(batch))
            for result in done:
                if on_result is not None:
                    on_result(result)
            results.extend(done)
    return results


def stream(
    prompt: str,
    *,
    lm: LanguageModel | str | None = None,
    rm: RewardLike | Sequence[RewardLike] | None = None,
    key: str | None = None,
    device: str | None = None,
    dtype: str = "float32",
    rm_dtype: str | None = None,
    options: DecodingOptions | None = None,
    **knobs: Any,
) -> Iterator[str]:
    """Yield the response to one prompt piece by piece, as each token is chosen.

    Takes the same arguments and knobs as `generate` (token-level methods only: "base",
    "args", "cd"); `key` keys its random draws (default: the prompt text).
    """
    options = replace(_options(options, dict(knobs)), batch_size=1)
    if options.method not in TOKEN_LEVEL:
        raise ParameterError(f"method: stream() supports {TOKEN_LEVEL}, not {options.method!r}")
    (text,) = _check_prompts([prompt])
    (name,) = _check_keys(None if key is None else [key], [text])
    model, reward = _resolve(lm, rm, options, device, dtype, rm_dtype)
    if not isinstance(model, LanguageModel):
        raise ParameterError(f"lm: stream() runs on the transformers engine, not {model.engine}")
    scale = resolve_reward_scale(options, model, reward)
    loop = TokenLoop(
        model, reward, [text], [prompt_key(name)], replace(options, reward_scale=scale)
    )
    tokens: list[int] = []
    shown = ""
    for emitted in loop.steps():
        tokens.extend(token for _, token in emitted if token not in model.eos_token_ids)
        current = model.decode(tokens)
        # A token may end inside a multi-byte character; wait until it decodes cleanly.
        if current.startswith(shown) and not current.endswith("\ufffd") and current != shown:
            yield current[len(shown) :]
            shown = current
    final = loop.outputs[0].text
    if final.startswith(shown) and len(final) > len(shown):
        yield final[len(shown) :]
