"""Evaluation of decoded responses (docs/algorithms.md, evaluation).

* Held-out judges the decoder never sees: :class:`VaderJudge`, :class:`MiniLMSentimentJudge`
  (registry :data:`JUDGES`, :func:`load_judge`).
* :func:`coherence` between prompts and responses (MiniLM cosine), via :class:`Embedder`.
* Metrics in plain numpy: :func:`diversity`, :func:`mean_diversity`, :func:`bootstrap_ci`,
  :func:`win_tie_rate`.

* The `rshape eval` machinery: the grid (:mod:`~rshape_fast.eval.grid`: :class:`EvalConfig`,
  :func:`load_config`, :func:`expand_grid`), the resumable JSONL run file
  (:mod:`~rshape_fast.eval.run_file`: :func:`read_run`), the run loop
  (:mod:`~rshape_fast.eval.run_loop`: :func:`run_eval`, in one process or on Ray workers,
  :mod:`~rshape_fast.eval.distributed`), the metrics of a run
  (:mod:`~rshape_fast.eval.run_metrics`: :func:`compute_metrics`), :func:`write_report`,
  and the paper's toy example (:func:`toy_example`).

Importing this package imports neither torch, transformers nor ray; the MiniLM judge and
the embedder load them (and the weights) on first use, a distributed run imports ray.
"""

from __future__ import annotations

from rshape_fast.errors import ConfigChangedError, RunFileError, WorkersLostError
from rshape_fast.eval.grid import EvalConfig, GridPoint, expand_grid, load_config
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
from rshape_fast.eval.run_file import read_run
from rshape_fast.eval.run_loop import RunSummary, run_eval
from rshape_fast.eval.run_metrics import RunMetrics, compute_metrics
from rshape_fast.eval.toy import toy_example

__all__ = [
    "DIVERSITY_ORDERS",
    "JUDGES",
    "NEGATIVE_ANCHORS",
    "POSITIVE_ANCHORS",
    "ConfigChangedError",
    "Embedder",
    "EvalConfig",
    "GridPoint",
    "Judge",
    "MiniLMSentimentJudge",
    "RunFileError",
    "RunMetrics",
    "RunSummary",
    "VaderJudge",
    "WinTie",
    "WorkersLostError",
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
