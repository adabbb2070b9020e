"""Exceptions raised by rshape_fast.

They are defined once, here; the Rust extension raises these same classes (through a
single conversion point in ``rust/py/src/errors.rs``), so ``except rshape_fast.errors.X``
works whichever layer found the problem. Bad input is always a ``ValueError``; an argument
of the wrong type or dtype is also a ``TypeError``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigChangedError",
    "ContextLengthError",
    "DataConfigError",
    "DeviceError",
    "DistributedError",
    "DuplicateIdError",
    "EmptyPromptError",
    "EngineError",
    "InputTypeError",
    "InvalidInputError",
    "MissingKeyError",
    "ModelError",
    "NonFiniteError",
    "ParameterError",
    "PromptFileError",
    "PromptFileNotFoundError",
    "PromptFormatError",
    "RshapeError",
    "RunFileError",
    "RunFileLockedError",
    "ShapeError",
    "UnknownSplitError",
    "WorkersLostError",
]


class RshapeError(Exception):
    """Base class of every error rshape_fast raises on purpose."""


class InvalidInputError(RshapeError, ValueError):
    """Bad input: the message names the argument and what is wrong with it."""


class ShapeError(InvalidInputError):
    """An array has the wrong number of dimensions, a mismatched shape, or is empty."""


class NonFiniteError(InvalidInputError):
    """An array holds NaN, or an infinity where none is allowed (a NaN reward, say)."""


class ParameterError(InvalidInputError):
    """A scalar knob is out of range or unknown (``k`` > vocabulary, unknown scheme, ...)."""


class InputTypeError(InvalidInputError, TypeError):
    """An argument has the wrong type or dtype (float ids, a list where an array is needed)."""


class ModelError(RshapeError):
    """A model cannot be found, loaded, converted or cached."""


class DeviceError(ParameterError):
    """A device that this machine does not have, or a model on another device than asked."""


class ContextLengthError(InvalidInputError):
    """A prompt plus the tokens to generate (or a reward model's input) exceeds a model's
    context: the message names both numbers."""


class EngineError(RshapeError):
    """A serving engine (vLLM) is not installed, or cannot run what was asked of it."""


class RunFileLockedError(RshapeError):
    """Another process is writing the run file (the message names the lock and its pid)."""


# ---- prompt files (rshape_fast.prompts) ----


class PromptFileError(InvalidInputError):
    """A prompt file cannot be used; the message starts with ``<file>:<line>:``.

    Attributes:
        source: The file (a path, or the bundled resource's location).
        line: The 1-based line the problem is on, or ``None`` for the whole file.
    """

    def __init__(self, message: str, source: str | None = None, line: int | None = None):
        self.reason = message
        self.source = source
        self.line = line
        where = "" if source is None else (f"{source}: " if line is None else f"{source}:{line}: ")
        super().__init__(where + message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.source, self.line))


class PromptFileNotFoundError(PromptFileError, FileNotFoundError):
    """The prompt file does not exist or is not a regular file."""


class PromptFormatError(PromptFileError):
    """A line is not valid JSON, not an object, or a value has the wrong type."""


class MissingKeyError(PromptFileError):
    """A JSONL record lacks a required key (``id`` or ``prompt``)."""


class DuplicateIdError(PromptFileError):
    """Two records of the same file share an id."""


class EmptyPromptError(PromptFileError):
    """A record's prompt is empty or only whitespace."""


class UnknownSplitError(PromptFileError):
    """A record's split is not one of ``rshape_fast.prompts.SPLITS``."""


# ---- run files and distributed runs (rshape_fast.eval) ----


class RunFileError(InvalidInputError):
    """A run file is malformed somewhere other than a truncated last line."""


class ConfigChangedError(RshapeError):
    """The run file was written for another configuration (and no restart was asked)."""


class DistributedError(RshapeError):
    """A distributed run cannot start (no Ray) or cannot go on."""


class WorkersLostError(DistributedError):
    """Every worker of a distributed run died; the rows written before are in the file."""


# ---- controlled-decoding data (rshape_fast.cd) ----


class DataConfigError(RshapeError):
    """A data directory was written with a different config (rerun with overwrite)."""
