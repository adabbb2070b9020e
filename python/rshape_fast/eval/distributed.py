"""`rshape eval --workers N`: the run's tasks on Ray actors, the run file on the driver.

Each worker is one Ray actor that loads the language and reward models once and then
decodes tasks (a grid point and a chunk of its prompts, :mod:`rshape_fast.eval.tasks`)
and sends their rows back. Only the driver writes the run file, so resumption, duplicate
detection and the config hash are those of a run in one process. The driver keeps every
worker busy with one task at a time; a worker that dies has its task put back at the head
of the queue for the next free worker, and when no worker is left the run stops with
:class:`WorkersLostError`, the rows already written kept (run again to resume).

Ray is the optional ``distributed`` extra; it is imported only here, when a run asks for
workers.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from rshape_fast.errors import (
    DistributedError,
    WorkersLostError,
)
from rshape_fast.eval.grid import EvalConfig
from rshape_fast.eval.tasks import Task, decode_task, load_models, worker_identity

if TYPE_CHECKING:
    from rshape_fast.eval.run_writer import RunWriter

__all__ = ["DistributedError", "EvalWorker", "WorkersLostError", "import_ray", "run_distributed"]

INSTALL_HINT = "pip install 'rshape_fast[distributed]'"


def import_ray() -> Any:
    """The ray module, or a one-line DistributedError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise DistributedError(
            f"decoding on workers needs Ray, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


class EvalWorker:
    """The body of one Ray actor: models loaded once, then one task per call."""

    def __init__(self, name: str, config: EvalConfig, device: str) -> None:
        self.identity = worker_identity(name)
        self.device = device
        self.lm, self.rm = load_models(config, device)

    def run(self, task: Task, digest: str) -> tuple[list[dict[str, Any]], float, float]:
        """Decode one task; return its rows and the wall and CPU seconds it took."""
        started, cpu_started = time.perf_counter(), time.process_time()
        rows = decode_task(
            task, self.lm, self.rm, digest=digest, device=self.device, worker=self.identity
        )
        return rows, time.perf_counter() - started, time.process_time() - cpu_started


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def run_distributed(
    tasks: list[Task],
    writer: RunWriter,
    config: EvalConfig,
    *,
    digest: str,
    device: str,
    keep_going: bool,
    workers: int | None,
    address: str | None,
) -> list[str]:
    """Decode `tasks` on Ray workers, writing their rows through `writer`.

    Joins the running Ray instance if this process has one, else the cluster at
    `address`, else starts a local one with `workers` CPUs (and stops what it started).
    `workers=None` means one worker per CPU of the cluster. Returns the names of the
    workers that died.

    Raises:
        DistributedError: Ray is not installed, or the cluster has fewer CPUs than workers.
        WorkersLostError: every worker died before the tasks were done.
    """
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False)
        else:
            ray.init(address=address)
    actors: dict[str, Any] = {}
    lost: list[str] = []
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        count = workers if workers is not None else max(1, cpus)
        if count > cpus:
            # An actor the cluster cannot place would hold its tasks forever.
            raise DistributedError(f"{count} workers need {count} CPUs; the Ray cluster has {cpus}")
        actor_class = ray.remote(num_cpus=1)(EvalWorker)
        actors = {f"w{i}": actor_class.remote(f"w{i}", config, device) for i in range(count)}
        _dispatch(ray, tasks, actors, lost, writer, digest=digest, keep_going=keep_going)
    finally:
        for handle in actors.values():
            ray.kill(handle)
        if started_here:
            ray.shutdown()
    return lost


def _dispatch(
    ray: Any,
    tasks: list[Task],
    actors: dict[str, Any],
    lost: list[str],
    writer: RunWriter,
    *,
    digest: str,
    keep_going: bool,
) -> None:
    queue = deque(tasks)
    idle = list(actors)
    running: dict[Any, tuple[str, Task]] = {}
    writer.describe(f"eval on {len(actors)} workers")
    while queue or running:
        while idle and queue:
            task = queue.popleft()
            if task.point.id in writer.skipped:
                writer.skip(task, writer.skipped[task.point.id])
                continue
            name = idle.pop(0)
            running[actors[name].run.remote(task, digest)] = (name, task)
        if not running:
            break
        (ref,), _ = ray.wait(list(running), num_returns=1)
        name, task = running.pop(ref)
        try:
            rows, seconds, cpu_seconds = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            ray.kill(actors.pop(name))
            lost.append(name)
            queue.appendleft(task)
            if not actors:
                raise WorkersLostError(
                    f"every worker is gone ({', '.join(lost)}; the last: {_first_line(exc)}); "
                    f"the {writer.generated} rows written by this run are kept in the run "
                    "file: run the same command again to resume"
                ) from None
            writer.note(
                f"worker {name} died ({_first_line(exc)}); its task ({task.point.id}, "
                f"{len(task.prompts)} prompts) goes to another of the {len(actors)} left"
            )
            continue
        except ray.exceptions.RayTaskError as exc:
            if not keep_going:
                raise exc.as_instanceof_cause() from None
            cause = exc.cause if exc.cause is not None else exc
            writer.skip(task, f"failed: {type(cause).__name__}: {_first_line(cause)}")
            idle.append(name)
            continue
        for row in rows:
            writer.row(row)
        writer.task_done(name, len(rows), seconds, cpu_seconds)
        idle.append(name)
