"""`rshape eval` on a local Ray cluster of 2 workers with the tiny random test models.

The distributed rows match a run in one process token for token (a greedy and a sampled
method), a worker killed mid-run loses and duplicates nothing, a run whose workers are all
gone stops with the rows written kept, and an interrupted driver resumes, with workers or
without.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from eval_helpers import Crash, crash_on_row, save_tiny_models, token_ids
from rshape_fast.eval.distributed import DistributedError, WorkersLostError
from rshape_fast.eval.grid import EvalConfig
from rshape_fast.eval.run_file import read_run
from rshape_fast.eval.run_loop import RunSummary, run_eval

PROMPTS = 6


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def config(tiny_lm: Any, tiny_rm: Any, tmp_path_factory: pytest.TempPathFactory) -> EvalConfig:
    lm, rm = save_tiny_models(tiny_lm, tiny_rm, tmp_path_factory.mktemp("models"))
    # Greedy base decoding and sampled best-of-N; two prompts per task, six tasks.
    return EvalConfig(
        base={"max_new_tokens": 6, "batch_size": 2, "n": 2, "temperature": 1.0},
        grid=[{"method": ["base"]}, {"method": ["bon"], "greedy": [False]}],
        limit=PROMPTS,
        lm=lm,
        rm=rm,
    )


@pytest.fixture(scope="module")
def reference(config: EvalConfig, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Token ids of the grid decoded in this process, by (point id, prompt id)."""
    path = tmp_path_factory.mktemp("reference") / "run.jsonl"
    run_eval(config, path, progress=False)
    ids = token_ids(read_run(path).rows)
    assert len(ids) == 2 * PROMPTS
    return ids


def _check_complete(path: Path, reference: dict) -> None:
    """Every row there once, with the token ids of the one-process run."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if '"row"' in line]
    assert len(lines) == len(reference)
    assert token_ids(read_run(path).rows) == reference


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def test_workers_decode_the_rows_of_one_process(
    ray_cluster: Any, config: EvalConfig, reference: dict, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    summary = run_eval(config, path, workers=2, progress=False)
    assert summary.generated == 2 * PROMPTS and summary.lost_workers == []
    assert set(summary.workers) <= {"w0", "w1"}
    assert sum(s.rows for s in summary.workers.values()) == 2 * PROMPTS
    assert all(s.rows_per_second > 0 for s in summary.workers.values())
    _check_complete(path, reference)
    rows = read_run(path).rows
    assert {r["worker"]["id"] for r in rows} <= {"w0", "w1"}
    assert all(r["worker"]["pid"] != os.getpid() for r in rows)
    # A finished distributed run has nothing left to do, in one process either.
    assert run_eval(config, path, progress=False).generated == 0


def test_a_killed_worker_loses_and_duplicates_nothing(
    ray_cluster: Any, config: EvalConfig, reference: dict, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    killed: list[str] = []

    def kill_the_first_worker(row: dict[str, Any]) -> None:
        # The worker whose rows come first is killed as they arrive; four tasks are still
        # queued, so it is handed the next one, and that task must go to the survivor.
        if not killed:
            killed.append(row["worker"]["id"])
            _kill(row["worker"]["pid"])

    summary = run_eval(config, path, workers=2, progress=False, on_row=kill_the_first_worker)
    assert killed and summary.lost_workers == killed
    assert summary.generated == 2 * PROMPTS
    _check_complete(path, reference)


def test_when_every_worker_is_gone_the_rows_are_kept_and_the_run_resumes(
    ray_cluster: Any, config: EvalConfig, reference: dict, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    seen: list[str] = []
    killed: set[int] = set()

    def kill_every_worker(row: dict[str, Any]) -> None:
        # Each worker is killed when its first rows arrive; six tasks outlast both.
        seen.append(row["prompt_id"])
        if row["worker"]["pid"] not in killed:
            killed.add(row["worker"]["pid"])
            _kill(row["worker"]["pid"])

    with pytest.raises(WorkersLostError, match=r"every worker is gone.*run the same command"):
        run_eval(config, path, workers=2, progress=False, on_row=kill_every_worker)
    kept = read_run(path).rows
    assert 0 < len(kept) == len(seen) < 2 * PROMPTS
    # Resumed in one process, without Ray.
    summary = run_eval(config, path, progress=False)
    assert summary.reused == len(kept) and summary.generated == 2 * PROMPTS - len(kept)
    _check_complete(path, reference)


def test_an_interrupted_driver_resumes_on_workers(
    ray_cluster: Any, config: EvalConfig, reference: dict, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    with pytest.raises(Crash):
        run_eval(config, path, workers=2, progress=False, on_row=crash_on_row(3))
    assert len(read_run(path).rows) == 3
    summary: RunSummary = run_eval(config, path, workers=2, progress=False)
    assert summary.reused == 3 and summary.generated == 2 * PROMPTS - 3
    _check_complete(path, reference)


def test_more_workers_than_the_cluster_has_cpus_are_refused(
    ray_cluster: Any, config: EvalConfig, tmp_path: Path
) -> None:
    with pytest.raises(DistributedError, match="3 workers need 3 CPUs; the Ray cluster has 2"):
        run_eval(config, tmp_path / "run.jsonl", workers=3, progress=False)
    assert ray_cluster.is_initialized()  # a cluster the run did not start is left running


def test_workers_without_ray_say_which_extra_to_install(
    config: EvalConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    path = tmp_path / "run.jsonl"
    with pytest.raises(DistributedError, match=r"rshape_fast\[distributed\]"):
        run_eval(config, path, workers=2, progress=False)
    assert not path.exists()  # refused before the run file was touched
