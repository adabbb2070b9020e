"""What every benchmark prints and saves: the machine it ran on, its tables and notes.

A benchmark adds rows to tables (raw numbers, formatted only when printed, as Markdown) and
notes (a sentence with its figures); `BenchReport.write_json` saves all of it with the
machine, the versions, the device, the dtype and the load the run started under, so a
figure can be traced to where it was measured. One timing helper, `median_seconds`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import rshape_fast

__all__ = ["BenchReport", "Column", "Table", "machine", "median_seconds", "synced"]


def synced(fn: Callable[[], object], device: str) -> Callable[[], object]:
    """`fn`, then a wait for the device's queued work: CUDA runs asynchronously, so without
    it a timing measures the launch, not the work."""
    if not device.startswith("cuda"):
        return fn
    import torch

    def run() -> object:
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def median_seconds(
    fn: Callable[[], object], *, min_repeats: int = 5, budget: float = 0.0, warmup: int = 1
) -> float:
    """Median wall time of `fn` over at least `min_repeats` calls, repeated until `budget`
    seconds have passed (at most 10,000 calls), after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (
        time.perf_counter() - start < budget and len(times) < 10_000
    ):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def machine(device: str) -> dict[str, Any]:
    """Where and with what a benchmark runs: CPU, cores, load, GPU, versions."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_at_start": _load(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "rshape_fast": rshape_fast.__version__,
        "device": device,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import torch
    except ImportError:
        info["torch"] = None
        return info
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


@dataclass(frozen=True)
class Column:
    """A table column: the row key, its header and the format of its numbers."""

    key: str
    header: str
    fmt: str = ""


@dataclass
class Table:
    """A titled table whose rows print as they are added."""

    title: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def print_header(self) -> None:
        print(f"\n{self.title}\n")
        print("| " + " | ".join(c.header for c in self.columns) + " |")
        print("|" + "---|" * len(self.columns), flush=True)

    def add(self, **values: Any) -> None:
        """Record one row (every column's key) and print it."""
        missing = [c.key for c in self.columns if c.key not in values]
        if missing:
            raise KeyError(f"row of {self.title!r} lacks {missing}")
        self.rows.append(values)
        cells = [_cell(values[c.key], c.fmt) for c in self.columns]
        print("| " + " | ".join(cells) + " |", flush=True)


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (int, float, np.floating, np.integer)) and fmt:
        return format(value, fmt)
    return str(value)


class BenchReport:
    """The tables and notes of one benchmark run, printed as they come."""

    def __init__(self, name: str, *, device: str, dtype: str, quick: bool) -> None:
        self.name = name
        self.meta = {**machine(device), "dtype": dtype, "quick": quick}
        self.tables: list[Table] = []
        self.notes: list[dict[str, Any]] = []
        load = self.meta["load_at_start"]
        print(
            f"rshape bench {name}: rshape_fast {self.meta['rshape_fast']}, torch "
            f"{self.meta['torch']}, {self.meta['cpu']} ({self.meta['cores']} cores), device "
            f"{device}{' (' + self.meta['gpu'] + ')' if 'gpu' in self.meta else ''}, load "
            f"{'unknown' if load is None else f'{load:.2f}'} at start (benchmarks must run "
            "alone on the machine)"
        )

    def table(self, title: str, columns: list[Column]) -> Table:
        """A new table, its header printed."""
        table = Table(title, columns)
        self.tables.append(table)
        table.print_header()
        return table

    def note(self, text: str, **figures: Any) -> None:
        """Print a sentence; save it with the figures it states."""
        self.notes.append({"text": text, **figures})
        print(f"\n{text}", flush=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "machine": self.meta,
            "tables": [
                {"title": t.title, "columns": [c.key for c in t.columns], "rows": t.rows}
                for t in self.tables
            ],
            "notes": self.notes,
        }

    def write_json(self, path: str | Path) -> None:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=1, default=_plain) + "\n", "utf-8")
        print(f"\nwrote {out}")


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")
