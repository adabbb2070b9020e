"""An eval grid over ensemble modes, steered by three real rewards: the built-in sentiment
judge (a decoder reward model with a KV cache), the MiniLM anchor similarity and VADER
(both text scorers)."""

from __future__ import annotations

import math

import pytest

from rshape_fast.eval.grid import EvalConfig
from rshape_fast.eval.judges import MiniLMSentimentJudge, VaderJudge
from rshape_fast.eval.run_file import read_run
from rshape_fast.eval.run_loop import run_eval
from rshape_fast.models import TextRewardModel

MODES = ["mean", "min", "uwo", "logsigmoid"]


@pytest.mark.model
def test_grid_over_ensemble_modes(tmp_path, lm, rm):
    members = [
        rm,
        TextRewardModel(MiniLMSentimentJudge().score, name="minilm"),
        TextRewardModel(VaderJudge().score, name="vader"),
    ]
    config = EvalConfig(
        base={"max_new_tokens": 6, "k": 4, "weight": 1.0, "batch_size": 2},
        grid=[{"method": ["args"], "ensemble": MODES}, {"method": ["bon"], "n": [3]}],
        limit=2,
        judges=[],
    )
    path = tmp_path / "run.jsonl"
    summary = run_eval(config, path, lm=lm, rm=members, progress=False)
    rows = read_run(path).rows
    assert summary.generated == len(rows) == (len(MODES) + 1) * 2
    for row in rows:
        assert math.isfinite(row["reward"])
        assert len(row["extras"]["member_rewards"]) == 3
        if row["method"] == "args":
            assert row["extras"]["reward_path"] == "cached+text+text"
    by_mode = {}
    for row in rows:
        by_mode.setdefault(row["knobs"].get("ensemble"), []).append(row)
    # min never exceeds mean on the same final response's members.
    for row in rows:
        members_r = row["extras"]["member_rewards"]
        if row["knobs"].get("ensemble") == "min":
            assert row["reward"] == pytest.approx(min(members_r), abs=1e-5)
        if row["knobs"].get("ensemble") in ("mean", "logsigmoid"):
            assert row["reward"] == pytest.approx(sum(members_r) / 3, abs=1e-5)
