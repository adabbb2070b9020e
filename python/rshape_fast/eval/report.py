"""`rshape report RUN.jsonl`: a Markdown summary and PNG plots of a run's metrics.

The tables and plots are built from :class:`~rshape_fast.eval.run_metrics.RunMetrics`
only, so every number in a report comes from the run file (and the judge cache next to
it). Plots are drawn with matplotlib's object API (``matplotlib.figure.Figure``) and saved
to files, so importing or using this module never changes the global backend (a notebook
that imports the package keeps its own). Each plot's caption says what it leaves out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rshape_fast.eval.grid import method_label
from rshape_fast.eval.run_metrics import JUDGE_SCORES, RunMetrics, compute_metrics

__all__ = [
    "Plot",
    "Report",
    "focus_points",
    "format_ci",
    "metrics_table_md",
    "plot_frontier",
    "plot_reward_vs_weight",
    "plot_win_tie",
    "win_tie_table_md",
    "write_report",
]

SCORE_TITLES = {
    "reward": "steering reward",
    "vader": "VADER",
    "minilm": "MiniLM",
    "diversity": "diversity",
    "coherence": "coherence",
}


def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` outside pyplot: saved with ``fig.savefig``, never shown."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def format_ci(summary: dict[str, float] | None, digits: int = 3) -> str:
    if summary is None:
        return "–"
    mean, low, high = (summary[k] for k in ("mean", "low", "high"))
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def metrics_table_md(metrics: RunMetrics) -> str:
    """One row per configuration: scores with 95 % bootstrap intervals, then mean costs."""
    head = (
        "| configuration | n | steering reward | VADER | MiniLM | diversity | coherence "
        "| tokens | forward calls | s / prompt |\n"
        "|---|---:|---|---|---|---|---|---:|---:|---:|\n"
    )
    lines = []
    for p in metrics.points:
        s = p["scores"]
        c = p["cost"]
        lines.append(
            f"| {p['label']} | {p['n']} | {format_ci(s.get('reward'))} "
            f"| {format_ci(s.get('vader'))} "
            f"| {format_ci(s.get('minilm'))} | {s['diversity']['mean']:.3f} "
            f"| {s['coherence']['mean']:.3f} | {c['generated_tokens']:.1f} "
            f"| {c['forward_calls']:.0f} | {c['seconds']:.2f} |"
        )
    return head + "\n".join(lines) + "\n"


def _labels(metrics: RunMetrics) -> dict[str, str]:
    return {p["id"]: p["label"] for p in metrics.points}


def win_tie_table_md(
    metrics: RunMetrics,
    *,
    points: Sequence[str] | None = None,
    judges: Sequence[str] = JUDGE_SCORES,
) -> str:
    """Win-tie rate (%) of each configuration (rows) against each baseline (columns).

    Each cell holds one rate per judge, in the order named above the table
    (``"67 / 50 / 83"``), so that the table stays narrow with many baselines.
    """
    labels = _labels(metrics)
    wanted = list(points) if points is not None else [p["id"] for p in metrics.points]
    judges = [j for j in judges if any(w["judge"] == j for w in metrics.win_tie)]
    columns = [
        b["name"]
        for b in metrics.baselines
        if b["points"] and any(w["baseline"] == b["name"] for w in metrics.win_tie)
    ]
    if not columns or not judges:
        return "_No configuration has a baseline with results to be compared with._\n"
    index = {(w["point"], w["baseline"], w["judge"]): w for w in metrics.win_tie}
    order = " / ".join(SCORE_TITLES.get(j, j) for j in judges)
    lines = [
        f"Cells: win-tie % by {order}.\n",
        "| configuration | " + " | ".join(f"vs {b}" for b in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for pid in wanted:
        cells = []
        for b in columns:
            rates = [index.get((pid, b, j)) for j in judges]
            cells.append(
                "–"
                if all(r is None for r in rates)
                else " / ".join("–" if r is None else f"{100 * r['win_tie']:.0f}" for r in rates)
            )
        if all(c == "–" for c in cells):
            continue
        lines.append(f"| {labels[pid]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _srs_points(metrics: RunMetrics) -> list[str]:
    return [
        p["id"]
        for p in metrics.points
        if p["knobs"]["shaping"] == "srs" and p["knobs"]["method"] != "base"
    ]


def focus_points(metrics: RunMetrics) -> list[str]:
    """The configurations the win-tie plot shows: SRS points when the grid has any, else
    every point that is not itself a baseline."""
    srs = _srs_points(metrics)
    if srs:
        return srs
    baseline_ids = {pid for b in metrics.baselines for pid in b["points"]}
    return [p["id"] for p in metrics.points if p["id"] not in baseline_ids]


@dataclass(frozen=True)
class Plot:
    """A figure written to `path`; `caption` says what it shows and what it leaves out."""

    path: Path
    caption: str


def _named(labels: Sequence[str], most: int = 6) -> str:
    shown = ", ".join(labels[:most])
    return shown if len(labels) <= most else f"{shown} and {len(labels) - most} more"


def _save(fig: Any, path: Path, note: str, *, top: float = 1.0) -> None:
    # The note sits under the axes, so that the PNG says what it leaves out on its own.
    fig.text(0.01, 0.01, note, fontsize=7, wrap=True, va="bottom", color="dimgrey")
    fig.tight_layout(rect=(0, 0.07, 1, top))
    fig.savefig(path, dpi=120)


def plot_reward_vs_weight(metrics: RunMetrics, path: Path) -> Plot | None:
    """Mean steering reward against λ, one line per (method, shaping), with 95 % CI bars.

    Only unperturbed points are drawn; base decoding (which has no λ) is a horizontal
    line. Returns ``None`` (no file) when no (method, shaping) has two λ values.
    """
    groups: dict[str, list[tuple[float, dict[str, float]]]] = {}
    base_reward = None
    perturbed: list[str] = []
    no_reward: list[str] = []
    for p in metrics.points:
        knobs = p["knobs"]
        reward = p["scores"].get("reward")
        if reward is None:
            no_reward.append(p["label"])
        elif knobs["method"] == "base":
            base_reward = reward
        elif knobs.get("perturbation", "none") != "none":
            perturbed.append(p["label"])
        else:
            groups.setdefault(method_label(knobs), []).append((float(knobs["weight"]), reward))
    single = [k for k, v in groups.items() if len(v) < 2]
    groups = {k: sorted(v, key=lambda t: t[0]) for k, v in groups.items() if len(v) >= 2}
    if not groups:
        return None
    fig = new_figure(7.5, 4.8)
    ax = fig.subplots()
    for g, (name, series) in enumerate(groups.items()):
        # Shift each scheme a little along the (log) λ axis so the CI bars do not overlap.
        shift = 1.0 + 0.025 * (g - (len(groups) - 1) / 2)
        xs = [w * shift for w, _ in series]
        ys = [s["mean"] for _, s in series]
        below = [s["mean"] - s["low"] for _, s in series]
        above = [s["high"] - s["mean"] for _, s in series]
        style = {"linewidth": 2.5, "zorder": 3} if name.endswith("+srs") else {"linewidth": 1.4}
        ax.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, label=name, **style)
    if base_reward is not None:
        ax.axhline(base_reward["mean"], color="grey", linestyle="--", label="base")
    ax.set_xscale("log", base=2)
    weights = sorted({w for series in groups.values() for w, _ in series})
    ax.set_xticks(weights)
    ax.set_xticklabels([f"{w:g}" for w in weights])
    ax.minorticks_off()
    ax.set_xlabel("guidance weight λ")
    ax.set_ylabel("mean steering reward (95 % CI)")
    ax.set_title("Steering reward against λ by shaping scheme")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    left = [
        *([f"perturbed runs ({_named(perturbed)})"] if perturbed else []),
        *([f"methods with one λ only ({_named(single)})"] if single else []),
        *([f"points without a steering reward ({_named(no_reward)})"] if no_reward else []),
    ]
    caption = "Unperturbed runs of each method and shaping with two or more λ values. " + (
        f"Left out: {'; '.join(left)}." if left else "Nothing is left out."
    )
    _save(fig, path, caption)
    return Plot(path, caption)


def plot_win_tie(
    metrics: RunMetrics,
    path: Path,
    *,
    points: Sequence[str] | None = None,
    judges: Sequence[str] = JUDGE_SCORES,
) -> Plot | None:
    """Win-tie bars: one panel per judge, configurations on the x axis, a bar per baseline.

    By default the configurations are :func:`focus_points`; the caption names the ones
    the win-tie table shows and the plot does not.
    """
    wanted = list(points) if points is not None else focus_points(metrics)
    labels = _labels(metrics)
    baselines = [b["name"] for b in metrics.baselines if b["points"]]
    index = {(w["point"], w["baseline"], w["judge"]): w["win_tie"] for w in metrics.win_tie}
    judges = [j for j in judges if any(w["judge"] == j for w in metrics.win_tie)]
    wanted = [p for p in wanted if any(k[0] == p for k in index)]
    if not (wanted and baselines and judges):
        return None
    height = 2.8 * len(judges) + 0.8
    fig = new_figure(max(7.0, 1.1 * len(wanted) + 3), height)
    axes = fig.subplots(len(judges), 1, squeeze=False)
    width = 0.8 / len(baselines)
    for ax, judge in zip(axes[:, 0], judges, strict=True):
        for j, baseline in enumerate(baselines):
            xs = [i + (j - (len(baselines) - 1) / 2) * width for i in range(len(wanted))]
            ys = [100 * index.get((p, baseline, judge), float("nan")) for p in wanted]
            ax.bar(xs, ys, width=width, label=f"vs {baseline}")
        ax.axhline(50, color="black", linewidth=0.8, linestyle="--")
        ax.set_ylim(0, 100)
        ax.set_ylabel("win-tie %")
        ax.set_title(f"judge: {SCORE_TITLES.get(judge, judge)}", fontsize=10)
        ax.set_xticks(range(len(wanted)))
        ax.set_xticklabels([labels[p] for p in wanted], rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, ncol=min(6, len(baselines)), loc="upper center")
    compared = {k[0] for k in index}
    left = [labels[p] for p in labels if p in compared and p not in wanted]
    srs_only = points is None and bool(_srs_points(metrics))
    shown = "the SRS configurations" if srs_only else "the chosen configurations"
    caption = f"Win-tie of {shown} against each baseline. " + (
        f"Left out (they are in the win-tie table): {_named(left)}." if left else ""
    )
    # Leave ~0.4 inch at the top for the shared legend.
    _save(fig, path, caption.strip(), top=1 - 0.4 / height)
    return Plot(path, caption.strip())


def plot_frontier(metrics: RunMetrics, path: Path) -> Plot | None:
    """Mean steering reward against mean seconds per prompt, with the Pareto frontier.

    Points are coloured by method; only the frontier's points are labelled, since a grid
    of token-level configurations of similar cost would otherwise bury the labels.
    """
    pts = [
        (p["cost"]["seconds"], p["scores"]["reward"]["mean"], p["label"], p["knobs"]["method"])
        for p in metrics.points
        if "reward" in p["scores"]
    ]
    if not pts:
        return None
    fig = new_figure(7.5, 4.8)
    ax = fig.subplots()
    for method in dict.fromkeys(m for *_, m in pts):
        mine = [(x, y) for x, y, _, m in pts if m == method]
        ax.scatter([x for x, _ in mine], [y for _, y in mine], zorder=3, label=method)
    # Pareto frontier: sorted by cost, keep each point that beats every cheaper one.
    frontier = []
    best = float("-inf")
    for x, y, label, _ in sorted(pts):
        if y > best:
            frontier.append((x, y, label))
            best = y
    ax.step(
        [x for x, _, _ in frontier],
        [y for _, y, _ in frontier],
        where="post",
        color="tab:red",
        alpha=0.5,
        label="frontier",
    )
    for x, y, label in frontier:
        ax.annotate(label, (x, y), fontsize=7, xytext=(4, -10), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("mean wall time per prompt (s, log scale)")
    ax.set_ylabel("mean steering reward")
    ax.set_title("Reward / cost (labelled: the Pareto frontier)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    no_reward = [p["label"] for p in metrics.points if "reward" not in p["scores"]]
    caption = "Every configuration with a steering reward; only the frontier is labelled." + (
        f" Left out (no steering reward): {_named(no_reward)}." if no_reward else ""
    )
    _save(fig, path, caption)
    return Plot(path, caption)


@dataclass
class Report:
    """What :func:`write_report` wrote; ``metrics`` says what it read (``run_file``,
    ``judge_cache``)."""

    markdown: Path
    metrics_json: Path
    figures: list[Plot] = field(default_factory=list)
    metrics: RunMetrics | None = None


def _relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


def plot_all(metrics: RunMetrics, figures_dir: Path) -> list[Plot]:
    """Reward vs λ, win-tie and reward vs cost PNGs in `figures_dir`: the ones that apply."""
    drawn = (
        plot_reward_vs_weight(metrics, figures_dir / "reward_vs_lambda.png"),
        plot_win_tie(metrics, figures_dir / "win_tie.png"),
        plot_frontier(metrics, figures_dir / "reward_cost.png"),
    )
    return [f for f in drawn if f is not None]


def figures_md(figures: Sequence[Plot], md_dir: Path) -> str:
    """Markdown image links to the figures (relative to the Markdown file's folder), each
    followed by its caption."""
    return "".join(
        f"![{f.path.stem}]({_relative(f.path, md_dir)})\n\n_{f.caption}_\n\n" for f in figures
    )


def write_report(
    run_path: str | Path,
    *,
    output: str | Path | None = None,
    figures_dir: str | Path | None = None,
    baselines: Sequence[str] | None = None,
    device: str = "cpu",
    metrics: RunMetrics | None = None,
) -> Report:
    """Write ``RUN.md`` (or ``output``) and PNG plots (in ``figures_dir``, default
    ``RUN_figures/``) for a run file; also saves the metrics as ``RUN.metrics.json``.

    The run file may be partial (a run still going, or interrupted): the report covers
    the rows it holds and lists the configurations without results.
    """
    run = Path(run_path)
    if metrics is None:
        metrics = compute_metrics(run, baselines=baselines, device=device)
    md = Path(output) if output is not None else run.with_suffix(".md")
    figs = Path(figures_dir) if figures_dir is not None else run.with_name(run.stem + "_figures")
    figs.mkdir(parents=True, exist_ok=True)
    md.parent.mkdir(parents=True, exist_ok=True)
    metrics_json = run.with_name(run.name + ".metrics.json")
    metrics_json.write_text(json.dumps(metrics.to_dict(), indent=1, default=list), encoding="utf-8")
    written = plot_all(metrics, figs)
    parts = [
        f"# Evaluation of `{run.name}`\n\n",
        f"Read from `{Path(metrics.run_file).name}` ({metrics.rows} rows) and its judge "
        f"cache `{Path(metrics.judge_cache).name}`. Config hash `{metrics.config_hash}`, "
        f"{metrics.prompts} prompts, {len(metrics.points)} configurations with results. "
        "Scores are means with 95 % percentile-bootstrap intervals; costs are means per "
        "prompt.\n\n",
        metrics_table_md(metrics),
        "\n## Win-tie rates against the baselines\n\n",
        "Win-tie = (wins + ties) / prompts on the same prompts; each configuration is "
        "compared with the baseline point that differs from it in the fewest knobs.\n\n",
        win_tie_table_md(metrics),
    ]
    if metrics.skipped or metrics.missing:
        parts.append("\n## Configurations without results\n\n")
        for pid in metrics.missing:
            parts.append(f"- `{pid}`: {metrics.skipped.get(pid, 'not run yet')}\n")
    parts += ["\n## Figures\n\n", figures_md(written, md.parent)]
    md.write_text("".join(parts), encoding="utf-8")
    return Report(md, metrics_json, written, metrics)
