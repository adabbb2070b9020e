"""rshape_fast: reward-guided decoding with Stackelberg reward shaping.

The kernels (``topk``, ``stackelberg_threshold``, ``shape_rewards``, ``fuse_and_select``,
``SegmentBeam``, ``StreamingBestOfN``) need only numpy. Everything that touches a model
(``generate``, ``stream``, ``load_lm``, ``RewardModel``, ...) imports torch on first use,
so ``import rshape_fast`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from rshape_fast._core import SegmentBeam, ShapeParams, StreamingBestOfN, __version__
from rshape_fast.errors import (
    InvalidInputError,
    ModelError,
    NonFiniteError,
    ParameterError,
    RshapeError,
    ShapeError,
)
from rshape_fast.shaping import (
    SCHEMES,
    fuse_and_select,
    shape_rewards,
    stackelberg_threshold,
    topk,
)

__all__ = [
    "SCHEMES",
    "InvalidInputError",
    "ModelError",
    "NonFiniteError",
    "ParameterError",
    "RshapeError",
    "SegmentBeam",
    "ShapeError",
    "ShapeParams",
    "StreamingBestOfN",
    "__version__",
    "fuse_and_select",
    "shape_rewards",
    "stackelberg_threshold",
    "topk",
]

# Names resolved on first access (module-level __getattr__, PEP 562), so that
# `import rshape_fast` never imports torch: name -> the module defining it.
_LAZY_EXPORTS: dict[str, str] = {
    "generate": "rshape_fast.decoding",
    "stream": "rshape_fast.decoding",
    "DecodingOptions": "rshape_fast.decoding",
    "GenerationResult": "rshape_fast.decoding",
    "Cost": "rshape_fast.decoding",
    "METHODS": "rshape_fast.decoding",
    "LanguageModel": "rshape_fast.models",
    "RewardModel": "rshape_fast.models",
    "TextRewardModel": "rshape_fast.models",
    "as_reward_model": "rshape_fast.models",
    "load_lm": "rshape_fast.models",
    "load_reward_model": "rshape_fast.models",
    "available_models": "rshape_fast.cache",
    "cache_dir": "rshape_fast.cache",
}
__all__ += sorted(_LAZY_EXPORTS)

if TYPE_CHECKING:  # static checkers see the real objects; "X as X" marks a re-export
    from rshape_fast.cache import available_models as available_models
    from rshape_fast.cache import cache_dir as cache_dir
    from rshape_fast.decoding import METHODS as METHODS
    from rshape_fast.decoding import Cost as Cost
    from rshape_fast.decoding import DecodingOptions as DecodingOptions
    from rshape_fast.decoding import GenerationResult as GenerationResult
    from rshape_fast.decoding import generate as generate
    from rshape_fast.decoding import stream as stream
    from rshape_fast.models import LanguageModel as LanguageModel
    from rshape_fast.models import RewardModel as RewardModel
    from rshape_fast.models import TextRewardModel as TextRewardModel
    from rshape_fast.models import as_reward_model as as_reward_model
    from rshape_fast.models import load_lm as load_lm
    from rshape_fast.models import load_reward_model as load_reward_model


def __getattr__(name: str) -> object:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_EXPORTS))
