"""Exceptions raised by rshape_fast.

They are defined once, here; the Rust extension raises these same classes (through a
single conversion point in ``rust/py/src/errors.rs``), so ``except rshape_fast.errors.X``
works whichever layer found the problem. Bad input is always a ``ValueError``; an argument
of the wrong type or dtype is also a ``TypeError``.
"""

from __future__ import annotations

__all__ = [
    "ContextLengthError",
    "DeviceError",
    "InputTypeError",
    "InvalidInputError",
    "ModelError",
    "NonFiniteError",
    "ParameterError",
    "RshapeError",
    "RunFileLockedError",
    "ShapeError",
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


class RunFileLockedError(RshapeError):
    """Another process is writing the run file (the message names the lock and its pid)."""
