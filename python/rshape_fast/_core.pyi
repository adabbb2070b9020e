"""Type stubs of ``rshape_fast._core``, the Rust extension.

The kernels take C-contiguous float32 arrays as they are (the public wrappers in
``rshape_fast.shaping`` convert anything else); they raise the ``rshape_fast.errors``
classes on bad input.
"""

from __future__ import annotations

from typing import TypedDict, final

import numpy as np
import numpy.typing as npt
from typing_extensions import Unpack

# PyO3 lists everything a module adds; the classes are stubbed below.
__all__ = [
    "SCHEMES",
    "SegmentBeam",
    "ShapeParams",
    "StreamingBestOfN",
    "__version__",
    "fuse_and_select",
    "sample_tokens",
    "shape_rewards",
    "stackelberg_threshold",
    "topk",
]

__version__: str

#: The scheme names ``shape_rewards`` and ``fuse_and_select`` accept.
SCHEMES: tuple[str, ...]

class _Knobs(TypedDict, total=False):
    """The keywords of ``ShapeParams`` and ``ShapeParams.replace``; a knob left out keeps
    its value (the core's default, for the constructor)."""

    bound: float
    beta: float
    alpha: float
    spread_ratio: float
    max_weight: float | None
    max_exponent: float | None
    cap: float

@final
class ShapeParams:
    """The knobs of the reward transforms (docs/algorithms.md §2.3), validated on construction.

    Keyword-only; a knob left out takes the core's default (the token-level ARGS setting,
    shown by ``repr(ShapeParams())``); ``max_weight=None`` / ``max_exponent=None`` mean no
    cap. Immutable, comparable, hashable and picklable.
    """

    def __new__(cls, **knobs: Unpack[_Knobs]) -> ShapeParams: ...
    def replace(self, **changes: Unpack[_Knobs]) -> ShapeParams:
        """A copy with the given knobs changed (validated like the constructor)."""
    def sequence_level(self) -> ShapeParams:
        """The same knobs with the sequence-level caps (best-of-N samples, segments, CD
        targets): ``B_eff = min(B, 2 * range)``, ``gamma = exp(min(B / beta, 2))``, no cap
        on gamma itself."""
    def gamma(self, b_eff: float | None = None) -> float:
        """The SRS weight gamma of a candidate set whose effective bound is ``b_eff``
        (default ``B``), with these caps."""
    def to_dict(self) -> dict[str, float | None]:
        """The knobs as a dict of the constructor's keywords."""
    def __getnewargs_ex__(self) -> tuple[tuple[()], dict[str, float | None]]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def bound(self) -> float: ...
    @property
    def beta(self) -> float: ...
    @property
    def alpha(self) -> float: ...
    @property
    def spread_ratio(self) -> float: ...
    @property
    def max_weight(self) -> float | None: ...
    @property
    def max_exponent(self) -> float | None: ...
    @property
    def cap(self) -> float: ...

def topk(
    logits: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Top-k of every row of a float32 ``[B, V]`` matrix.

    Returns ``(values float32 [B, k], indices int64 [B, k])``, each row sorted descending,
    equal values by the lower index. ``-inf`` is allowed, NaN raises NonFiniteError.
    """

def stackelberg_threshold(
    rewards: npt.NDArray[np.float32],
    probs: npt.NDArray[np.float32] | None = None,
    *,
    gamma: float | npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The exact Stackelberg threshold ``m*`` of every row of float32 rewards ``[B, n]``.

    ``probs`` (same shape, >= 0, renormalised per row) default to uniform; ``gamma`` is the
    weight >= 1 of rewards at or above the threshold, a float or a float64 array
    ``[B]``.
    """

def shape_rewards(
    rewards: npt.NDArray[np.float32],
    *,
    shaping: str,
    probs: npt.NDArray[np.float32] | None = None,
    params: ShapeParams | None = None,
) -> npt.NDArray[np.float32]:
    """Shape every row of float32 rewards ``[B, n]`` with the scheme ``shaping`` (one of
    ``SCHEMES``) and the knobs of ``params`` (None is ``ShapeParams()``)."""

def fuse_and_select(
    base_scores: npt.NDArray[np.float32],
    rewards: npt.NDArray[np.float32],
    *,
    weight: float | npt.NDArray[np.float64],
    shaping: str = "srs",
    probs: npt.NDArray[np.float32] | None = None,
    probs_from_base: bool = True,
    greedy: bool = True,
    temperature: float = 1.0,
    seed: int | npt.NDArray[np.uint64] | npt.NDArray[np.int64] | None = None,
    params: ShapeParams | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Shape, fuse (``base + weight * shaped``) and pick one candidate per row, all rows at once;
    a sampled row draws from softmax(fused / temperature) cut to ``top_k`` and ``top_p``.

    Returns ``(chosen int64 [B], fused float32 [B, k])``.
    """

def sample_tokens(
    logits: npt.NDArray[np.float32],
    uniforms: npt.NDArray[np.float64],
    *,
    temperature: float,
    top_k: int | None = None,
    top_p: float | None = None,
) -> npt.NDArray[np.int64]:
    """One token per row of ``logits [B, V]``, drawn with ``uniforms [B]`` in ``[0, 1)``.

    Softmax of ``logits / temperature`` cut to the top-k, then the top-p nucleus; inverse
    CDF in vocabulary order. Returns int64 ``[B]``.
    """

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
    @property
    def num_prompts(self) -> int: ...
    @property
    def n(self) -> int: ...
