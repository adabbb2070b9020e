"""Helpers of the `rshape eval` tests: the tiny test models as folders, rows by pair, and
a callback that interrupts a run.

The tiny random test models (conftest's ``tiny_lm``, ``tiny_rm``) are saved as local model
folders so that a run config can name them (``EvalConfig(lm=..., rm=...)``) and another
process (a killed ``rshape eval``, a Ray worker) can load them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Crash(RuntimeError):
    """Raised from ``on_row`` to interrupt a run in the middle (the driver, not a worker)."""


def crash_on_row(n: int) -> Callable[[dict[str, Any]], None]:
    """An ``on_row`` callback that raises :class:`Crash` when the `n`-th row is written."""
    written = 0

    def on_row(row: dict[str, Any]) -> None:
        nonlocal written
        written += 1
        if written == n:
            raise Crash

    return on_row


def save_tiny_models(tiny_lm: Any, tiny_rm: Any, folder: Path) -> tuple[str, str]:
    """Save both models under `folder`; return the LM and reward-model folders."""
    lm_dir, rm_dir = folder / "tiny-lm", folder / "tiny-rm"
    for model, target in ((tiny_lm, lm_dir), (tiny_rm, rm_dir)):
        model.model.save_pretrained(target)
        model.tokenizer.save_pretrained(target)
    # The fixture scores the response alone, without the chat template.
    settings = {"template": "{response}", "chat_template": False}
    (rm_dir / "rshape_reward.json").write_text(json.dumps(settings), encoding="utf-8")
    return str(lm_dir), str(rm_dir)


def token_ids(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[int]]:
    """Each row's token ids by (point id, prompt id)."""
    return {(r["point_id"], r["prompt_id"]): r["token_ids"] for r in rows}
