"""The paper's claims checked against a run's metrics, for `rshape reproduce`.

SRS-ARGS against the other shapings at the default λ: a higher mean steering reward,
unchanged diversity and coherence, win-tie above 50 % by the held-out judges, and the
same comparison with raw ARGS under perturbed rewards. Every sentence that states a
result is generated from the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rshape_fast.eval.metrics import bootstrap_ci
from rshape_fast.eval.report import Plot, figures_md, new_figure
from rshape_fast.eval.run_metrics import RunMetrics

__all__ = [
    "HELD_OUT",
    "NORMALISED",
    "PERTURBATIONS",
    "Paired",
    "claims_section",
    "find_point",
    "robustness_section",
]

NORMALISED = ("minmax", "meanstd")
PERTURBATIONS = ("noise", "random", "reversed")
HELD_OUT = ("vader", "minilm")


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
        return self.low > 0 or self.high < 0


def _paired(metrics: RunMetrics, a: str, b: str, score: str) -> Paired | None:
    va, vb = metrics.values[a].get(score, {}), metrics.values[b].get(score, {})
    shared = sorted(set(va) & set(vb))
    if not shared:
        return None
    xa = np.array([va[k] for k in shared])
    xb = np.array([vb[k] for k in shared])
    diff, low, high = bootstrap_ci(xa - xb)
    return Paired(float(xa.mean()), float(xb.mean()), diff, low, high, len(shared))


def _win_tie(metrics: RunMetrics, point: str, baseline_point: str, judge: str) -> float | None:
    for w in metrics.win_tie:
        if w["point"] == point and w["baseline_point"] == baseline_point and w["judge"] == judge:
            return float(w["win_tie"])
    return None


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{100 * rate:.0f} %"


def _verdict(ok: bool) -> str:
    return "**agrees**" if ok else "**does not agree**"


def claims_section(metrics: RunMetrics, weight: float) -> tuple[str, list[str]]:
    """The paper's claims checked against the numbers at the default λ `weight`; returns
    (Markdown, one-line verdicts)."""
    srs = find_point(metrics, method="args", shaping="srs", weight=weight)
    if srs is None:
        return "SRS-ARGS at the default λ has no results; no claim can be checked.\n", []
    lines: list[str] = []
    verdicts: list[str] = []

    # Claim 1: higher average steering reward than raw and normalised rewards.
    compared = []
    for shaping in ("raw", *NORMALISED, "meansoft", "cap"):
        other = find_point(metrics, method="args", shaping=shaping, weight=weight)
        paired = None if other is None else _paired(metrics, srs, other, "reward")
        if paired is None:
            continue
        compared.append((shaping, paired))
        sig = "significant" if paired.significant else "not significant"
        lines.append(
            f"- vs ARGS+{shaping}: {paired.a:+.3f} vs {paired.b:+.3f}, paired Δ = "
            f"{paired.diff:+.3f} [{paired.low:+.3f}, {paired.high:+.3f}] ({sig})"
        )
    core = [p for s, p in compared if s in ("raw", *NORMALISED)]
    claim1 = bool(core) and all(p.diff > 0 for p in core)
    sweep_wins, sweep_total = 0, 0
    for p in metrics.points:
        k = p["knobs"]
        if k["method"] != "args" or k["shaping"] != "srs" or k["perturbation"] != "none":
            continue
        for shaping in ("raw", *NORMALISED):
            other = find_point(metrics, method="args", shaping=shaping, weight=k["weight"])
            paired = None if other is None else _paired(metrics, p["id"], other, "reward")
            if paired is not None:
                sweep_total += 1
                sweep_wins += paired.diff > 0
    text = [
        "### Claim 1: SRS improves the average reward over raw and normalised rewards\n\n",
        f"Mean steering reward of SRS-ARGS at λ = {weight:g} against each other shaping "
        "(same prompts, same λ; 95 % paired bootstrap interval of the difference):\n\n",
        "\n".join(lines) + "\n\n",
        f"Across the λ sweep SRS is ahead of raw / min-max / mean-std in {sweep_wins} of "
        f"{sweep_total} (λ, baseline) pairs. The paper reports +3 to +11 % for SRS-ARGS over "
        f"ARGS on 8B models. Our result {_verdict(claim1)} with the claim at the default λ"
        + (
            "."
            if not core or all(p.significant for p in core) or not claim1
            else ", though not every difference is significant at this sample size."
        )
        + "\n\n",
    ]
    verdicts.append(f"SRS reward > raw, min-max and mean-std at λ = {weight:g}: {_verdict(claim1)}")

    # Claim 2: diversity and coherence unchanged.
    text.append("### Claim 2: diversity and coherence are unchanged\n\n")
    unchanged = True
    for shaping in ("raw", *NORMALISED):
        other = find_point(metrics, method="args", shaping=shaping, weight=weight)
        if other is None:
            continue
        for score in ("diversity", "coherence"):
            paired = _paired(metrics, srs, other, score)
            if paired is None:
                continue
            same = not paired.significant
            unchanged &= same
            text.append(
                f"- {score} vs ARGS+{shaping}: {paired.a:.3f} vs {paired.b:.3f}, Δ = "
                f"{paired.diff:+.3f} [{paired.low:+.3f}, {paired.high:+.3f}] → "
                f"{'unchanged (interval contains 0)' if same else 'changed'}\n"
            )
    text.append(f"\nOur result {_verdict(unchanged)} with the claim.\n\n")
    verdicts.append(f"diversity and coherence unchanged: {_verdict(unchanged)}")

    # Claim 3: held-out judges prefer SRS (win-tie > 50 %).
    text.append("### Claim 3: held-out judges prefer SRS (win-tie > 50 %)\n\n")
    rates = []
    for shaping in ("raw", *NORMALISED):
        other = find_point(metrics, method="args", shaping=shaping, weight=weight)
        if other is None:
            continue
        for judge in HELD_OUT:
            rate = _win_tie(metrics, srs, other, judge)
            if rate is None:
                continue
            rates.append(rate)
            text.append(f"- vs ARGS+{shaping}, judge {judge}: {100 * rate:.0f} %\n")
    above = sum(r > 0.5 for r in rates)
    claim3 = bool(rates) and above == len(rates)
    text.append(
        f"\n{above} of {len(rates)} win-tie rates are above 50 % (paper: 66–70 % with a GPT-4 "
        f"judge). Our result {_verdict(claim3)} with the claim.\n\n"
    )
    verdicts.append(f"win-tie of SRS > 50 % by the held-out judges: {_verdict(claim3)}")
    return "".join(text), verdicts


def robustness_section(metrics: RunMetrics, weight: float, figure: Path, md_dir: Path) -> str:
    """ARGS (raw) against SRS-ARGS at λ = `weight` under each perturbation: table and plot."""
    rows = []
    for perturbation in ("none", *PERTURBATIONS):
        at = {"method": "args", "weight": weight, "perturbation": perturbation}
        raw = find_point(metrics, shaping="raw", **at)
        srs = find_point(metrics, shaping="srs", **at)
        if raw is None or srs is None:
            continue
        paired = _paired(metrics, srs, raw, "reward")
        if paired is None:
            continue
        judges = {j: _win_tie(metrics, srs, raw, j) for j in HELD_OUT}
        rows.append((perturbation, paired, judges))
    if not rows:
        return "No robustness results.\n"
    fig = new_figure(7.0, 4.2)
    ax = fig.subplots()
    xs = np.arange(len(rows))
    ax.bar(xs - 0.2, [p.b for _, p, _ in rows], width=0.4, label="ARGS (raw)")
    ax.bar(xs + 0.2, [p.a for _, p, _ in rows], width=0.4, label="SRS-ARGS")
    ax.set_xticks(xs)
    ax.set_xticklabels([name for name, _, _ in rows])
    ax.set_ylabel("mean steering reward (unperturbed)")
    ax.set_title("Robustness: rewards perturbed during decoding")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figure, dpi=120)

    table = (
        "| perturbation | ARGS (raw) | SRS-ARGS | Δ [95 % CI] | win-tie VADER | win-tie MiniLM |\n"
        "|---|---:|---:|---|---:|---:|\n"
    )
    ahead = 0
    for name, p, judges in rows:
        ahead += p.diff > 0
        cells = [_percent(judges[j]) for j in HELD_OUT]
        table += (
            f"| {name} | {p.b:+.3f} | {p.a:+.3f} | {p.diff:+.3f} [{p.low:+.3f}, {p.high:+.3f}] "
            f"| {cells[0]} | {cells[1]} |\n"
        )
    return (
        "## 3. Robustness to reward perturbations\n\n"
        "The perturbation is applied to the candidates' rewards while decoding; the reward "
        "reported is the unperturbed steering reward of the final response.\n\n"
        + table
        + f"\nSRS-ARGS has the higher mean reward under {ahead} of {len(rows)} conditions.\n\n"
        + figures_md(
            [
                Plot(
                    figure,
                    "ARGS (raw) and SRS-ARGS at the default λ under each perturbation; "
                    "the other shapings are not perturbed in this grid.",
                )
            ],
            md_dir,
        )
    )
