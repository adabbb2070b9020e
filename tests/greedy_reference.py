"""The greedy token ids that every restructuring of the decoders must reproduce.

`python tests/greedy_reference.py` decodes a fixed set of greedy configurations (base, ARGS
with several shaping schemes, controlled decoding with a seeded value head) on three bundled
prompts, batched, and writes their token ids to `tests/data/greedy_reference.json`.
`tests/test_greedy_reference.py` decodes the same configurations and compares. The file was
first written by the code as it stood before the one-loop restructuring (issue 10), so the
comparison proves the new loop emits the old tokens.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
REFERENCE = DATA / "greedy_reference.json"
VALUE_HEAD = DATA / "value_head_ref"
PROMPT_IDS = ("review-003", "story-005", "advice-002")
MAX_NEW_TOKENS = 20

# name -> knobs of generate(); every one greedy.
CONFIGS: dict[str, dict[str, Any]] = {
    "base": {"method": "base"},
    "args-srs": {"method": "args", "shaping": "srs"},
    "args-raw": {"method": "args", "shaping": "raw"},
    "args-meanstd": {"method": "args", "shaping": "meanstd"},
    "args-srs_hard": {"method": "args", "shaping": "srs_hard", "weight": 1.0},
    "args-meansoft-k4": {"method": "args", "shaping": "meansoft", "k": 4, "alpha": 3.0},
    "cd": {"method": "cd", "weight": 1.5},
}


def reference_prompts() -> list[str]:
    from rshape_fast.prompts import load_prompts

    by_id = {p.id: p.text for p in load_prompts(split="test")}
    return [by_id[i] for i in PROMPT_IDS]


def ensure_value_head(hidden_size: int) -> Path:
    """A small seeded value head (width 16), written once and committed with the reference."""
    if not (VALUE_HEAD / "config.json").is_file():
        import torch

        from rshape_fast.decoding.value_head import ValueHead

        torch.manual_seed(1234)
        head = ValueHead(hidden_size, width=16, config={"lm": "smollm2-135m-instruct"})
        with torch.no_grad():
            head.output_layer.weight.mul_(20.0)
        head.save(VALUE_HEAD)
    return VALUE_HEAD


def decode_all(lm: Any, rm: Any) -> dict[str, list[list[int]]]:
    import rshape_fast.decoding as decoding

    prompts = reference_prompts()
    head = ensure_value_head(int(lm.model.config.hidden_size))
    out: dict[str, list[list[int]]] = {}
    for name, knobs in CONFIGS.items():
        extra = {"value_head": str(head)} if knobs["method"] == "cd" else {}
        results = decoding.generate(
            prompts,
            lm=lm,
            rm=rm,
            max_new_tokens=MAX_NEW_TOKENS,
            batch_size=len(prompts),
            greedy=True,
            **knobs,
            **extra,
        )
        out[name] = [list(r.token_ids) for r in results]
    return out


def main() -> int:
    from rshape_fast.models import load_lm, load_reward_model

    ids = decode_all(load_lm(), load_reward_model())
    DATA.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(ids, indent=1) + "\n")
    print(f"wrote {REFERENCE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
