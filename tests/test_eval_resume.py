"""A sampled `rshape eval` run killed for real (SIGKILL, in a subprocess) and then resumed
writes rows whose token ids are those of an uninterrupted run of the same configuration.

Rows reach the file one by one, so a kill can land between two rows of one batch; the
test makes sure it has (cutting the last row in half, as a kill inside its write would,
when the kill fell between two batches). The resumed prompts of that batch are then
decoded in another batch, at other places, without the prompts already done, so their
rows match only because every prompt's random draws are keyed by its id, not by its
place in the list (`generate(..., keys=...)`, docs/architecture.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from eval_helpers import save_tiny_models, token_ids
from rshape_fast.eval.grid import EvalConfig, expand_grid
from rshape_fast.eval.run_file import read_run
from rshape_fast.eval.run_loop import run_eval

PROMPTS = 12
KILL_AFTER_ROWS = 3


@pytest.fixture(scope="module")
def model_dirs(tiny_lm: Any, tiny_rm: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return save_tiny_models(tiny_lm, tiny_rm, tmp_path_factory.mktemp("models"))


def _argv(lm: str, rm: str, output: Path) -> list[str]:
    # Sampled best-of-N with N = 2 and 3, two prompts per batch.
    return [
        "eval",
        "--methods",
        "bon",
        "--axis",
        "n=2,3",
        "--set",
        "greedy=false",
        "--set",
        "temperature=1.0",
        "--set",
        "batch_size=2",
        "--max-new-tokens",
        "12",
        "--prompts",
        str(PROMPTS),
        "--lm",
        lm,
        "--rm",
        rm,
        "--output",
        str(output),
        "--no-metrics",
        "--quiet",
    ]


def _config(argv: list[str]) -> EvalConfig:
    from rshape_fast.cli import build_parser
    from rshape_fast.eval.cli import build_config

    config: EvalConfig = build_config(build_parser().parse_args(argv))
    return config


def _rows_on_disk(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_bytes().split(b"\n") if b'"type": "row"' in line)


def test_a_killed_sampled_run_resumes_to_the_rows_of_an_uninterrupted_run(
    model_dirs: tuple[str, str], tmp_path: Path
) -> None:
    lm, rm = model_dirs
    killed = tmp_path / "killed.jsonl"
    argv = _argv(lm, rm, killed)
    config = _config(argv)
    total = len(expand_grid(config)) * PROMPTS
    assert total == 2 * PROMPTS

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    log = tmp_path / "stderr.txt"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "rshape_fast.cli", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        deadline = time.monotonic() + 240
        while _rows_on_disk(killed) < KILL_AFTER_ROWS:
            assert process.poll() is None, log.read_text(encoding="utf-8", errors="replace")
            assert time.monotonic() < deadline, "the run wrote too few rows in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    written = len(read_run(killed).rows)
    assert KILL_AFTER_ROWS <= written < total, "the kill must land in the middle of the run"
    if written % 2 == 0:
        # The kill fell between two batches: cut the last row in half, as a kill in the
        # middle of its write would, so that a batch is left half done.
        *whole, _tail = killed.read_bytes().split(b"\n")
        last = whole.pop()
        killed.write_bytes(b"".join(line + b"\n" for line in whole) + last[: len(last) // 2])
        written -= 1
    assert written % 2 == 1 and len(read_run(killed).rows) == written

    summary = run_eval(config, killed, progress=False)
    assert summary.reused == written and summary.generated == total - written
    assert _rows_on_disk(killed) == total  # nothing written twice

    whole = tmp_path / "whole.jsonl"
    run_eval(config, whole, progress=False)
    resumed, uninterrupted = token_ids(read_run(killed).rows), token_ids(read_run(whole).rows)
    assert len(uninterrupted) == total and resumed.keys() == uninterrupted.keys()
    assert resumed == uninterrupted
