"""The reproduction report: ``docs/reproduction.md`` and its figures, rendered from the run
files of :mod:`rshape_fast.eval.reproduce`'s stages. Every number and verdict comes from
the rows; nothing here decodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rshape_fast.cache import DEFAULT_LM
from rshape_fast.eval.claims import (
    RAW,
    SRS,
    Paired,
    cd_heads,
    find_point,
    paired_difference,
    paired_win_tie,
    suite_claims,
)
from rshape_fast.eval.grid import EvalConfig, method_label
from rshape_fast.eval.protocol import (
    CD_SAMPLES,
    HELD_OUT,
    PAPER_DEFAULTS,
    SEQUENCE_KNOBS,
    ReproductionPlan,
    Suite,
    WeightChoice,
    train_prompt_ids,
)
from rshape_fast.eval.report import Plot, figures_md, format_ci, metrics_table_md, new_figure
from rshape_fast.eval.run_file import read_run
from rshape_fast.eval.run_metrics import RunMetrics, compute_metrics
from rshape_fast.eval.toy import ToyExample, toy_example

__all__ = ["Stage", "read_stage", "render_report"]

# --------------------------------------------------------------------------- helpers


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _label(knobs: dict[str, Any]) -> str:
    if knobs["method"] == "cd":
        return f"cd, {Path(str(knobs['value_head'])).name} head"
    name = method_label(knobs)
    if knobs.get("reward_scale") == "auto":
        name += " (auto)"
    if knobs.get("perturbation", "none") != "none":
        name += f" {knobs['perturbation']}"
    return name


def _relabel(metrics: RunMetrics) -> RunMetrics:
    # The grid's labels name every varying knob; the report names schemes and calibration.
    points = [{**p, "label": _label(p["knobs"])} for p in metrics.points]
    return replace(metrics, points=points)


@dataclass
class Stage:
    """What the report knows of one run file."""

    path: Path
    metrics: RunMetrics | None
    expected: int
    seconds: float = 0.0
    """Decoding seconds the rows record (their batches' wall time, split over the prompts)."""

    @property
    def rows(self) -> int:
        return 0 if self.metrics is None else self.metrics.rows

    @property
    def status(self) -> str:
        if self.metrics is None:
            return "not run"
        if self.rows < self.expected:
            return f"partial: {self.rows} of {self.expected} generations"
        return f"complete: {self.rows} generations"


def read_stage(path: Path, config: EvalConfig, device: str) -> Stage:
    """The run file of a stage run with `config`, with its metrics (None if it has no rows)."""
    expected = _expected(config)
    rows = read_run(path).rows if path.is_file() else []
    if not rows:
        return Stage(path, None, expected)
    seconds = sum(r["cost"]["seconds_total"] for r in rows)
    return Stage(path, _relabel(compute_metrics(path, device=device)), expected, seconds)


def _expected(config: EvalConfig) -> int:
    from rshape_fast.eval.grid import expand_grid

    return len(expand_grid(config)) * len(config.load_prompts())


# --------------------------------------------------------------------------- sections


def _toy_section(toy: ToyExample, figure: Path, md_dir: Path) -> str:
    fig = new_figure(7.0, 4.2)
    ax = fig.subplots()
    ax.plot(toy.alphas, toy.soft_utilities, marker="o", label="soft SRS: B·sigmoid(α(r − m*))")
    ax.axhline(toy.base_utility, color="grey", linestyle=":", label="base policy p")
    ax.axhline(toy.raw_utility, color="tab:orange", linestyle="--", label="raw reward r")
    ax.axhline(
        toy.shaped_utility, color="tab:green", linestyle="--", label="hard threshold (B·1[r ≥ m*])"
    )
    ax.set_xscale("log")
    ax.set_xlabel("sigmoid sharpness α")
    ax.set_ylabel("user utility Σ π_i r_i")
    ax.set_title(f"Toy example: r={toy.rewards}, p={toy.probs}, β={toy.beta:g}, B={toy.bound:g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figure, dpi=120)

    near_zero = toy.soft_utilities[0]
    large = toy.soft_utilities[-1]
    crossing = next(
        (a for a, u in zip(toy.alphas, toy.soft_utilities, strict=True) if u > toy.raw_utility),
        None,
    )
    rows = [
        ("base policy p (no reward)", "—", toy.base_utility),
        ("raw reward r handed over", ", ".join(f"{x:g}" for x in toy.rewards), toy.raw_utility),
        (
            "threshold reward (B above m*, 0 below)",
            ", ".join(f"{x:g}" for x in toy.hard_shaped),
            toy.shaped_utility,
        ),
        (f"soft SRS, α = {toy.alphas[0]:g}", "—", near_zero),
        (f"soft SRS, α = {toy.alphas[-1]:g}", "—", large),
    ]
    table = "| handed-over reward | values | utility |\n|---|---|---:|\n" + "".join(
        f"| {name} | {values} | {u:.4f} |\n" for name, values, u in rows
    )
    crossing_text = (
        f"it first beats handing over r itself at α ≈ {crossing:.3g}"
        if crossing is not None
        else "it never beats handing over r itself on this α grid"
    )
    return (
        "## 1. The toy example (docs/algorithms.md, the threshold)\n\n"
        f"Rewards r = {toy.rewards}, base probabilities p = {toy.probs}, β = {toy.beta:g}, "
        f"B = {toy.bound:g}; the optimiser returns π ∝ p·e^(h/β) for the handed-over reward h.\n\n"
        f"- `stackelberg_threshold` gives m* = **{toy.threshold:.4f}** (paper: ≈ 1.6906).\n"
        f"- Handing over r itself gives utility **{toy.raw_utility:.4f}** (paper: ≈ 1.23).\n"
        f"- The threshold reward {toy.hard_shaped} gives **{toy.shaped_utility:.4f}** "
        f"(paper: ≈ 1.69 = m*; difference from m* {abs(toy.shaped_utility - toy.threshold):.1e}).\n"
        f"- Soft shaping: at α = {toy.alphas[0]:g} the utility is {near_zero:.4f} "
        f"(base {toy.base_utility:.4f}, difference {abs(near_zero - toy.base_utility):.1e}); "
        f"at α = {toy.alphas[-1]:g} it is {large:.4f} (hard optimum {toy.shaped_utility:.4f}); "
        f"{crossing_text}.\n\n"
        + table
        + "\n"
        + figures_md([Plot(figure, "The toy example's utility against α.")], md_dir)
    )


def _sweep_section(
    suite: Suite, stage: Stage, choice: WeightChoice | None, figure: Path, md_dir: Path
) -> str:
    head = f"### λ sweep on the train split ({stage.status})\n\n"
    if stage.metrics is None or choice is None:
        return head + "No results yet.\n\n"
    metrics = stage.metrics
    table = "| λ | steering reward | VADER | MiniLM | coherence |\n|---:|---|---|---|---|\n"
    for p in sorted(metrics.points, key=lambda p: p["knobs"]["weight"]):
        s = p["scores"]
        mark = " **λ***" if p["knobs"]["weight"] == choice.weight else ""
        table += (
            f"| {p['knobs']['weight']:g}{mark} | {format_ci(s.get('reward'))} "
            f"| {format_ci(s.get('vader'))} "
            f"| {format_ci(s.get('minilm'))} | {s['coherence']['mean']:.3f} |\n"
        )
    fig = new_figure(7.0, 4.0)
    axes = fig.subplots(1, 3)
    weights = [r["weight"] for r in choice.rows]
    for ax, score, title in zip(
        axes, ("reward", *HELD_OUT), ("steering reward", "VADER", "MiniLM"), strict=True
    ):
        ax.plot(weights, [r[score] for r in choice.rows], marker="o")
        ax.axvline(choice.weight, color="tab:green", linestyle="--", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("λ")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{suite.title}: vanilla ARGS on {metrics.prompts} train prompts", fontsize=9)
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    return (
        head + f"Vanilla ARGS (raw reward) on {metrics.prompts} train prompts "
        f"({len(weights)} values of λ). {choice.reason}\n\n"
        + table
        + "\n"
        + figures_md([Plot(figure, "Means of the sweep; the dashed line is λ*.")], md_dir)
    )


def _comparators(metrics: RunMetrics) -> list[tuple[str, str]]:
    """(name, point id) of the baselines each configuration is compared with."""
    named = [
        ("base", find_point(metrics, method="base")),
        ("ARGS raw", find_point(metrics, **RAW)),
        ("min-max", find_point(metrics, method="args", shaping="minmax")),
        ("mean-std", find_point(metrics, method="args", shaping="meanstd")),
        ("SRS (paper)", find_point(metrics, **SRS)),
    ]
    return [(name, pid) for name, pid in named if pid is not None]


def _win_tie_md(metrics: RunMetrics, ids: Sequence[str]) -> str:
    comparators = _comparators(metrics)
    labels = {p["id"]: p["label"] for p in metrics.points}
    lines = [
        "Cells: win-tie % by VADER / MiniLM / steering reward (ties: identical scores).\n",
        "| configuration | " + " | ".join(f"vs {name}" for name, _ in comparators) + " |",
        "|---|" + "---:|" * len(comparators),
    ]
    for pid in ids:
        cells = []
        for _, other in comparators:
            rates = [paired_win_tie(metrics, pid, other, j) for j in (*HELD_OUT, "reward")]
            cells.append(
                ""
                if pid == other
                else " / ".join("–" if r is None else f"{100 * r:.0f}" for r in rates)
            )
        lines.append(f"| {labels[pid]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _delta_md(metrics: RunMetrics, ids: Sequence[str], reference: str) -> str:
    labels = {p["id"]: p["label"] for p in metrics.points}
    lines = [
        f"Paired differences from {labels[reference]} (same prompts; 95 % bootstrap):\n",
        "| configuration | Δ steering reward | Δ VADER | Δ MiniLM | Δ coherence |",
        "|---|---|---|---|---|",
    ]
    for pid in ids:
        if pid == reference:
            continue
        cells = [
            paired_difference(metrics, pid, reference, s)
            for s in ("reward", *HELD_OUT, "coherence")
        ]
        lines.append(f"| {labels[pid]} | " + " | ".join(_delta(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _delta(paired: Paired | None) -> str:
    return "–" if paired is None else str(paired)


def _bars(metrics: RunMetrics, title: str, figure: Path) -> None:
    fig = new_figure(8.0, 4.2)
    axes = fig.subplots(1, 3, sharey=False)
    labels = [p["label"] for p in metrics.points]
    ys = np.arange(len(labels))
    for ax, score, name in zip(
        axes, ("reward", *HELD_OUT), ("steering reward", "VADER", "MiniLM"), strict=True
    ):
        means = [p["scores"].get(score, {}).get("mean", np.nan) for p in metrics.points]
        lows = [p["scores"].get(score, {}).get("low", np.nan) for p in metrics.points]
        highs = [p["scores"].get(score, {}).get("high", np.nan) for p in metrics.points]
        err = np.array([np.subtract(means, lows), np.subtract(highs, means)])
        ax.barh(ys, means, xerr=err, color="tab:blue", alpha=0.7, capsize=2)
        ax.set_yticks(ys)
        ax.set_yticklabels(labels if ax is axes[0] else [], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_title(name, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(figure, dpi=120)


def _test_section(
    suite: Suite, stage: Stage, weight: float | None, figure: Path, md_dir: Path
) -> str:
    head = f"### Every scheme at λ* on the test split ({stage.status})\n\n"
    if stage.metrics is None or weight is None:
        return head + "No results yet.\n\n"
    metrics = stage.metrics
    ids = [p["id"] for p in metrics.points]
    _bars(metrics, f"{suite.title}: {metrics.prompts} test prompts, λ* = {weight:g}", figure)
    raw = find_point(metrics, **RAW)
    parts = [
        head,
        f"{metrics.prompts} test prompts, λ* = {weight:g}, k = {PAPER_DEFAULTS['k']}, "
        f"B = {PAPER_DEFAULTS['bound']:g}, α = {PAPER_DEFAULTS['alpha']:g}; "
        '“(auto)” is `reward_scale="auto"`. Cost columns are means per prompt.\n\n',
        metrics_table_md(metrics),
        "\n",
    ]
    if raw is not None:
        parts += [_delta_md(metrics, ids, raw), "\n"]
    parts += [
        _win_tie_md(metrics, ids),
        "\n",
        figures_md([Plot(figure, "Means with 95 % bootstrap intervals.")], md_dir),
    ]
    return "".join(parts)


def _extras_section(stage: Stage, md_dir: Path) -> str:
    head = f"### CD heads, robustness and sequence-level methods at λ* ({stage.status})\n\n"
    if stage.metrics is None:
        return head + "No results yet.\n\n"
    metrics = stage.metrics
    ids = [p["id"] for p in metrics.points]
    parts = [head, metrics_table_md(metrics), "\n"]
    base = find_point(metrics, method="base")
    if base is not None:
        parts += [_delta_md(metrics, ids, base), "\n"]
    cd = cd_heads(metrics)
    if "raw" in cd:
        parts.append("CD heads against the raw-target head:\n\n")
        for name in ("srs", "srs-auto"):
            if name in cd:
                paired = paired_difference(metrics, cd[name], cd["raw"], "reward")
                parts.append(f"- {name} head − raw head, steering reward: {_delta(paired)}\n")
        parts.append("\n")
    return "".join(parts)


# --------------------------------------------------------------------------- entry point


def render_report(
    plan: ReproductionPlan,
    sweeps: dict[str, Stage],
    choices: dict[str, WeightChoice | None],
    *,
    output: Path,
    figures_dir: Path,
    device: str,
    report_only: bool,
) -> Path:
    """Write the report of `plan` from its run files (the sweeps already read, with the λ*
    they gave) to `output`, its figures to `figures_dir`; returns `output`.

    The report depends on the run files alone (not on when, where or how fast it is
    rendered), so that rendering committed files again gives the same bytes.
    """
    figures_dir.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    md_dir = output.parent
    sections: list[str] = []
    summary: list[tuple[str, list[tuple[str, str]]]] = []
    stages = list(sweeps.values())
    for suite in plan.chosen:
        choice, sweep = choices[suite.name], sweeps[suite.name]
        weight = None if choice is None else choice.weight
        test = (
            Stage(plan.path(suite, "test"), None, 0)
            if weight is None
            else read_stage(plan.path(suite, "test"), plan.test(suite, weight), device)
        )
        extra = (
            read_stage(plan.path(suite, "extras"), plan.extras_of(suite, weight), device)
            if weight is not None and plan.has_extras(suite)
            else None
        )
        stages += [test] if extra is None else [test, extra]
        rm_name = suite.rm if isinstance(suite.rm, str) else " + ".join(suite.rm)
        sections += [
            f"\n## 2.{len(summary) + 1} {suite.title} (`{rm_name}`)\n\n",
            _sweep_section(suite, sweep, choice, figures_dir / f"{suite.name}_sweep.png", md_dir),
            "\n",
            _test_section(suite, test, weight, figures_dir / f"{suite.name}_test.png", md_dir),
        ]
        if extra is not None:
            sections += ["\n", _extras_section(extra, md_dir)]
        summary.append(
            (
                suite.name,
                suite_claims(
                    test.metrics,
                    None if extra is None else extra.metrics,
                    with_cd=extra is not None,
                ),
            )
        )

    claims = list(dict.fromkeys(c for _, rows in summary for c, _ in rows))
    table = (
        "| claim | " + " | ".join(name for name, _ in summary) + " |\n"
        "|---|" + "---|" * len(summary) + "\n"
    )
    for claim in claims:
        # "—": the suite does not run that comparison (see Suite).
        cells = [dict(rows).get(claim, "—") for _, rows in summary]
        table += f"| {claim} | " + " | ".join(cells) + " |\n"
    toy = _toy_section(toy_example(), figures_dir / "toy_soft_curve.png", md_dir)
    parts = [
        "# Reproduction report\n\n",
        f"_Generated by `{plan.command(report_only=report_only)}`; every number and verdict "
        f"below is computed from the run files in `{plan.run_dir}` by that command — edit "
        "the code, not this file._\n\n",
        _files_line(stages),
        "## Summary\n\n",
        "Each verdict is a paired difference over the same prompts with its 95 % bootstrap "
        "interval: *holds* when the interval is above 0, **reversed** when it is below, "
        "*undecided* when it contains 0.\n\n",
        table,
        "\n## Protocol\n\n",
        f"- LM `{DEFAULT_LM}` (float32); reward models in {plan.rm_dtype or 'float32'}; held-out "
        "judges VADER compound and MiniLM positive-vs-negative anchors; coherence = MiniLM "
        "cosine(prompt, response); diversity = Π_{n=2..4} distinct n-gram ratio.\n",
        f"- λ*: vanilla ARGS swept over λ ∈ {{{', '.join(f'{w:g}' for w in plan.weights)}}} "
        f"on {len(train_prompt_ids(plan.sweep_prompts))} train prompts (the same number of "
        "each kind); walking λ "
        "upwards, the sweep stops at the first λ where every held-out judge is below its "
        "value at the λ before, and λ* is the best steering reward before it.\n",
        f"- Test: the first {plan.prompts} prompts of the bundled test split, at most "
        f"{plan.max_new_tokens} new tokens (the paper uses 128). Token level: "
        + ", ".join(
            f"{k} = {v}"
            for k, v in PAPER_DEFAULTS.items()
            if k not in ("method", "shaping", "weight")
        )
        + ". Min-max and mean-std run once: calibration cannot change their tokens.\n",
        "- Sequence-level methods (extras): "
        + ", ".join(f"{k} = {v}" for k, v in SEQUENCE_KNOBS.items())
        + f". CD heads: {CD_SAMPLES} samples per train prompt, trained on raw, SRS and "
        "calibrated-SRS targets (`rshape cd-train --reward-scale auto`).\n",
        "- Intervals: 95 % percentile bootstrap over prompts (2000 resamples, seed 0). "
        "Win-tie = (wins + ties) / prompts.\n\n",
        toy,
        "\n## 2. Decoding\n",
        *sections,
    ]
    output.write_text("".join(parts), encoding="utf-8")
    return output


def _files_line(stages: Sequence[Stage]) -> str:
    written = [s for s in stages if s.path.is_file()]
    megabytes = sum(s.path.stat().st_size for s in written) / 1e6
    return (
        f"The {len(written)} run files hold {sum(s.rows for s in stages)} generations in "
        f"{megabytes:.1f} MB; decoding them took {_duration(sum(s.seconds for s in stages))} "
        "(the sum of the seconds the rows record). The cost columns "
        "are per-prompt means recorded while each row was generated.\n\n"
    )
