"""The run file of `rshape eval`: JSON Lines, a header, then one record per generation.

The first line is a header holding the config hash, the config, the points and the prompt
ids. Every finished generation is appended at once as a ``row`` record, and a point that
could not be decoded as a ``skip`` record; each record is flushed as it is written, so a
kill loses at most the record being written. Reading tolerates a truncated last line;
:func:`open_run` cuts it off before the run resumes, so that the next record starts on a
line of its own, and returns the ``(point, prompt)`` pairs already written, which a
resumed run skips. A file written for another configuration is refused unless
``restart=True``.

Only one process (the driver of a run, docs/architecture.md) writes a run file, and
:func:`writer_lock` enforces it: a second writer fails at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rshape_fast.errors import (
    ConfigChangedError,
    RunFileError,
    RunFileLockedError,
)
from rshape_fast.eval.grid import FORMAT_VERSION, EvalConfig, GridPoint

__all__ = [
    "ConfigChangedError",
    "RunFile",
    "RunFileError",
    "append_record",
    "open_run",
    "read_run",
    "row_record",
]


@dataclass
class RunFile:
    """A run file as read: header, rows (first of any duplicate kept) and skip records."""

    header: dict[str, Any] | None
    rows: list[dict[str, Any]]
    skips: list[dict[str, Any]]
    good_bytes: int
    dropped_partial_line: bool

    def done(self) -> set[tuple[str, str]]:
        """The ``(point id, prompt id)`` pairs already generated."""
        return {(r["point_id"], r["prompt_id"]) for r in self.rows}


def _not_a_run_file(path: str | Path, record: Mapping[str, Any]) -> str:
    # `rshape generate` writes rows of a different shape and no header; say what was found.
    if "text" in record and "method" in record and "point_id" not in record:
        found = "an `rshape generate` output (one result per line, no header)"
    else:
        found = f"a record with keys {sorted(record)[:6]}"
    return (
        f"{path}: not an `rshape eval` run file: its first line is {found}, where a run "
        "file starts with a header record (type 'header')"
    )


def read_run(path: str | Path) -> RunFile:
    """Read a run file, tolerating a truncated last line (an interrupted write).

    Raises:
        RunFileError: a line other than the last is not a JSON object, or the first line
            is not a header.
    """
    data = Path(path).read_bytes()
    header: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    skips: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    good = 0
    dropped = False
    lines = data.split(b"\n")
    # A file ending in "\n" splits into [..., b""]: the last element is the unterminated tail.
    for number, line in enumerate(lines, start=1):
        is_tail = number == len(lines)
        if not line.strip():
            if not is_tail:
                good += len(line) + 1
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if is_tail:
                dropped = True
                break
            raise RunFileError(f"{path}:{number}: not a JSON object; the file is damaged") from None
        if number == 1 and record.get("type") != "header":
            raise RunFileError(_not_a_run_file(path, record))
        if is_tail:
            # Complete JSON but no newline: the write was cut just before "\n". Keep it only
            # once the newline is there, so appending never glues two records together.
            dropped = True
            break
        kind = record.get("type")
        if kind == "header":
            header = record
        elif kind == "row":
            key = (record["point_id"], record["prompt_id"])
            if key not in seen:
                seen.add(key)
                rows.append(record)
        elif kind == "skip":
            skips.append(record)
        good += len(line) + 1
    return RunFile(header, rows, skips, good, dropped)


def lock_path(path: Path) -> Path:
    """The writer lock of a run file: ``PATH.lock`` beside it."""
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold the run file's writer lock while the block runs.

    An advisory ``flock`` on :func:`lock_path`, which holds the holder's pid. The kernel
    drops the lock when its process exits, killed or not, so a lock file left behind never
    blocks the next run. The file itself is kept: removing it would let a writer that
    opened it just before lock a file nobody else can see.

    Raises:
        RunFileLockedError: another process holds the lock (its pid and the lock's path
            are in the message); raised at once, never waited on.
    """
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            raise RunFileLockedError(
                f"{path}: another process (pid {holder}) is writing this run file (lock "
                f"{lock}); wait for it to finish, or write to another file"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        os.close(fd)  # releases the lock


def append_record(handle: IO[str], record: Mapping[str, Any]) -> None:
    """Write one record as a line and flush it, so that a kill loses at most this record."""
    handle.write(json.dumps(record, ensure_ascii=False, default=list) + "\n")
    handle.flush()


def open_run(
    path: Path,
    config: EvalConfig,
    points: Sequence[GridPoint],
    prompts: Sequence[Any],
    digest: str,
    *,
    restart: bool,
) -> set[tuple[str, str]]:
    """Make `path` ready for appending this run's rows; return the pairs already written.

    A missing or empty file gets a new header. A file of this configuration has a
    truncated last line cut off. A file of another configuration is replaced when
    ``restart`` is true.

    Raises:
        ConfigChangedError: the file holds another configuration and ``restart`` is false.
    """
    existing = read_run(path) if path.exists() and path.stat().st_size > 0 else None
    if existing is not None and (existing.header or {}).get("config_hash") != digest:
        if not restart:
            old = (existing.header or {}).get("config_hash")
            raise ConfigChangedError(
                f"{path} was written for config {old}, this config is {digest}; "
                "pass --restart (restart=True) to discard it, or write to another file"
            )
        existing = None
    path.parent.mkdir(parents=True, exist_ok=True)
    if existing is None:
        header = {
            "type": "header",
            "format": FORMAT_VERSION,
            "config_hash": digest,
            "config": config.to_dict(),
            "points": [{"id": p.id, "knobs": p.knobs} for p in points],
            "prompt_ids": [p.id for p in prompts],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with path.open("w", encoding="utf-8") as handle:
            append_record(handle, header)
        return set()
    if existing.dropped_partial_line:
        with path.open("r+b") as raw_handle:
            raw_handle.truncate(existing.good_bytes)
    return existing.done()


def row_record(
    digest: str, point: GridPoint, prompt: Any, result: Any, worker: Mapping[str, Any]
) -> dict[str, Any]:
    """The run-file row of one `GenerationResult` of `point` on `prompt`.

    ``worker`` says which process decoded it (``{"id", "host", "pid"}``), so that a
    distributed run's file tells which worker ran what.
    """
    return {
        "type": "row",
        "config_hash": digest,
        "point_id": point.id,
        "knobs": point.knobs,
        "prompt_id": prompt.id,
        "prompt": prompt.text,
        "response": result.text,
        "token_ids": [int(t) for t in result.token_ids],
        "reward": None if result.reward is None else float(result.reward),
        "cost": result.cost.to_dict(),
        "seed": point.knobs.get("seed"),
        "stop_reason": result.stop_reason,
        "method": result.method,
        "extras": result.extras,
        "worker": dict(worker),
    }
