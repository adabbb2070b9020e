"""rshape_fast: reward-guided decoding with Stackelberg reward shaping.

The kernels (``topk``, ``stackelberg_threshold``, ``shape_rewards``, ``fuse_and_select``,
``SegmentBeam``, ``StreamingBestOfN``) need only numpy. Everything that touches a model
(``generate``, ``load_lm``, ``RewardModel``, ...) imports torch on first use, so
``import rshape_fast`` stays light.
"""

from __future__ import annotations

from rshape_fast._core import SegmentBeam, StreamingBestOfN, __version__
from rshape_fast.errors import (
    InvalidInputError,
    ModelError,
    NonFiniteError,
    ParameterError,
    RshapeError,
    ShapeError,
)

__all__ = [
    "InvalidInputError",
    "ModelError",
    "NonFiniteError",
    "ParameterError",
    "RshapeError",
    "SegmentBeam",
    "ShapeError",
    "StreamingBestOfN",
    "__version__",
]
