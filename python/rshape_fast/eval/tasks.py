"""The units of work of `rshape eval`: a grid point and a chunk of its pending prompts.

One process or many Ray workers run the same tasks the same way (:func:`decode_task`),
so a row does not depend on where it was decoded: every prompt is decoded with its id as
its random key (``generate(..., keys=...)``), so neither its position in a chunk nor the
other prompts of the chunk change its draws (docs/architecture.md).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rshape_fast.eval.grid import EvalConfig, GridPoint
from rshape_fast.eval.run_file import row_record

__all__ = ["Task", "decode_task", "load_models", "plan_tasks", "worker_identity"]


@dataclass(frozen=True)
class Task:
    """One grid point's chunk of prompts (``rshape_fast.prompts.Prompt`` objects)."""

    point: GridPoint
    prompts: tuple[Any, ...]


def plan_tasks(
    points: Sequence[GridPoint],
    prompts: Sequence[Any],
    done: set[tuple[str, str]],
    *,
    slow_first: bool,
) -> list[Task]:
    """The pending ``(point, prompt)`` pairs, in chunks of at most one batch per task.

    A chunk is one batch of its point (``batch_size`` prompts), so a worker loses no
    batching. Tasks keep the grid's order, so a run cut short holds the points listed
    first; with `slow_first` (a distributed run) the sequence-level methods, the slow ones,
    come first instead, so that the last tasks are short and no worker waits long for the
    others.
    """
    from rshape_fast.decoding.registry import TOKEN_LEVEL

    tasks: list[Task] = []
    for point in points:
        todo = [p for p in prompts if (point.id, p.id) not in done]
        size = int(point.knobs["batch_size"])
        tasks += [Task(point, tuple(todo[i : i + size])) for i in range(0, len(todo), size)]
    if not slow_first:
        return tasks
    # A stable sort: within each group the tasks keep the grid's order.
    return sorted(tasks, key=lambda t: t.point.method in TOKEN_LEVEL)


def load_models(
    config: EvalConfig, device: str, *, lm: Any = None, rm: Any = None
) -> tuple[Any, Any]:
    """The language model and the steering reward model: `lm` and `rm` where given, else
    loaded from the names or folders of the config, in its dtypes. Several reward models
    come back as a list: each point's `ensemble` knob combines them.

    The steering reward scores every point's responses, base included, so both are needed.
    """
    from rshape_fast.models import load_lm, load_reward_model

    model = lm if lm is not None else load_lm(config.lm, device=device, dtype=config.dtype)
    if rm is not None:
        return model, rm
    rm_dtype = config.rm_dtype or config.dtype
    names = config.rm if isinstance(config.rm, list) else [config.rm]
    members = [load_reward_model(name, device=device, dtype=rm_dtype) for name in names]
    return model, members if isinstance(config.rm, list) else members[0]


def worker_identity(worker_id: int | str) -> dict[str, Any]:
    """Which process decodes: its worker id, host name and process id."""
    return {"id": worker_id, "host": socket.gethostname(), "pid": os.getpid()}


def decode_task(
    task: Task,
    lm: Any,
    rm: Any,
    *,
    digest: str,
    device: str,
    worker: dict[str, Any],
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Decode one task; return its run-file rows (each also passed to `on_row` as it is made).

    `on_row` sees each batch's rows as soon as `generate` finishes the batch, so a run in
    one process writes them before the next batch starts.
    """
    from rshape_fast.decoding import generate

    rows: list[dict[str, Any]] = []

    def collect(result: Any) -> None:
        row = row_record(digest, task.point, task.prompts[result.index], result, worker)
        rows.append(row)
        if on_row is not None:
            on_row(row)

    generate(
        [p.text for p in task.prompts],
        keys=[p.id for p in task.prompts],
        lm=lm,
        rm=rm,
        device=device,
        on_result=collect,
        **task.point.knobs,
    )
    return rows
