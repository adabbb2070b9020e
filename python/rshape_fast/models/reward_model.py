"""Rewards ``r(prompt, response)``: a sequence-classification model (:class:`RewardModel`)
or any text scorer (:class:`TextRewardModel`), and how a name or object becomes one."""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rshape_fast.cache import DEFAULT_REWARD_MODEL
from rshape_fast.errors import (
    ContextLengthError,
    InvalidInputError,
    ModelError,
    NonFiniteError,
    ShapeError,
)
from rshape_fast.kv_batch import left_pad, positions
from rshape_fast.models.builtins import resolve_model, unknown_model_message
from rshape_fast.models.loading import (
    DtypeLike,
    ensure_pad_token,
    load_folder,
    prepare,
    resolve_device,
    resolve_dtype,
)
from rshape_fast.models.reward_format import REWARD_SETTINGS_FILE, RewardFormat
from rshape_fast.models.text import check_text

__all__ = ["RewardModel", "TextRewardModel", "as_reward_model", "load_reward_model"]

RewardOn = Literal["response", "prompt+response"]


def _check_pairs(prompts: Sequence[str], responses: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(prompts, str) or isinstance(responses, str):
        raise InvalidInputError("prompts and responses must be sequences of strings, not a str")
    prompt_list = [check_text(p, "prompts[i]") for p in prompts]
    response_list = [check_text(r, "responses[i]") for r in responses]
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


def _read_settings(folder: Path) -> dict[str, Any]:
    settings_file = folder / REWARD_SETTINGS_FILE
    if not settings_file.is_file():
        return {}
    try:
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelError(f"unreadable {settings_file}: {exc}") from exc
    if not isinstance(settings, dict):
        raise ModelError(f"{settings_file} must hold a JSON object")
    return settings


class RewardModel:
    """A Hugging Face sequence-classification model (``num_labels=1``) used as a reward
    ``r(prompt, response)``, read at the last token of the scored text.

    The scored text is one of three formats (see :mod:`rshape_fast.models.reward_format`):

    - ``template`` with ``{prompt}`` and ``{response}`` substituted (``{response}`` exactly
      once, ``{prompt}`` any number of times including none). The default
      ``"{prompt}\\n{response}"`` suits reward models trained on plain prompt/response
      text; pass ``"{response}"`` for a judge of the response alone.
    - the same, wrapped as a user chat turn plus the generation prompt
      (``chat_template=True``): a chat model asked a judging question.
    - ``conversation=True``: ``[user: prompt, assistant: response]`` rendered by the
      model's own chat template, as conversation reward models (Skywork-Reward, ArmoRM,
      ...) are trained. ``template`` must then be left out.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        template: str | None = None,
        chat_template: bool = False,
        conversation: bool = False,
        name: str = "custom",
        device: str | torch.device | None = None,
    ) -> None:
        num_labels = getattr(model.config, "num_labels", None)
        if num_labels != 1:
            raise ModelError(
                f"a reward model must output one score (num_labels=1), this one has {num_labels}"
            )
        self.pair_format = RewardFormat(
            tokenizer, template=template, chat_template=chat_template, conversation=conversation
        )
        target = resolve_device(device) if device is not None else next(model.parameters()).device
        self.name = name
        self.tokenizer = tokenizer
        self.device = target
        self.pad_token_id = ensure_pad_token(tokenizer, model.config)
        self.model = prepare(model, target)
        #: The model's context in positions, None if its config does not say.
        self.max_positions: int | None = getattr(model.config, "max_position_embeddings", None)
        self._same_vocab: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()

    @property
    def template(self) -> str | None:
        """The judge or plain template (``None`` for the conversation format)."""
        return self.pair_format.template

    @property
    def chat_template(self) -> bool:
        """Whether the filled template is wrapped as a user chat turn."""
        return self.pair_format.chat_template

    @property
    def conversation(self) -> bool:
        """Whether the pair is rendered as a user turn and an assistant turn."""
        return self.pair_format.conversation

    def __repr__(self) -> str:
        return f"RewardModel(name={self.name!r}, {self.pair_format!r}, device={self.device})"

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        template: str | None = None,
        chat_template: bool | None = None,
        conversation: bool | None = None,
        name: str | None = None,
        device: str | torch.device = "cpu",
        dtype: DtypeLike = torch.float32,
    ) -> RewardModel:
        """Load a local sequence-classification folder as a reward model, cast to ``dtype``
        (``"float32"``, ``"bfloat16"``, ``"float16"`` or the torch dtype).

        The format defaults to the folder's ``rshape_reward.json`` (``"conversation"``,
        ``"template"``, ``"chat_template"``; written for the built-in rewards) and otherwise
        to ``"{prompt}\\n{response}"``. Passing ``template`` or ``chat_template`` chooses a
        template format; ``conversation=True`` the conversation format.
        """
        torch_dtype = resolve_dtype(dtype)
        target = resolve_device(device)
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ModelError(unknown_model_message(os.fspath(path), "reward"))
        settings = _read_settings(folder)
        tokenizer, model = load_folder(
            folder,
            AutoModelForSequenceClassification,
            torch_dtype,
            "a sequence-classification model",
        )
        chose_template = template is not None or chat_template is not None
        if conversation is None:
            conversation = not chose_template and bool(settings.get("conversation", False))
        if not conversation and not settings.get("conversation", False):
            # The folder's own template format fills what the caller left out.
            template = settings.get("template") if template is None else template
            if chat_template is None:
                chat_template = bool(settings.get("chat_template", False))
        return cls(
            model,
            tokenizer,
            template=template,
            chat_template=bool(chat_template),
            conversation=conversation,
            name=name if name is not None else os.fspath(path),
            device=target,
        )

    # ---- text ----------------------------------------------------------------------

    def format(self, prompt: str, response: str) -> str:
        """The exact text that is tokenised and scored for this prompt and response."""
        return self.pair_format.render(prompt, response)

    def encode_pair(self, prompt: str, response: str, *, special_tokens: bool = False) -> list[int]:
        """The token ids scored for this prompt and response (:meth:`format`, tokenised).
        Special-token strings in either are encoded as text unless ``special_tokens``."""
        return self.pair_format.encode(prompt, response, special_tokens=special_tokens)

    def template_ids(
        self, prompt: str, *, special_tokens: bool = False
    ) -> tuple[list[int], list[int]]:
        """Token ids before the response (``head``) and after it (``tail``), so that
        ``head + response_ids + tail`` can be scored with :meth:`score_ids`.

        This equals :meth:`encode_pair` whenever the response's tokens do not merge with the
        text around it (true of the built-in formats: the response follows a newline and
        precedes a special token) and the format does not rewrite the response (see
        :meth:`cache_refusal`).
        """
        return self.pair_format.template_ids(prompt, special_tokens=special_tokens)

    # ---- structure -----------------------------------------------------------------

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

    def cache_refusal(self, tokenizer: PreTrainedTokenizerBase) -> str | None:
        """``None`` when the cached candidate scorer can serve this reward model for a
        language model with ``tokenizer``; else the reason, in one line.

        It needs a decoder with a score head (:meth:`backbone_and_head`), the same
        vocabulary (:meth:`shares_tokenizer`), and a format that renders every pair as
        ``head + response + tail`` with a tail that depends on neither the response nor
        the prompt. Devices do not matter: the scorer moves ids to this model's device.
        """
        if self.backbone_and_head() is None:
            return (
                f"reward model {self.name!r} is not a decoder with a score head, so it has no "
                "prefix KV cache to reuse"
            )
        if not self.shares_tokenizer(tokenizer):
            return (
                f"reward model {self.name!r} has a different vocabulary from the language "
                "model's, so the language model's token ids mean nothing to it"
            )
        reason = self.pair_format.split_refusal()
        return None if reason is None else f"reward model {self.name!r}: {reason}"

    # ---- scoring -------------------------------------------------------------------

    def score(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        *,
        batch_size: int = 16,
        special_tokens: bool = False,
    ) -> np.ndarray:
        """Rewards of ``(prompts[i], responses[i])`` pairs as float32 ``[n]``.

        Padding never changes a score: sequences are padded, masked, and the score is read at
        each sequence's own last token (see :meth:`score_ids`). Special-token strings in the
        texts are encoded as text unless ``special_tokens`` (:meth:`encode_pair`).
        """
        prompt_list, response_list = _check_pairs(prompts, responses)
        ids = [
            self.encode_pair(p, r, special_tokens=special_tokens)
            for p, r in zip(prompt_list, response_list, strict=True)
        ]
        return self.score_ids(ids, batch_size=batch_size)

    def score_ids(self, sequences: Sequence[Sequence[int]], *, batch_size: int = 16) -> np.ndarray:
        """Rewards of already tokenised texts (e.g. ``head + response_ids + tail`` from
        :meth:`template_ids`) as float32 ``[n]``."""
        _check_batch_size(batch_size)
        rows = [[int(i) for i in seq] for seq in sequences]
        for index, row in enumerate(rows):
            if not row:
                raise InvalidInputError(f"sequences[{index}] is empty: nothing to score")
            if self.max_positions is not None and len(row) > self.max_positions:
                raise ContextLengthError(
                    f"sequences[{index}]: {len(row):,} tokens, more than the context of "
                    f"reward model {self.name!r} ({self.max_positions:,} positions)"
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
        parts = self.backbone_and_head()
        if parts is not None:
            # Left padding puts every sequence's last token in the last column, so the score
            # is read there explicitly; HF's own pooling searches for the last non-pad token,
            # which is wrong when the pad id (here eos) legitimately ends the text.
            input_ids, attention_mask = left_pad(rows, self.pad_token_id, self.device)
            body, head = parts
            hidden = body(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=positions(attention_mask),
                use_cache=False,
            ).last_hidden_state
            values = head(hidden[:, -1, :]).squeeze(-1)
        elif self.tokenizer.padding_side == "left":
            input_ids, attention_mask = left_pad(rows, self.pad_token_id, self.device)
            values = self.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]
        else:
            # Encoders pool at a fixed position (e.g. [CLS] first), so pad on the side their
            # tokenizer expects.
            width = max(len(row) for row in rows)
            input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, row in enumerate(rows):
                input_ids[i, : len(row)] = torch.tensor(row)
                attention_mask[i, : len(row)] = 1
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
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        *,
        batch_size: int | None = None,
        special_tokens: bool = False,
    ) -> np.ndarray:
        """Rewards of ``(prompts[i], responses[i])`` pairs as float32 ``[n]``, calling ``fn``
        on chunks of ``batch_size`` pairs (all at once if ``None``). ``special_tokens`` is
        accepted for the reward models' signature; a text scorer reads the text as it is."""
        del special_tokens
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
    dtype: DtypeLike = torch.float32,
) -> RewardModel:
    """Load a reward model: a built-in name (``smollm2-sentiment``, ``smollm2-chat-judge``;
    built into the cache on first use) or a local sequence-classification folder with
    ``num_labels=1``, cast to ``dtype`` (the cache stays float32)."""
    torch_dtype = resolve_dtype(dtype)
    folder = resolve_model(name_or_path, "reward")
    return RewardModel.from_pretrained(
        folder, name=os.fspath(name_or_path), device=device, dtype=torch_dtype
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
