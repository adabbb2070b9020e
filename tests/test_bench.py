"""`rshape bench`: the installed benchmarks run, print their tables and save every figure
with the machine they ran on (`--json`). Nothing here checks a timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def _bench(*argv: str, out: Path) -> tuple[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "rshape_fast.cli", "bench", *argv, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(out.read_text(encoding="utf-8"))


def _rows_have_their_columns(report: dict[str, Any]) -> None:
    for table in report["tables"]:
        assert table["rows"], table["title"]
        for row in table["rows"]:
            assert set(row) == set(table["columns"])


def test_kernels_quick_writes_every_figure_with_the_machine(tmp_path: Path) -> None:
    stdout, report = _bench("kernels", "--quick", out=tmp_path / "kernels.json")
    assert report["benchmark"] == "kernels"
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["torch"] and machine["dtype"] == "float32"
    assert "load_at_start" in machine and machine["quick"] is True
    titles = [t["title"] for t in report["tables"]]
    assert [t.split()[0] for t in titles] == ["top-k", "fuse_and_select", "sample_tokens"]
    _rows_have_their_columns(report)
    topk = report["tables"][0]["rows"]
    assert all(row["numpy_over_ours"] > 0 and row["ours_gb_s"] > 0 for row in topk)
    assert all(row["same_choices"] == 1.0 for row in report["tables"][1]["rows"])
    # The printed tables carry the same rows.
    assert stdout.count("| 64 | 151936 | 10 |") == 1


def test_a_device_that_is_not_there_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rshape_fast.cli", "bench", "kernels", "--device", "tpu9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "device: 'tpu9'" in done.stderr


def test_synthetic_tiny_decoding_reports_base_args_and_floors(tmp_path: Path) -> None:
    stdout, report = _bench(
        "decoding", "--synthetic", "tiny", "--quick", out=tmp_path / "synthetic.json"
    )
    assert "random weights change no speed" in stdout
    assert report["machine"]["dtype"] == "bfloat16"  # the synthetic default
    (note,) = report["notes"]
    assert note["copy_gb_s"] > 0 and note["matmul_tflop_s"] > 0 and note["lm_params"] > 0
    assert note["rm_tail_tokens"] == 5
    _rows_have_their_columns(report)
    (table,) = report["tables"]
    assert [row["batch"] for row in table["rows"]] == [1, 2]
    for row in table["rows"]:
        assert row["base_tokens_per_s"] > 0 and row["args_tokens_per_s"] > 0
        assert row["floor_ms"] == pytest.approx(row["lm_floor_ms"] + row["rm_floor_ms"])
        assert row["over_floor"] > 1  # nothing runs faster than its floor


@pytest.mark.model
def test_decoding_quick_on_the_default_models(tmp_path: Path) -> None:
    _, report = _bench("decoding", "--quick", "--batch", "2", out=tmp_path / "d.json")
    _rows_have_their_columns(report)
    runs = report["tables"][0]["rows"]
    assert [r["run"] for r in runs] == [
        "naive loop, batch 1",
        "rshape_fast, batch 1",
        "rshape_fast srs, batch 2",
        "rshape_fast raw, batch 2",
    ]
    assert runs[0]["over_naive"] == pytest.approx(1.0)
    assert report["notes"][0]["same_tokens"] is True
