"""A progress bar of generated tokens, ticking every decoding step, with tokens/s and an ETA."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.registry import method_spec


class TokenProgress:
    """`advance(n)` after each step with the tokens it generated; `finish_batch(budget)` when
    a batch is done (rows that stopped early give back the rest of their budget, so the ETA
    stays honest). Disabled, it does nothing."""

    def __init__(self, prompts: int, options: DecodingOptions, enabled: bool) -> None:
        self.budget = method_spec(options.method).token_budget(options)
        self.enabled = enabled
        self.generated = 0
        self.done_budget = 0
        self.started = time.perf_counter()
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=prompts * self.budget,
                desc=f"{options.method}/{options.shaping}",
                unit="tok",
                dynamic_ncols=True,
            )

    def __enter__(self) -> TokenProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.close()

    def advance(self, tokens: int) -> None:
        self.generated += tokens
        if self.bar is not None:
            self.bar.update(tokens)
            seconds = time.perf_counter() - self.started
            self.bar.set_postfix_str(f"{self.generated / max(seconds, 1e-9):.1f} generated tok/s")

    def finish_batch(self, prompts: int) -> None:
        """A batch of `prompts` prompts is done: the bar jumps to the end of its budget."""
        self.done_budget += prompts * self.budget
        if self.bar is not None:
            self.bar.update(self.done_budget - self.bar.n)
