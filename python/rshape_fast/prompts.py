"""Prompt sets: the bundled hand-written prompts, or a user's own file.

The bundled set (``rshape_fast/data/prompts.jsonl``) holds 210 short prompts in six kinds
(``review``, ``story``, ``advice``, ``complaint``, ``question``, ``opinion``), each with a
fixed ``train``/``test`` split (60/40, stratified by kind) and a handful of ``demo``
prompts in the test split that show positive-sentiment steering well.

A user file is either

* JSON Lines (suffix ``.jsonl``, ``.ndjson`` or ``.json``): one object per line with the
  required keys ``id`` (string or integer) and ``prompt`` (string), and the optional keys
  ``kind`` (default ``"custom"``), ``split`` (``"train"`` or ``"test"``, default
  ``"test"``) and ``demo`` (boolean, default ``false``); other keys are ignored; or
* plain text (any other suffix): one prompt per non-empty line, with ids ``line-0001``,
  ``line-0002``, ... numbered by the line they are on, kind ``"custom"``, split ``"test"``.

Blank lines are skipped in both formats; prompt texts are stripped of surrounding
whitespace. Every problem in a file raises a :class:`PromptFileError` subclass (an
:class:`~rshape_fast.errors.InvalidInputError`, hence a ``ValueError``) whose message
starts with ``<file>:<line>:``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rshape_fast.errors import (
    DuplicateIdError,
    EmptyPromptError,
    MissingKeyError,
    ParameterError,
    PromptFileError,
    PromptFileNotFoundError,
    PromptFormatError,
    UnknownSplitError,
)

__all__ = [
    "BUNDLED_KINDS",
    "SPLITS",
    "DuplicateIdError",
    "EmptyPromptError",
    "MissingKeyError",
    "Prompt",
    "PromptFileError",
    "PromptFileNotFoundError",
    "PromptFormatError",
    "UnknownSplitError",
    "load_prompts",
]

SPLITS: tuple[str, ...] = ("train", "test")
"""The splits a prompt may belong to."""

BUNDLED_KINDS: tuple[str, ...] = ("review", "story", "advice", "complaint", "question", "opinion")
"""The kinds of prompt in the bundled file."""

DEFAULT_KIND = "custom"
DEFAULT_SPLIT = "test"
_BUNDLED_PACKAGE = "rshape_fast.data"
_BUNDLED_NAME = "prompts.jsonl"
_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
_LINE_ID_FORMAT = "line-{:04d}"


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt.

    Attributes:
        id: Unique within its file (``"review-001"``, ``"line-0003"``, ...).
        kind: What sort of prompt it is (``"review"``, ``"story"``, ..., or ``"custom"``).
        split: ``"train"`` (for fitting value functions, tuning) or ``"test"``.
        text: The prompt itself, stripped of surrounding whitespace.
        demo: Whether the prompt belongs to the small demonstration set.
    """

    id: str
    kind: str
    split: str
    text: str
    demo: bool = False


def load_prompts(
    path: str | Path | None = None,
    *,
    split: str | None = None,
    kinds: str | Iterable[str] | None = None,
    limit: int | None = None,
    demo_only: bool = False,
) -> list[Prompt]:
    """Load prompts, in file order, from the bundled set or from a user file.

    Args:
        path: A JSONL or plain-text prompt file (see the module docstring); ``None`` reads
            the bundled prompts.
        split: Keep only ``"train"`` or ``"test"`` prompts; ``None`` keeps both.
        kinds: Keep only prompts of this kind or these kinds; ``None`` keeps all.
        limit: Keep at most this many prompts (the first ones, after filtering).
        demo_only: Keep only prompts flagged ``demo``.

    Returns:
        The matching prompts, never an empty list.

    Raises:
        PromptFileError: The file is missing or malformed (a subclass says how); the message
            names the file and line.
        ParameterError: A filter argument is invalid, names a kind the file does not have,
            or no prompt matches the filters.
    """
    if split is not None and split not in SPLITS:
        raise ParameterError(f"split must be one of {SPLITS} or None, got {split!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ParameterError(f"limit must be a positive integer or None, got {limit!r}")
    wanted_kinds = _normalise_kinds(kinds)

    source, text, is_jsonl = _read_source(path)
    prompts = _parse_jsonl(text, source) if is_jsonl else _parse_text(text, source)
    if not prompts:
        raise PromptFileError("the file holds no prompts", source)

    if wanted_kinds is not None:
        available = sorted({p.kind for p in prompts})
        unknown = sorted(wanted_kinds.difference(available))
        if unknown:
            raise ParameterError(f"{source}: no prompts of kind {unknown}; kinds: {available}")
    selected = [
        p
        for p in prompts
        if (split is None or p.split == split)
        and (wanted_kinds is None or p.kind in wanted_kinds)
        and (not demo_only or p.demo)
    ]
    if not selected:
        raise ParameterError(
            f"{source}: no prompt matches split={split!r}, kinds={kinds!r}, "
            f"demo_only={demo_only} (records without 'split' count as {DEFAULT_SPLIT!r}, "
            "without 'demo' as not demo)"
        )
    return selected if limit is None else selected[:limit]


def _normalise_kinds(kinds: str | Iterable[str] | None) -> frozenset[str] | None:
    if kinds is None:
        return None
    items = [kinds] if isinstance(kinds, str) else list(kinds)
    if not items or not all(isinstance(k, str) and k for k in items):
        raise ParameterError(
            f"kinds must be a non-empty string, a non-empty list of them, or None, got {kinds!r}"
        )
    return frozenset(items)


def _read_source(path: str | Path | None) -> tuple[str, str, bool]:
    """Return (name for messages, text, whether the text is JSON Lines)."""
    if path is None:
        resource = resources.files(_BUNDLED_PACKAGE).joinpath(_BUNDLED_NAME)
        return str(resource), resource.read_text(encoding="utf-8"), True
    if not isinstance(path, (str, Path)):
        raise ParameterError(f"path must be a str, a Path or None, got {type(path).__name__}")
    file = Path(path).expanduser()
    if not file.is_file():
        what = "is not a regular file" if file.exists() else "does not exist"
        raise PromptFileNotFoundError(f"prompt file {what}", str(file))
    try:
        # utf-8-sig: files saved by some Windows editors start with a byte-order mark.
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise PromptFormatError(message, str(file)) from None
    return str(file), text, file.suffix.lower() in _JSONL_SUFFIXES


def _parse_text(text: str, source: str) -> list[Prompt]:
    return [
        Prompt(id=_LINE_ID_FORMAT.format(lineno), kind=DEFAULT_KIND, split=DEFAULT_SPLIT, text=s)
        for lineno, line in enumerate(text.splitlines(), start=1)
        if (s := line.strip())
    ]


def _parse_jsonl(text: str, source: str) -> list[Prompt]:
    prompts: list[Prompt] = []
    first_line_of_id: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        prompt = _parse_record(line, source, lineno)
        if prompt.id in first_line_of_id:
            raise DuplicateIdError(
                f"duplicate id {prompt.id!r} (first used on line {first_line_of_id[prompt.id]})",
                source,
                lineno,
            )
        first_line_of_id[prompt.id] = lineno
        prompts.append(prompt)
    return prompts


def _parse_record(line: str, source: str, lineno: int) -> Prompt:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PromptFormatError(
            f"invalid JSON ({exc.msg} at column {exc.colno}); "
            "a JSONL prompt file holds one JSON object per line",
            source,
            lineno,
        ) from None
    if not isinstance(record, dict):
        raise PromptFormatError(
            f"expected a JSON object, got {type(record).__name__}", source, lineno
        )
    for key in ("id", "prompt"):
        if key not in record:
            raise MissingKeyError(f"missing required key {key!r}", source, lineno)

    raw_id = record["id"]
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise PromptFormatError(
            f"'id' must be a string or an integer, got {type(raw_id).__name__}", source, lineno
        )
    prompt_id = str(raw_id).strip()
    if not prompt_id:
        raise PromptFormatError("'id' is empty", source, lineno)

    raw_text = record["prompt"]
    if not isinstance(raw_text, str):
        raise PromptFormatError(
            f"'prompt' must be a string, got {type(raw_text).__name__}", source, lineno
        )
    text = raw_text.strip()
    if not text:
        raise EmptyPromptError(f"prompt {prompt_id!r} is empty", source, lineno)

    kind = record.get("kind", DEFAULT_KIND)
    if not isinstance(kind, str) or not kind.strip():
        raise PromptFormatError(f"'kind' must be a non-empty string, got {kind!r}", source, lineno)

    split = record.get("split", DEFAULT_SPLIT)
    if split not in SPLITS:
        raise UnknownSplitError(
            f"unknown split {split!r} for prompt {prompt_id!r}; expected one of {SPLITS}",
            source,
            lineno,
        )

    demo = record.get("demo", False)
    if not isinstance(demo, bool):
        raise PromptFormatError(f"'demo' must be true or false, got {demo!r}", source, lineno)

    return Prompt(id=prompt_id, kind=kind.strip(), split=split, text=text, demo=demo)
