"""ARGS and SRS-ARGS inside vLLM: a logits processor (vLLM's V1 model runner interface).

A request is *guided* when its `SamplingParams.extra_args` (`vllm_xargs` over HTTP) carry
`rshape_prompt`, the user prompt the reward model reads; a request without any `rshape_*`
key decodes unchanged. For each guided request the processor keeps an `ArgsChooser` of one
row (its reward model's KV cache of `head ⊕ response` included) and, at every step:

1. takes the request's row of logits (raw, float32, before temperature: vLLM applies
   processors that can change the argmax first);
2. runs `ArgsChooser.choose`: top-k, the candidates' rewards, the shaping scheme and the
   Rust `fuse_and_select`, greedy or drawn with the row seed of `(seed, key, step)`, the
   draw the transformers engine makes for the same prompt key and step;
3. leaves the chosen token as the row's only finite logit, so vLLM's sampler, greedy or
   random, emits it.

The knobs: the reward knobs of `DecodingOptions` as `rshape_<name>` (`rshape_shaping`,
`rshape_weight`, `rshape_k`, ...), the reward model as `rshape_rm` (a name or folder, or a
list of them for an ensemble; default: `$RSHAPE_REWARD_MODEL`, a name or a JSON list, which
`rshape serve` sets and which is loaded when the processor starts; else the package
default) and its dtype as `rshape_rm_dtype` (default `$RSHAPE_REWARD_DTYPE`, else float32),
and `rshape_key` (the prompt's integer key, default 0). Temperature, top-k, top-p and the
seed are the request's own sampling parameters; temperature 0 is greedy.

The batch changes between steps (vLLM's `BatchUpdate`: removed, added, moved, in that
order). A preempted request comes back as added with the tokens it has so far: its chooser
is rebuilt from its prompt and those tokens. Reward models are loaded in the worker process,
once per (names, ensemble mode, dtype), on the worker's device.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from transformers import AutoTokenizer

from rshape_fast.cache import BUILTIN_MODELS, DEFAULT_REWARD_MODEL, DTYPE_NAMES
from rshape_fast.decoding.choosers import ArgsChooser, StepMetadata
from rshape_fast.decoding.ensemble import Reward, steering_reward
from rshape_fast.decoding.options import REWARD_KNOBS, DecodingOptions
from rshape_fast.decoding.phase_timer import PhaseTimer
from rshape_fast.decoding.token_draws import row_seeds
from rshape_fast.errors import ParameterError, RshapeError
from rshape_fast.models.language_model import LanguageModelBase, eos_ids
from rshape_fast.models.loading import ensure_pad_token, quiet_loading

if TYPE_CHECKING:
    from vllm import SamplingParams

from vllm.v1.sample.logits_processor import (
    BatchUpdate,
    LogitsProcessor,
    MoveDirectionality,
)

__all__ = ["PREFIX", "VllmArgsLogitsProcessor", "guided_options", "xargs_for"]

logger = logging.getLogger(__name__)

PREFIX = "rshape_"
#: `DecodingOptions` fields a request may set as `rshape_<name>`; the sampling knobs come
#: from vLLM's own parameters, and the run-level ones do not apply to one request.
GUIDED_KNOBS = (
    *REWARD_KNOBS,
    "reward_scale",
    "special_tokens_in_prompts",
    "ensemble",
    "uwo_weight",
)
#: The other `rshape_*` keys: the prompt text, its key, the reward model and its dtype.
REQUEST_KEYS = ("prompt", "key", "rm", "rm_dtype", "tag")
# vLLM treats a temperature below this as greedy (vllm.sampling_params._SAMPLING_EPS).
_GREEDY_BELOW = 1e-5


def guided_options(params: SamplingParams) -> tuple[dict[str, Any], DecodingOptions] | None:
    """The request's own `rshape_*` keys and its ARGS options, or None for a plain request.

    Raises `ParameterError` (vLLM answers HTTP 400) for an unknown key, a missing prompt or
    a bad knob, before the request reaches the engine."""
    given = {
        k[len(PREFIX) :]: v for k, v in (params.extra_args or {}).items() if k.startswith(PREFIX)
    }
    if not given:
        return None
    unknown = sorted(set(given) - set(GUIDED_KNOBS) - set(REQUEST_KEYS))
    if unknown:
        raise ParameterError(
            f"{PREFIX}{unknown[0]}: unknown key; the knobs are "
            f"{', '.join(PREFIX + k for k in (*REQUEST_KEYS, *GUIDED_KNOBS))}"
        )
    prompt = given.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ParameterError(f"{PREFIX}prompt: the user prompt the reward model reads is required")
    if not isinstance(given.get("key", 0), int):
        raise ParameterError(f"{PREFIX}key: an integer (the prompt's key), got {given['key']!r}")
    if given.get("rm_dtype", DTYPE_NAMES[0]) not in DTYPE_NAMES:
        raise ParameterError(f"{PREFIX}rm_dtype: one of {DTYPE_NAMES}, got {given['rm_dtype']!r}")
    for name in _names(given.get("rm")):
        if name not in BUILTIN_MODELS and not os.path.isdir(name):
            raise ParameterError(
                f"{PREFIX}rm: {name!r} is neither a built-in model nor a folder on the server"
            )
    greedy = params.temperature < _GREEDY_BELOW
    knobs = {k: v for k, v in given.items() if k in GUIDED_KNOBS}
    if isinstance(knobs.get("reward_scale"), str):
        raise ParameterError(
            f"{PREFIX}reward_scale: a number; 'auto' is estimated on the transformers engine "
            "(rshape_fast.decoding.calibration.estimate_reward_scale)"
        )
    options = DecodingOptions(
        method="args",
        greedy=greedy,
        temperature=1.0 if greedy else float(params.temperature),
        top_k=params.top_k if params.top_k and params.top_k > 0 else None,
        top_p=params.top_p if params.top_p < 1.0 else None,
        seed=int(params.seed or 0),
        **knobs,
    )
    return given, options


def _names(rm: Any) -> list[str]:
    """The reward model names of an `rshape_rm` value (none when it is absent)."""
    if rm is None:
        return []
    if isinstance(rm, list) and rm and all(isinstance(n, str) for n in rm):
        return rm
    if isinstance(rm, str) and rm:
        return [rm]
    raise ParameterError(f"{PREFIX}rm: a model name or folder, or a list of them, got {rm!r}")


def xargs_for(
    prompt: str, key: int, rm: str | list[str], options: DecodingOptions
) -> dict[str, Any]:
    """The `extra_args` that guide one request with `options` (the reward knobs that differ
    from their defaults, so a request stays readable)."""
    defaults = DecodingOptions()
    out: dict[str, Any] = {f"{PREFIX}prompt": prompt, f"{PREFIX}key": int(key), f"{PREFIX}rm": rm}
    for f in fields(DecodingOptions):
        value = getattr(options, f.name)
        if f.name in GUIDED_KNOBS and value != getattr(defaults, f.name):
            out[PREFIX + f.name] = value
    return out


@dataclass(eq=False)
class _WorkerLM(LanguageModelBase):
    """The LM as the reward scorers see it in vLLM's worker: its tokenizer and ids."""

    context: int | None = None

    engine: ClassVar[str] = "vllm"

    vocab: int = 0

    @property
    def max_positions(self) -> int | None:
        return self.context

    @property
    def vocab_size(self) -> int:
        return self.vocab


class _GuidedRequest:
    """One guided request: its chooser, how many of its tokens the chooser has seen, and
    the live list of its output tokens (vLLM appends to it)."""

    def __init__(self, chooser: ArgsChooser, key: int, output_ids: list[int], tag: str | None):
        self.chooser = chooser
        self.key = key
        self.output_ids = output_ids
        self.tag = tag
        self.seen = 0
        self.timer = PhaseTimer()

    def choose(self, logits: torch.Tensor) -> int:
        # Tokens the chooser has not committed: a preempted request's earlier output.
        done = [t for t in self.output_ids if t >= 0]
        for token in done[self.seen :]:
            self.chooser.scorer.commit(torch.tensor([token], dtype=torch.long))
        self.seen = max(self.seen, len(done))
        opts = self.chooser.options
        row_keys = [(self.key, self.seen)]
        meta = StepMetadata(
            step=self.seen,
            row_keys=row_keys,
            seeds=None if opts.greedy else row_seeds(opts.seed, row_keys),
            timer=self.timer,
        )
        tokens, _ = self.chooser.choose(meta, logits)
        self.seen += 1
        return int(tokens[0])


class _Ended:
    """A guided request the processor could not set up: it chooses EOS at once."""

    def __init__(self, lm: LanguageModelBase) -> None:
        self.token = min(lm.eos_token_ids)
        self.tag: str | None = None

    def choose(self, logits: torch.Tensor) -> int:
        return self.token


class VllmArgsLogitsProcessor(LogitsProcessor):
    """ARGS / SRS-ARGS for the requests that ask for it (see the module docstring)."""

    #: In-process engines only: `tag -> (reward calls, reward tokens)` of tagged requests,
    #: read by `rshape_fast.engines.vllm_methods` to fill the results' costs.
    costs: ClassVar[dict[str, tuple[int, int]]] = {}

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        try:
            guided_options(sampling_params)
        except RshapeError as exc:
            raise ValueError(str(exc)) from None

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        del is_pin_memory
        self.device = device
        config = vllm_config.model_config
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(config.tokenizer, local_files_only=True)
        hf_config = config.hf_config
        self.lm = _WorkerLM(
            name=str(config.model),
            tokenizer=tokenizer,
            device=device,
            eos_token_ids=eos_ids(tokenizer, getattr(hf_config, "eos_token_id", None)),
            pad_token_id=ensure_pad_token(tokenizer, hf_config),
            context=int(config.max_model_len),
            vocab=int(hf_config.vocab_size),
        )
        self.requests: dict[int, _GuidedRequest | _Ended] = {}
        self.rewards: dict[tuple[Any, ...], Reward] = {}
        # `rshape serve` names the reward model: load it now, not at the first request.
        default = os.environ.get("RSHAPE_REWARD_MODEL")
        self.default_rm: str | list[str] = DEFAULT_REWARD_MODEL
        if default:
            self.default_rm = json.loads(default) if default.startswith("[") else default
            self._reward(self.default_rm, self.default_dtype)

    @property
    def default_dtype(self) -> str:
        return os.environ.get("RSHAPE_REWARD_DTYPE", "float32")

    def is_argmax_invariant(self) -> bool:
        return False

    def _reward(
        self, names: str | list[str], dtype: str, mode: str = "mean", uwo_weight: float = 1.0
    ) -> Reward:
        """The reward model (ensemble) of these names, loaded once on the worker's device."""
        spec = tuple(names) if isinstance(names, list) else names
        cache_key = (spec, mode, uwo_weight, dtype)
        if cache_key not in self.rewards:
            self.rewards[cache_key] = steering_reward(
                names, mode=mode, uwo_weight=uwo_weight, device=self.device, dtype=dtype
            )
        return self.rewards[cache_key]

    def _add(self, params: SamplingParams, output_ids: list[int]) -> _GuidedRequest | None:
        guided = guided_options(params)
        if guided is None:
            return None
        given, options = guided
        max_tokens = params.max_tokens or options.max_new_tokens
        options = DecodingOptions(**{**options.to_dict(), "max_new_tokens": max_tokens})
        rm = self._reward(
            given.get("rm") or self.default_rm,
            given.get("rm_dtype", self.default_dtype),
            options.ensemble,
            options.uwo_weight,
        )
        chooser = ArgsChooser(self.lm, rm, [given["prompt"]], options)
        return _GuidedRequest(chooser, int(given.get("key", 0)), output_ids, given.get("tag"))

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.requests.pop(index, None)
        for index, params, _prompt_ids, output_ids in batch_update.added:
            request: _GuidedRequest | _Ended | None
            try:
                request = self._add(params, output_ids)
            except RshapeError as exc:
                # What `validate_params` cannot see (the reward model's context, its
                # loading) must not stop the engine for every other request: this one
                # ends at once (an empty response) and the server's log says why.
                logger.error("rshape: request not guided, ended: %s", exc)
                request = _Ended(self.lm)
            if request is None:
                self.requests.pop(index, None)
            else:
                self.requests[index] = request
        for a, b, direction in batch_update.moved:
            first, second = self.requests.pop(a, None), self.requests.pop(b, None)
            if first is not None:
                self.requests[b] = first
            if direction == MoveDirectionality.SWAP and second is not None:
                self.requests[a] = second

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        for index, request in self.requests.items():
            token = request.choose(logits[index : index + 1])
            logits[index] = float("-inf")
            logits[index, token] = 0.0
            if isinstance(request, _GuidedRequest) and request.tag is not None:
                scorer = request.chooser.scorer
                self.costs[request.tag] = (scorer.calls, sum(scorer.tokens))
        return logits
