"""`run_eval`: decode every pending (grid point, prompt) pair into the run file.

The driver (this process) alone writes the run file (:mod:`rshape_fast.eval.run_file`):
in one process it decodes the tasks itself; with ``workers`` it hands them to Ray actors
(:mod:`rshape_fast.eval.distributed`) and writes the rows they send back. Resumption,
duplicate detection and the config hash are therefore the same either way, and a run
interrupted in one mode resumes in the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rshape_fast.errors import ParameterError
from rshape_fast.eval.grid import EvalConfig, GridPoint, config_hash, expand_grid
from rshape_fast.eval.run_file import open_run, writer_lock
from rshape_fast.eval.run_writer import RunWriter, WorkerStats
from rshape_fast.eval.tasks import Task, decode_task, load_models, plan_tasks, worker_identity

__all__ = ["RunSummary", "is_distributed", "run_eval"]


@dataclass
class RunSummary:
    """What one call of :func:`run_eval` did.

    ``workers`` maps each worker (``"local"`` in one process, ``"w0"``, ``"w1"``, ... on
    Ray) to its :class:`WorkerStats`; ``lost_workers`` names the workers that died.
    """

    path: Path
    config_hash: str
    points: list[GridPoint]
    prompts: int
    reused: int
    generated: int
    skipped: dict[str, str]
    seconds: float
    workers: dict[str, WorkerStats] = field(default_factory=dict)
    lost_workers: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        """Rows generated per wall-clock second of the whole call."""
        return self.generated / self.seconds if self.seconds > 0 else 0.0


def _run_local(
    tasks: list[Task],
    writer: RunWriter,
    config: EvalConfig,
    *,
    lm: Any,
    rm: Any,
    digest: str,
    device: str,
    keep_going: bool,
) -> None:
    lm, rm = load_models(config, device, lm=lm, rm=rm)
    worker = worker_identity("local")
    for task in tasks:
        if task.point.id in writer.skipped:
            writer.skip(task, writer.skipped[task.point.id])
            continue
        writer.describe(task.point.id)
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            rows = decode_task(
                task, lm, rm, digest=digest, device=device, worker=worker, on_row=writer.row
            )
        except Exception as exc:
            if not keep_going:
                raise
            writer.skip(task, f"failed: {type(exc).__name__}: {exc}")
            continue
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        writer.task_done("local", len(rows), seconds, cpu)


def is_distributed(workers: int | None, address: str | None) -> bool:
    """Whether `run_eval(workers=..., address=...)` decodes on Ray workers."""
    return address is not None or (workers is not None and workers > 1)


def run_eval(
    config: EvalConfig,
    path: str | Path,
    *,
    lm: Any = None,
    rm: Any = None,
    restart: bool = False,
    device: str = "cpu",
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    keep_going: bool = False,
    workers: int | None = None,
    address: str | None = None,
) -> RunSummary:
    """Decode every (grid point, prompt) pair not yet in the run file, appending as it goes.

    Args:
        config: what to run.
        path: the JSONL run file (created with its header if missing or empty).
        lm, rm: model objects to use instead of loading ``config.lm`` / ``config.rm``
            (``rm`` may be anything ``generate`` accepts, a callable included); one
            process only. The steering reward scores every point's responses, base
            included.
        restart: discard a run file written for another configuration instead of refusing.
        device: where models named by the config are loaded.
        progress: show a progress bar over the rows still to write.
        on_row: called after each row is written (tests use it to simulate a crash).
        keep_going: record a point whose decoding raises (any ``Exception``) as skipped
            and go on with the next one, instead of stopping the run; for long unattended
            runs.
        workers: decode on this many Ray workers (actors that load the models once); 1 or
            ``None`` decodes in this process, unless ``address`` is given, when ``None``
            means one worker per CPU of the cluster. Needs the ``distributed`` extra.
        address: join the Ray cluster at this address instead of starting a local one.

    Returns:
        A :class:`RunSummary`, with the skipped points (recorded in the file too) and the
        rows and seconds of each worker.

    Raises:
        ConfigChangedError: the file holds another configuration and ``restart`` is false.
        DistributedError: workers were asked for and Ray is not installed.
        WorkersLostError: every Ray worker died; the rows already written are kept.
        ParameterError: ``workers`` is not a positive integer, or model objects were
            passed to a distributed run.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise ParameterError(f"workers: must be a positive integer, got {workers!r}")
    if workers is not None and workers < 1:
        raise ParameterError(f"workers: must be a positive integer, got {workers!r}")
    distributed = is_distributed(workers, address)
    if distributed and (lm is not None or rm is not None):
        raise ParameterError(
            "lm, rm: a distributed run loads the models each worker needs from config.lm "
            "and config.rm (names or folders); model objects cannot be passed"
        )
    if distributed:
        from rshape_fast.eval.distributed import import_ray

        import_ray()  # no Ray: say so before the run file is touched

    started = time.perf_counter()
    file = Path(path)
    prompts = config.load_prompts()
    points = expand_grid(config)
    digest = config_hash(config, points, prompts)
    # One writer per run file: the lock is held from reading the file to the last row.
    with writer_lock(file):
        done = open_run(file, config, points, prompts, digest, restart=restart)
        tasks = plan_tasks(points, prompts, done, slow_first=distributed)
        total = sum(len(t.prompts) for t in tasks)
        reused = len(points) * len(prompts) - total
        lost: list[str] = []
        with file.open("a", encoding="utf-8") as handle:
            writer = RunWriter(handle, done, total=total, progress=progress, on_row=on_row)
            try:
                if tasks and distributed:
                    from rshape_fast.eval.distributed import run_distributed

                    lost = run_distributed(
                        tasks,
                        writer,
                        config,
                        digest=digest,
                        device=device,
                        keep_going=keep_going,
                        workers=workers,
                        address=address,
                    )
                elif tasks:
                    _run_local(
                        tasks,
                        writer,
                        config,
                        lm=lm,
                        rm=rm,
                        digest=digest,
                        device=device,
                        keep_going=keep_going,
                    )
            finally:
                writer.close()
    return RunSummary(
        path=file,
        config_hash=digest,
        points=points,
        prompts=len(prompts),
        reused=reused,
        generated=writer.generated,
        skipped=writer.skipped,
        seconds=time.perf_counter() - started,
        workers=writer.workers,
        lost_workers=lost,
    )
