"""Language models and reward models: loading, caching, tokenisation and scoring.

- :mod:`~rshape_fast.models.builtins`: the built-in models (SmolLM2 from its GGUF, and two
  reward judges built from it) and the lookup of a model name;
- :mod:`~rshape_fast.models.language_model`: :class:`LanguageModel` and :func:`load_lm`;
- :mod:`~rshape_fast.models.reward_format`: how a (prompt, response) pair is rendered and
  tokenised for a reward model;
- :mod:`~rshape_fast.models.reward_model`: :class:`RewardModel` (loading, batched
  scoring, what the cached candidate scorer needs), :class:`TextRewardModel`,
  :func:`load_reward_model` and :func:`as_reward_model`;
- :mod:`~rshape_fast.models.loading` and :mod:`~rshape_fast.models.text`: helpers they
  share.

Any local Hugging Face folder works too: a causal LM for :func:`load_lm`, a
sequence-classification model with ``num_labels=1`` for :func:`load_reward_model`.
"""

from rshape_fast.cache import DEFAULT_LM, DEFAULT_REWARD_MODEL, ENGINES, available_models, cache_dir
from rshape_fast.models.builtins import SENTIMENT_TEMPLATE
from rshape_fast.models.language_model import LanguageModel, LanguageModelBase, load_lm
from rshape_fast.models.reward_format import DEFAULT_REWARD_TEMPLATE
from rshape_fast.models.reward_model import (
    RewardModel,
    TextRewardModel,
    as_reward_model,
    load_reward_model,
)

__all__ = [
    "DEFAULT_LM",
    "DEFAULT_REWARD_MODEL",
    "DEFAULT_REWARD_TEMPLATE",
    "ENGINES",
    "SENTIMENT_TEMPLATE",
    "LanguageModel",
    "LanguageModelBase",
    "RewardModel",
    "TextRewardModel",
    "as_reward_model",
    "available_models",
    "cache_dir",
    "load_lm",
    "load_reward_model",
]
