"""Evaluation of decoded responses (algorithms.md §5).

* Held-out judges the decoder never sees: :class:`VaderJudge`, :class:`MiniLMSentimentJudge`
  (registry :data:`JUDGES`, :func:`load_judge`).
* :func:`coherence` between prompts and responses (MiniLM cosine), via :class:`Embedder`.
* Metrics in plain numpy: :func:`diversity`, :func:`mean_diversity`, :func:`bootstrap_ci`,
  :func:`win_tie_rate`.

Importing this package imports neither torch nor transformers; the MiniLM judge and the
embedder load them (and the weights) on first use.
"""

from __future__ import annotations

from rshape_fast.eval.judges import (
    JUDGES,
    NEGATIVE_ANCHORS,
    POSITIVE_ANCHORS,
    Embedder,
    Judge,
    MiniLMSentimentJudge,
    VaderJudge,
    coherence,
    default_minilm_path,
    load_judge,
)
from rshape_fast.eval.metrics import (
    DIVERSITY_ORDERS,
    WinTie,
    bootstrap_ci,
    diversity,
    mean_diversity,
    win_tie_rate,
)

__all__ = [
    "DIVERSITY_ORDERS",
    "JUDGES",
    "NEGATIVE_ANCHORS",
    "POSITIVE_ANCHORS",
    "Embedder",
    "Judge",
    "MiniLMSentimentJudge",
    "VaderJudge",
    "WinTie",
    "bootstrap_ci",
    "coherence",
    "default_minilm_path",
    "diversity",
    "load_judge",
    "mean_diversity",
    "win_tie_rate",
]
