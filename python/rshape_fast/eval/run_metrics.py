"""The metrics of a run file: judge scores, bootstrap intervals and win-tie rates per point.

:func:`compute_metrics` scores the finished responses with the held-out judges, caching
their scores in a sidecar (``RUN.judges.json``) so that re-running a report does not
re-run the judges, and summarises every grid point that has rows; it reads a partial run
as it is, so a run can be inspected while it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rshape_fast.errors import RunFileError
from rshape_fast.eval.grid import (
    DEFAULT_BASELINES,
    DEFAULT_JUDGES,
    GridPoint,
    matches,
    parse_selector,
    point_label,
    selector_name,
)
from rshape_fast.eval.metrics import bootstrap_ci, diversity, win_tie_rate
from rshape_fast.eval.run_file import read_run

__all__ = ["JUDGE_SCORES", "SCORES", "RunMetrics", "compute_metrics", "judge_cache_path"]


def _nearest(point: GridPoint, candidates: Iterable[GridPoint]) -> GridPoint | None:
    # The baseline point that differs from `point` in the fewest knobs: SRS at λ = 0.25
    # is compared with raw at λ = 0.25, SRS under noise with raw under noise.
    best: tuple[int, GridPoint] | None = None
    for candidate in candidates:
        if candidate.id == point.id:
            continue
        distance = sum(point.knobs.get(k) != v for k, v in candidate.knobs.items())
        if best is None or distance < best[0]:
            best = (distance, candidate)
    return None if best is None else best[1]


@dataclass
class RunMetrics:
    """Everything the report shows, JSON-serialisable through :meth:`to_dict`.

    ``points``: one dict per grid point with rows (label, knobs, n, means and 95 %
    bootstrap intervals of each score, mean costs). ``win_tie``: one dict per
    (configuration, baseline, judge). ``values``: per point, per score, prompt id → value
    (for paired comparisons). ``run_file`` and ``judge_cache``: the files the metrics
    were read from; ``rows``: the rows the run file held.
    """

    config_hash: str
    config: dict[str, Any]
    prompts: int
    points: list[dict[str, Any]]
    baselines: list[dict[str, Any]]
    win_tie: list[dict[str, Any]]
    skipped: dict[str, str]
    missing: list[str]
    values: dict[str, dict[str, dict[str, float]]]
    run_file: str
    judge_cache: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the report saves it as ``RUN.metrics.json``)."""
        return asdict(self)

    def point(self, point_id: str) -> dict[str, Any]:
        """The summary dict of one point."""
        for entry in self.points:
            if entry["id"] == point_id:
                return entry
        raise KeyError(point_id)


SCORES: tuple[str, ...] = ("reward", "vader", "minilm", "diversity", "coherence")
"""Per-response scores summarised for every point."""

JUDGE_SCORES: tuple[str, ...] = ("reward", "vader", "minilm")
"""Scores win-tie rates are computed by (the steering reward and the held-out judges)."""


def _text_key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:24]


def judge_cache_path(path: Path) -> Path:
    """The sidecar next to a run file that caches its judge and coherence scores."""
    return path.with_name(path.name + ".judges.json")


def _score_with_cache(
    rows: Sequence[Mapping[str, Any]], judges: Sequence[str], cache_file: Path, device: str
) -> dict[str, dict[str, float]]:
    """Judge and coherence scores of every row, from the sidecar or computed and saved."""
    cache: dict[str, dict[str, float]] = {}
    if cache_file.exists():
        try:
            cache = json.loads(cache_file.read_text(encoding="utf-8"))
        except ValueError:
            cache = {}  # a damaged cache only costs a re-score
    changed = False
    for name in [*judges, "coherence"]:
        table = cache.setdefault(name, {})
        if name == "coherence":
            keyed = {_text_key(r["prompt"], r["response"]): r for r in rows}
        else:
            keyed = {_text_key(r["response"]): r for r in rows}
        missing = [k for k in keyed if k not in table]
        if not missing:
            continue
        if name == "coherence":
            from rshape_fast.eval.judges import coherence

            scores = coherence(
                [keyed[k]["prompt"] for k in missing], [keyed[k]["response"] for k in missing]
            )
        else:
            from rshape_fast.eval.judges import load_judge

            judge = load_judge(name, device=device)
            scores = judge.score([keyed[k]["response"] for k in missing])
        table.update({k: float(s) for k, s in zip(missing, scores, strict=True)})
        changed = True
    if changed:
        tmp = cache_file.with_name(cache_file.name + ".tmp")
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        os.replace(tmp, cache_file)
    return cache


def _summary(values: Sequence[float]) -> dict[str, float]:
    mean, low, high = bootstrap_ci(np.asarray(values, dtype=np.float64))
    return {"mean": mean, "low": low, "high": high}


def compute_metrics(
    path: str | Path,
    *,
    baselines: Sequence[str] | None = None,
    judges: Sequence[str] | None = None,
    device: str = "cpu",
) -> RunMetrics:
    """Metrics of every grid point of a run file (judges scored here, cached in a sidecar).

    Args:
        path: the run file.
        baselines: selectors of the baseline points; default: the config's, else
            :data:`DEFAULT_BASELINES`, keeping those that match a point with rows.
        judges: held-out judges; default: the config's.
        device: where the MiniLM judge runs.
    """
    file = Path(path)
    run = read_run(file)
    if run.header is None:
        raise RunFileError(f"{file}: empty, or cut off inside its header line; not a run file")
    config = run.header["config"]
    points = [GridPoint(p["id"], p["knobs"]) for p in run.header["points"]]
    judge_names = list(judges if judges is not None else config.get("judges", DEFAULT_JUDGES))
    rows_by_point: dict[str, list[dict[str, Any]]] = {p.id: [] for p in points}
    for row in run.rows:
        rows_by_point.setdefault(row["point_id"], []).append(row)
    cache_file = judge_cache_path(file)
    cache = _score_with_cache(run.rows, judge_names, cache_file, device)

    values: dict[str, dict[str, dict[str, float]]] = {}
    summaries: list[dict[str, Any]] = []
    for point in points:
        rows = rows_by_point[point.id]
        if not rows:
            continue
        per: dict[str, dict[str, float]] = {name: {} for name in ("reward", *judge_names)}
        per["diversity"] = {}
        per["coherence"] = {}
        for r in rows:
            pid = r["prompt_id"]
            if r["reward"] is not None:
                per["reward"][pid] = float(r["reward"])
            for name in judge_names:
                per[name][pid] = cache[name][_text_key(r["response"])]
            per["diversity"][pid] = diversity(r["response"])
            per["coherence"][pid] = cache["coherence"][_text_key(r["prompt"], r["response"])]
        values[point.id] = per
        cost_keys = ("generated_tokens", "lm_calls", "rm_calls", "lm_tokens", "rm_tokens")
        cost = {k: float(np.mean([r["cost"][k] for r in rows])) for k in cost_keys}
        cost["forward_calls"] = cost["lm_calls"] + cost["rm_calls"]
        cost["seconds"] = float(np.mean([r["cost"]["seconds_total"] for r in rows]))
        summaries.append(
            {
                "id": point.id,
                "label": point_label(point, points),
                "knobs": point.knobs,
                "n": len(rows),
                "scores": {name: _summary(list(v.values())) for name, v in per.items() if v},
                "cost": cost,
            }
        )

    with_rows = [p for p in points if p.id in values]
    selectors = list(baselines or config.get("baselines") or DEFAULT_BASELINES)
    baseline_info: list[dict[str, Any]] = []
    win_ties: list[dict[str, Any]] = []
    for text in selectors:
        selector = parse_selector(text)
        matching = [p for p in with_rows if matches(p.knobs, selector)]
        baseline_info.append(
            {
                "selector": text,
                "name": selector_name(selector),
                "points": [p.id for p in matching],
            }
        )
        if not matching:
            continue
        for point in with_rows:
            if matches(point.knobs, selector):
                continue
            other = _nearest(point, matching)
            if other is None:
                continue
            for judge in ("reward", *judge_names):
                a, b = values[point.id].get(judge, {}), values[other.id].get(judge, {})
                shared = sorted(set(a) & set(b))
                if not shared:
                    continue
                rate = win_tie_rate([a[k] for k in shared], [b[k] for k in shared])
                win_ties.append(
                    {
                        "point": point.id,
                        "baseline": selector_name(selector),
                        "baseline_point": other.id,
                        "judge": judge,
                        "n": len(shared),
                        **rate,
                    }
                )

    skipped = {s["point_id"]: s["reason"] for s in run.skips if s["point_id"] not in values}
    missing = [p.id for p in points if p.id not in values]
    return RunMetrics(
        config_hash=run.header["config_hash"],
        config=config,
        prompts=len(run.header.get("prompt_ids", [])),
        points=summaries,
        baselines=baseline_info,
        win_tie=win_ties,
        skipped=skipped,
        missing=missing,
        values=values,
        run_file=str(file),
        judge_cache=str(cache_file),
        rows=len(run.rows),
    )
