"""Decoding: `generate` (every method) and `stream` (token-level methods, text as chosen).

Importing this package is light: `METHODS`, `DecodingOptions` and the result types need no
torch; `generate` and `stream` import the models on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from rshape_fast.decoding.options import PERTURBATIONS, SHAPINGS, DecodingOptions
from rshape_fast.decoding.registry import METHODS, TOKEN_LEVEL
from rshape_fast.decoding.results import Cost, GenerationResult

__all__ = [
    "METHODS",
    "PERTURBATIONS",
    "SHAPINGS",
    "TOKEN_LEVEL",
    "Cost",
    "DecodingOptions",
    "GenerationResult",
    "generate",
    "stream",
]

if TYPE_CHECKING:
    from rshape_fast.decoding.api import generate as generate
    from rshape_fast.decoding.api import stream as stream


def __getattr__(name: str) -> object:
    if name in ("generate", "stream"):
        value = getattr(importlib.import_module("rshape_fast.decoding.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
