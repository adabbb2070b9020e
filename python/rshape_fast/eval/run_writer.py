"""The driver's writer of a run: rows and skips into the run file, and who decoded what.

Used by the driver in one process (:mod:`rshape_fast.eval.run_loop`) and on Ray
(:mod:`rshape_fast.eval.distributed`) alike; workers never write.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from rshape_fast.eval.run_file import append_record
from rshape_fast.eval.tasks import Task

__all__ = ["RunWriter", "WorkerStats"]


@dataclass
class WorkerStats:
    """Rows one worker decoded in this call, and the wall and CPU seconds of its tasks.

    CPU seconds count every thread of the worker's process (torch's included): the cost a
    larger cluster divides among its workers.
    """

    rows: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        """Rows per second of task time (0 before the first task)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


class RunWriter:
    """The driver's side of a run: appends rows and skips, counts them, ticks the bar.

    A row whose ``(point, prompt)`` pair is already in the file is dropped, so a task
    that is decoded twice (retried after its worker died) never duplicates a row.
    """

    def __init__(
        self,
        handle: IO[str],
        done: set[tuple[str, str]],
        *,
        total: int,
        progress: bool,
        on_row: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.handle = handle
        self.done = done
        self.on_row = on_row
        self.generated = 0
        self.skipped: dict[str, str] = {}
        self.workers: dict[str, WorkerStats] = {}
        self.bar: Any = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="eval", unit="row")

    def row(self, row: dict[str, Any]) -> None:
        """Append one row (unless its pair is written already)."""
        key = (row["point_id"], row["prompt_id"])
        if key in self.done:
            return
        append_record(self.handle, row)
        self.done.add(key)
        self.generated += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.on_row is not None:
            self.on_row(row)

    def skip(self, task: Task, reason: str) -> None:
        """Record that a point could not be decoded; its rows count as done on the bar."""
        if task.point.id not in self.skipped:
            self.skipped[task.point.id] = reason
            record = {"type": "skip", "point_id": task.point.id, "reason": reason}
            append_record(self.handle, record)
        if self.bar is not None:
            self.bar.update(len(task.prompts))

    def task_done(self, worker: str, rows: int, seconds: float, cpu_seconds: float) -> None:
        """Charge a finished task to its worker."""
        stats = self.workers.setdefault(worker, WorkerStats())
        stats.rows += rows
        stats.seconds += seconds
        stats.cpu_seconds += cpu_seconds

    def note(self, text: str) -> None:
        """Print a line about the run (to stderr, above the bar)."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def describe(self, text: str) -> None:
        """Show what is running next to the bar."""
        if self.bar is not None:
            self.bar.set_description(text[:60])

    def close(self) -> None:
        """Close the progress bar (the run file is closed by its owner)."""
        if self.bar is not None:
            self.bar.close()
