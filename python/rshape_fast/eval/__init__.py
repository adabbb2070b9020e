"""Evaluation of decoded responses (algorithms.md §5).

* Held-out judges the decoder never sees: :class:`VaderJudge`, :class:`MiniLMSentimentJudge`
  (registry :data:`JUDGES`, :func:`load_judge`).
* :func:`coherence` between prompts and responses (MiniLM cosine), via :class:`Embedder`.
* Metrics in plain numpy: :func:`diversity`, :func:`mean_diversity`, :func:`bootstrap_ci`,
  :func:`win_tie_rate`.

* The `rshape eval` machinery: :class:`EvalConfig`, :func:`expand_grid`, :func:`run_eval`
  (resumable JSONL run files), :func:`compute_metrics`, :func:`write_report`, and the
  paper's toy example (:func:`toy_example`).

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
from rshape_fast.eval.report import write_report
from rshape_fast.eval.runner import (
    EvalConfig,
    RunMetrics,
    compute_metrics,
    expand_grid,
    load_config,
    read_run,
    run_eval,
)
from rshape_fast.eval.toy import toy_example

__all__ = [
    "DIVERSITY_ORDERS",
    "JUDGES",
    "NEGATIVE_ANCHORS",
    "POSITIVE_ANCHORS",
    "Embedder",
    "EvalConfig",
    "Judge",
    "MiniLMSentimentJudge",
    "RunMetrics",
    "VaderJudge",
    "WinTie",
    "bootstrap_ci",
    "coherence",
    "compute_metrics",
    "default_minilm_path",
    "diversity",
    "expand_grid",
    "load_config",
    "load_judge",
    "mean_diversity",
    "read_run",
    "run_eval",
    "toy_example",
    "win_tie_rate",
    "write_report",
]
