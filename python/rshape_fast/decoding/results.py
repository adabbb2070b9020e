"""What a decoding run returns: one `GenerationResult` per prompt, with its `Cost`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

STOP_REASONS = ("eos", "stop_string", "length")


@dataclass
class Cost:
    """Work spent on one prompt.

    Token and call counts are exact per prompt. Seconds are the wall time of the batches
    the prompt was decoded in, split evenly over the prompts of each batch.
    """

    lm_calls: int = 0
    lm_tokens: int = 0
    rm_calls: int = 0
    rm_tokens: int = 0
    generated_tokens: int = 0
    seconds_lm: float = 0.0
    seconds_rm: float = 0.0
    seconds_select: float = 0.0
    seconds_total: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(**{k: v + getattr(other, k) for k, v in asdict(self).items()})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class GenerationResult:
    """One prompt's final response.

    `reward` is the steering reward model's score of the final (prompt, text) pair (None
    when the run had no reward model).
    `extras` holds method-specific facts (number of samples, accepted segments, ...).
    """

    index: int
    prompt: str
    text: str
    token_ids: list[int]
    reward: float | None
    stop_reason: str
    method: str
    cost: Cost = field(default_factory=Cost)
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost"] = self.cost.to_dict()
        return out


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
