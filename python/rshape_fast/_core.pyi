from __future__ import annotations

from typing import final

import numpy as np
import numpy.typing as npt

# --- search state ---

@final
class SegmentBeam:
    """Bookkeeping of a segment-level beam search over ``num_prompts`` prompts.

    Each prompt's beam holds up to ``width`` members. Every step the caller expands each
    live member into sampled segments and calls :meth:`step` once with all expansions of
    all prompts. Finished members are carried over automatically and compete with the new
    expansions; a live member that gets no expansion leaves the beam. Each expansion gets a
    serial id: the running count of expansions ever submitted.
    """

    def __new__(cls, num_prompts: int, width: int) -> SegmentBeam: ...
    def step(
        self,
        prompt: npt.ArrayLike,
        parent: npt.ArrayLike,
        scores: npt.ArrayLike,
        finished: npt.ArrayLike,
        hashes: npt.ArrayLike,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Submit one step of expansions; return ``(keep, serials)``.

        ``keep`` indexes this call's arrays (live survivors, by prompt then rank); positions
        in ``keep`` are the next step's ``parent`` values. ``serials`` is aligned with the
        arrays.
        """
    def live_counts(self) -> npt.NDArray[np.int64]: ...
    @property
    def done(self) -> bool: ...
    def best_finished(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def members(self, prompt: int) -> list[tuple[int, float, bool]]: ...
    @property
    def num_prompts(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def submitted(self) -> int: ...

@final
class StreamingBestOfN:
    """Best-of-N state when candidates arrive over time, with early rejection.

    Candidate ``i`` of prompt ``p`` has the global id ``p * n + i``.
    """

    def __new__(cls, num_prompts: int, n: int) -> StreamingBestOfN: ...
    def record(
        self,
        candidates: npt.ArrayLike,
        scores: npt.ArrayLike,
        finished: npt.ArrayLike,
    ) -> None: ...
    def prune(self, *, reject_fraction: float = 0.5) -> npt.NDArray[np.int64]: ...
    def survivors(self) -> npt.NDArray[np.bool_]: ...
    def finished_mask(self) -> npt.NDArray[np.bool_]: ...
    def scores(self) -> npt.NDArray[np.float32]: ...
    def best_finished(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    @property
    def done(self) -> bool: ...
    def soft_pick(self, *, weight: float = 1.0, seed: int = 0) -> npt.NDArray[np.int64]: ...
    @property
    def num_prompts(self) -> int: ...
    @property
    def n(self) -> int: ...
