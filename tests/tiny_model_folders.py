"""The tiny random test models (conftest's ``tiny_lm``, ``tiny_rm``) saved as local model
folders, so that a run config can name them (``EvalConfig(lm=..., rm=...)``) and another
process (a killed ``rshape eval``, a Ray worker) can load them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
