"""The paper's claims checked against a reproduction's metrics, for `rshape reproduce`.

Each claim is a paired difference between two configurations over the same prompts, with
its 95 % bootstrap interval; its verdict is *holds* (interval above 0), **reversed**
(below 0) or *undecided* (contains 0). Every verdict is computed from the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rshape_fast.eval.metrics import bootstrap_ci, win_tie_rate
from rshape_fast.eval.run_metrics import RunMetrics

__all__ = [
    "Paired",
    "cd_heads",
    "find_point",
    "paired_difference",
    "paired_win_tie",
    "suite_claims",
    "verdict",
]

RAW = {"method": "args", "shaping": "raw", "reward_scale": None}
SRS = {"method": "args", "shaping": "srs", "reward_scale": None}
SRS_AUTO = {"method": "args", "shaping": "srs", "reward_scale": "auto"}
RAW_AUTO = {"method": "args", "shaping": "raw", "reward_scale": "auto"}


def find_point(metrics: RunMetrics, **knobs: Any) -> str | None:
    """Id of the point whose knobs include these values (perturbation "none" by default)."""
    knobs.setdefault("perturbation", "none")
    for p in metrics.points:
        if all(p["knobs"].get(k) == v for k, v in knobs.items()):
            return str(p["id"])
    return None


@dataclass
class Paired:
    """Paired difference A − B of a per-prompt score, with a 95 % bootstrap interval."""

    a: float
    b: float
    diff: float
    low: float
    high: float
    n: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        mark = "**" if self.significant else ""
        return f"{mark}{self.diff:+.3f}{mark} [{self.low:+.3f}, {self.high:+.3f}]"


def _shared(metrics: RunMetrics, a: str, b: str, score: str) -> tuple[np.ndarray, np.ndarray]:
    va, vb = metrics.values[a].get(score, {}), metrics.values[b].get(score, {})
    shared = sorted(set(va) & set(vb))
    return np.array([va[k] for k in shared]), np.array([vb[k] for k in shared])


def paired_difference(metrics: RunMetrics, a: str, b: str, score: str) -> Paired | None:
    """Point `a` − point `b` on `score` over the prompts both have (None: none shared)."""
    xa, xb = _shared(metrics, a, b, score)
    if not xa.size:
        return None
    diff, low, high = bootstrap_ci(xa - xb)
    return Paired(float(xa.mean()), float(xb.mean()), diff, low, high, len(xa))


def paired_win_tie(metrics: RunMetrics, a: str, b: str, score: str) -> float | None:
    """(wins + ties) / prompts of point `a` against point `b` by `score`."""
    xa, xb = _shared(metrics, a, b, score)
    return float(win_tie_rate(xa, xb)["win_tie"]) if xa.size else None


def verdict(paired: Paired | None) -> str:
    """holds / **reversed** / undecided, with the difference and its interval."""
    if paired is None:
        return "not run"
    if paired.low > 0:
        return f"holds ({paired})"
    if paired.high < 0:
        return f"**reversed** ({paired})"
    return f"undecided ({paired})"


def _compare(
    metrics: RunMetrics | None, a: dict[str, Any], b: dict[str, Any], score: str
) -> Paired | None:
    if metrics is None:
        return None
    pa, pb = find_point(metrics, **a), find_point(metrics, **b)
    return None if pa is None or pb is None else paired_difference(metrics, pa, pb, score)


def cd_heads(metrics: RunMetrics | None) -> dict[str, str]:
    """Value-head folder name (raw, srs, srs-auto) → id of the CD point decoding with it."""
    if metrics is None:
        return {}
    return {
        Path(str(p["knobs"]["value_head"])).name: str(p["id"])
        for p in metrics.points
        if p["knobs"]["method"] == "cd"
    }


def suite_claims(
    test: RunMetrics | None, extras: RunMetrics | None, *, with_cd: bool
) -> list[tuple[str, str]]:
    """(claim, verdict) for one suite: `test` holds the schemes at λ*, `extras` the CD
    heads (None: not run yet); `with_cd` says whether the suite compares CD heads."""
    rows = [
        ("SRS (paper) > raw ARGS, steering reward", _compare(test, SRS, RAW, "reward")),
        ("SRS (auto) > raw ARGS, steering reward", _compare(test, SRS_AUTO, RAW, "reward")),
        ("SRS (auto) > SRS (paper), steering reward", _compare(test, SRS_AUTO, SRS, "reward")),
        # The same calibrated scale for both: what shaping adds beyond a larger λ/scale.
        (
            "SRS (auto) > raw ARGS (auto), steering reward",
            _compare(test, SRS_AUTO, RAW_AUTO, "reward"),
        ),
        (
            "SRS (auto) > raw ARGS (auto), coherence",
            _compare(test, SRS_AUTO, RAW_AUTO, "coherence"),
        ),
        ("SRS (auto) > raw ARGS, VADER", _compare(test, SRS_AUTO, RAW, "vader")),
        ("SRS (auto) > raw ARGS, MiniLM", _compare(test, SRS_AUTO, RAW, "minilm")),
    ]
    for shaping, name in (("minmax", "min-max"), ("meanstd", "mean-std")):
        other = {"method": "args", "shaping": shaping}
        if test is not None and find_point(test, **other) is not None:
            rows.append(
                (f"SRS (auto) > {name}, steering reward", _compare(test, SRS_AUTO, other, "reward"))
            )
    out = [(claim, verdict(paired)) for claim, paired in rows]
    coherence = _compare(test, SRS_AUTO, RAW, "coherence")
    out.append(
        (
            "coherence unchanged, SRS (auto) vs raw ARGS",
            "not run"
            if coherence is None
            else f"{'does not hold' if coherence.significant else 'holds'} ({coherence})",
        )
    )
    heads = cd_heads(extras)
    for name in ("srs", "srs-auto") if with_cd else ():
        paired = None
        if extras is not None and name in heads and "raw" in heads:
            paired = paired_difference(extras, heads[name], heads["raw"], "reward")
        out.append((f"SRS-CD, {name} head > raw head, steering reward", verdict(paired)))
    return out
