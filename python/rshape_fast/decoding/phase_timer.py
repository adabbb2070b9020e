"""Wall time per phase of a batch (`lm`, `rm`, `select`), charged to the rows' costs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rshape_fast.decoding.results import Cost


class PhaseTimer:
    """Accumulates wall time per phase (`lm`, `rm`, `select`) for one batch."""

    def __init__(self) -> None:
        self.seconds = {"lm": 0.0, "rm": 0.0, "select": 0.0}
        self.started = time.perf_counter()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0

    def charge(self, costs: list[Cost]) -> None:
        """Split this batch's wall time evenly over the rows' costs."""
        total = time.perf_counter() - self.started
        share = 1.0 / max(len(costs), 1)
        for cost in costs:
            cost.seconds_lm += self.seconds["lm"] * share
            cost.seconds_rm += self.seconds["rm"] * share
            cost.seconds_select += self.seconds["select"] * share
            cost.seconds_total += total * share
