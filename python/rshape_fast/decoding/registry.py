"""The decoding methods by name, importable without torch.

`METHODS` lists every method `generate` accepts; `runner(method)` imports the module that
runs it only when it is asked for, so the command line can list and check methods (and print
its help) without loading torch. A runner decodes one batch:
`run(lm, rm, prompts, keys, options, progress) -> list[RowOutput]`, one output per prompt in
order, with `keys` the prompts' integer keys (every random draw derives from them) and
`progress(n)` called with the tokens generated in each step. Add a method in `_RUNNERS`
(docs/architecture.md, "Adding a method").
"""

from __future__ import annotations

import importlib
from typing import Any

# method -> (module, function) of its batch runner.
_RUNNERS: dict[str, tuple[str, str]] = {
    "base": ("rshape_fast.decoding.token_loop", "run_token_level"),
    "args": ("rshape_fast.decoding.token_loop", "run_token_level"),
    "bon": ("rshape_fast.decoding.best_of_n", "run_bon"),
    "soft_bon": ("rshape_fast.decoding.best_of_n", "run_soft_bon"),
    "streaming_bon": ("rshape_fast.decoding.best_of_n", "run_streaming_bon"),
    "segment": ("rshape_fast.decoding.segments", "run_segment"),
    "segment_beam": ("rshape_fast.decoding.segments", "run_segment_beam"),
    "cd": ("rshape_fast.decoding.token_loop", "run_token_level"),
}

METHODS: tuple[str, ...] = tuple(_RUNNERS)
#: Methods that choose one token per step through the token loop (`stream()` supports these).
TOKEN_LEVEL: tuple[str, ...] = ("base", "args", "cd")
#: Methods whose result does not depend on the shaping scheme.
UNSHAPED: tuple[str, ...] = ("base", "bon", "streaming_bon", "cd")


def runner(method: str) -> Any:
    """The batch runner of `method` (imports torch and the models on first use)."""
    module, name = _RUNNERS[method]
    return getattr(importlib.import_module(module), name)
