"""The causal language model a decoder runs: loading, tokenisation and the special ids."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, overload

import torch
from transformers import (
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rshape_fast.cache import DEFAULT_LM, ENGINES
from rshape_fast.errors import ContextLengthError, InvalidInputError, ModelError, ParameterError
from rshape_fast.models.builtins import resolve_model
from rshape_fast.models.loading import (
    DtypeLike,
    ensure_pad_token,
    load_folder,
    prepare,
    resolve_device,
    resolve_dtype,
)
from rshape_fast.models.text import (
    PROMPT_PLACEHOLDER,
    check_text,
    encode_pieces,
    has_special_text,
    render_chat,
    rendered_pieces,
)

__all__ = ["LanguageModel", "LanguageModelBase", "load_lm"]


# eq=False: identity semantics, so a language model is hashable (usable as a cache key) and
# == never compares models field by field.
@dataclass(eq=False)
class LanguageModelBase(ABC):
    """What every engine's language model has: its tokenizer (prompts are encoded, and
    responses decoded, by this package on every engine), the device it runs on, and the ids
    a decoder needs (``eos_token_ids`` to stop rows, ``pad_token_id`` to pad them).
    Subclasses say which ``engine`` runs them and what their context is."""

    name: str
    tokenizer: PreTrainedTokenizerBase = field(repr=False)
    device: torch.device
    eos_token_ids: frozenset[int]
    pad_token_id: int

    engine: ClassVar[str]

    def encode(
        self, prompt: str, *, chat_template: bool = True, special_tokens: bool = False
    ) -> list[int]:
        """Token ids of ``prompt``: as a user chat turn followed by the assistant generation
        prompt (``chat_template=True``), or as plain text with the tokenizer's usual special
        tokens. An empty or whitespace-only prompt raises :class:`InvalidInputError`.

        Special-token strings in the prompt (``<|im_end|>``, ...) are encoded as the text
        they spell unless ``special_tokens`` is true, so a prompt cannot forge chat turns.
        """
        check_text(prompt, "prompt")
        if not prompt.strip():
            raise InvalidInputError("prompt must not be empty or whitespace only")
        as_text = not special_tokens and has_special_text(self.tokenizer, prompt)
        if not chat_template:
            ids = self.tokenizer(prompt, add_special_tokens=True, split_special_tokens=as_text)
            return [int(i) for i in ids["input_ids"]]
        text = self._render(prompt)
        if as_text:
            pieces = rendered_pieces(
                self._render(PROMPT_PLACEHOLDER),
                {PROMPT_PLACEHOLDER: prompt},
                expected=text,
                what="LM's chat template",
            )
            return encode_pieces(self.tokenizer, pieces)
        # The rendered template already holds every special token it needs.
        return [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def _render(self, prompt: str) -> str:
        try:
            return render_chat(
                self.tokenizer, [{"role": "user", "content": prompt}], add_generation_prompt=True
            )
        except ModelError as exc:
            raise ModelError(f"{exc}; use chat_template=False") from exc

    @property
    @abstractmethod
    def max_positions(self) -> int | None:
        """The model's context in positions, None if unknown."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """The size of the logits' last dimension (may exceed ``len(tokenizer)``)."""

    def check_context(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> None:
        """Refuse, before any decoding, a prompt whose ids plus ``max_new_tokens`` exceed
        :attr:`max_positions`: past its context a model returns garbage, not an error."""
        limit = self.max_positions
        if limit is None:
            return
        for index, ids in enumerate(prompt_ids):
            if len(ids) + max_new_tokens > limit:
                raise ContextLengthError(
                    f"max_new_tokens: prompt {index} is {len(ids):,} tokens, and with "
                    f"max_new_tokens={max_new_tokens:,} it needs {len(ids) + max_new_tokens:,} "
                    f"positions, more than the context of LM {self.name!r} "
                    f"({limit:,} positions)"
                )

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` with special tokens (eos, chat markers, padding) removed."""
        return str(self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True))


def eos_ids(
    tokenizer: PreTrainedTokenizerBase, generation_eos: int | Sequence[int] | None
) -> frozenset[int]:
    """The ids that end a response: the tokenizer's eos and the generation config's."""
    eos: set[int] = set()
    if tokenizer.eos_token_id is not None:
        eos.add(int(tokenizer.eos_token_id))
    if isinstance(generation_eos, int):
        eos.add(generation_eos)
    elif generation_eos is not None:
        eos.update(int(i) for i in generation_eos)
    return frozenset(eos)


@dataclass(eq=False)
class LanguageModel(LanguageModelBase):
    """A causal LM ready for decoding in this package's transformers loop: ``model`` in
    eval mode on ``device``, with its tokenizer and special ids."""

    model: PreTrainedModel = field(repr=False)

    engine: ClassVar[str] = "transformers"

    @property
    def max_positions(self) -> int | None:
        """The model's context in positions (``max_position_embeddings``), None if unset."""
        value = getattr(self.model.config, "max_position_embeddings", None)
        return None if value is None else int(value)

    @classmethod
    def from_model(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str = "custom",
        device: str | torch.device | None = None,
    ) -> LanguageModel:
        """Wrap an in-memory causal LM and its tokenizer (moved to ``device`` if given, put in
        eval mode). Eos ids are the tokenizer's plus the generation config's; a tokenizer
        without a pad token gets its eos (or unk) token as pad.
        """
        target = resolve_device(device) if device is not None else next(model.parameters()).device
        pad_token_id = ensure_pad_token(tokenizer, model.config)
        return cls(
            name=name,
            model=prepare(model, target),
            tokenizer=tokenizer,
            device=target,
            eos_token_ids=eos_ids(
                tokenizer, getattr(model.generation_config, "eos_token_id", None)
            ),
            pad_token_id=pad_token_id,
        )

    @property
    def vocab_size(self) -> int:
        """The size of the logits' last dimension (may exceed ``len(tokenizer)``)."""
        return int(self.model.get_output_embeddings().weight.shape[0])


@overload
def load_lm(
    name_or_path: str | os.PathLike[str] = ...,
    *,
    device: str | torch.device = ...,
    dtype: DtypeLike = ...,
    engine: Literal["transformers"] = ...,
) -> LanguageModel: ...


@overload
def load_lm(
    name_or_path: str | os.PathLike[str] = ...,
    *,
    device: str | torch.device = ...,
    dtype: DtypeLike = ...,
    engine: str,
    **engine_args: Any,
) -> LanguageModelBase: ...


def load_lm(
    name_or_path: str | os.PathLike[str] = DEFAULT_LM,
    *,
    device: str | torch.device = "cpu",
    dtype: DtypeLike = torch.float32,
    engine: str = "transformers",
    **engine_args: Any,
) -> LanguageModelBase:
    """Load a causal LM: a built-in name (see :func:`~rshape_fast.cache.available_models`;
    converted into the cache on first use) or a local Hugging Face causal-LM folder, cast to
    ``dtype`` (``"float32"``, ``"bfloat16"``, ``"float16"`` or the torch dtype; the cache
    stays float32). Never touches the network.

    ``engine="vllm"`` starts vLLM on it instead (the ``vllm`` extra;
    :func:`rshape_fast.engines.vllm_model.load_vllm_lm`, which takes ``engine_args`` such
    as ``max_model_len``); ``device`` must then be the device vLLM runs on.
    """
    if engine not in ENGINES:
        raise ParameterError(f"engine: one of {ENGINES}, got {engine!r}")
    torch_dtype = resolve_dtype(dtype)
    target = resolve_device(device)
    if engine == "vllm":
        from rshape_fast.engines.vllm_model import load_vllm_lm

        return load_vllm_lm(name_or_path, device=target, dtype=torch_dtype, **engine_args)
    if engine_args:
        raise ParameterError(
            f"{sorted(engine_args)[0]}: unknown argument of load_lm (an engine argument of vLLM?)"
        )
    folder = resolve_model(name_or_path, "lm")
    tokenizer, model = load_folder(folder, AutoModelForCausalLM, torch_dtype, "a causal LM")
    return LanguageModel.from_model(model, tokenizer, name=os.fspath(name_or_path), device=target)
