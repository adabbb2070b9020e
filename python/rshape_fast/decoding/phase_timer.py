"""Wall time per phase of a batch (`lm`, `rm`, `select`), charged to the rows' costs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rshape_fast.decoding.results import Cost


class PhaseTimer:
    """Accumulates wall time per phase (`lm`, `rm`, `select`) for one batch.

    On an accelerator, kernels run after the call that launches them returns; `sync`
    (`PhaseTimer.for_device`) waits for them at the end of each phase, so the time lands in
    the phase that did the work rather than in the next one that waits.
    """

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.seconds = {"lm": 0.0, "rm": 0.0, "select": 0.0}
        self.started = time.perf_counter()
        self.sync = sync

    @classmethod
    def for_device(cls, device: Any) -> PhaseTimer:
        """A timer that synchronises CUDA at each phase's end when `device` is a GPU."""
        if getattr(device, "type", str(device).split(":")[0]) != "cuda":
            return cls()
        import torch

        return cls(torch.cuda.synchronize)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.sync is not None:
                self.sync()
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
