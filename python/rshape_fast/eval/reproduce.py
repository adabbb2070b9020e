"""`rshape reproduce`: regenerate ``docs/reproduction.md`` and its figures from scratch.

Three parts (the brief of the reproduction report):

1. the paper's toy example computed with the package (:mod:`rshape_fast.eval.toy`);
2. a grid on the default models and bundled test prompts: base, ARGS with every shaping
   scheme at the paper's defaults (k = 10, λ = 0.5, B = 12, α = 1.5, greedy), a λ sweep,
   and every other method of ``rshape_fast.decoding.registry.METHODS`` that runs from
   knobs alone;
3. robustness: ARGS (raw) against SRS-ARGS under noisy, random and reversed rewards.

The grid is an ordinary :class:`~rshape_fast.eval.grid.EvalConfig` run by
:func:`~rshape_fast.eval.run_loop.run_eval` (so an interrupted reproduction resumes with
``--resume``), and every sentence that states a result is generated from the numbers.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rshape_fast.eval.claims import HELD_OUT, PERTURBATIONS, claims_section, robustness_section
from rshape_fast.eval.grid import EvalConfig
from rshape_fast.eval.report import (
    Plot,
    figures_md,
    metrics_table_md,
    new_figure,
    plot_all,
    win_tie_table_md,
)
from rshape_fast.eval.run_file import read_run
from rshape_fast.eval.run_loop import run_eval
from rshape_fast.eval.run_metrics import RunMetrics, compute_metrics
from rshape_fast.eval.toy import ToyExample, toy_example

__all__ = ["PAPER_DEFAULTS", "reproduce", "reproduction_config"]

PAPER_DEFAULTS: dict[str, Any] = {
    "method": "args",
    "shaping": "srs",
    "k": 10,
    "weight": 0.5,
    "bound": 12.0,
    "alpha": 1.5,
    "greedy": True,
    "batch_size": 8,
    "seed": 0,
}
"""SRS-ARGS at the paper's token-level defaults (docs/algorithms.md)."""

ALL_SHAPINGS = ("raw", "srs", "minmax", "meanstd", "meansoft", "cap")
SWEEP_SHAPINGS = ("raw", "srs", "minmax", "meanstd")
# Sequence-level methods sample; N is kept small so the whole report fits a CPU budget.
SEQUENCE_KNOBS: dict[str, Any] = {"greedy": False, "temperature": 0.7, "top_p": 0.9, "n": 4}
# Methods that cannot run from knobs alone (cd needs a value head trained beforehand).
NEEDS_SETUP = {"cd": "needs a value head trained by `rshape cd-train`"}


def reproduction_config(
    *, prompts: int, max_new_tokens: int, weights: Sequence[float], methods: Sequence[str]
) -> EvalConfig:
    """The grid of the reproduction: see the module docstring."""
    base = {**PAPER_DEFAULTS, "max_new_tokens": max_new_tokens}
    default_weight = PAPER_DEFAULTS["weight"]
    grid: list[dict[str, list[Any]]] = [
        {"method": ["base"]},
        {"method": ["args"], "shaping": list(ALL_SHAPINGS), "weight": [default_weight]},
    ]
    sweep = [float(w) for w in weights if float(w) != default_weight]
    if sweep:
        grid.append({"method": ["args"], "shaping": list(SWEEP_SHAPINGS), "weight": sweep})
    grid.append(
        {"method": ["args"], "shaping": ["raw", "srs"], "perturbation": list(PERTURBATIONS)}
    )
    for method in methods:
        grid.append({"method": [method], **{k: [v] for k, v in SEQUENCE_KNOBS.items()}})
    baselines = ["method=base", *(f"method=args,shaping={s}" for s in ALL_SHAPINGS if s != "srs")]
    return EvalConfig(base=base, grid=grid, split="test", limit=prompts, baselines=baselines)


# --------------------------------------------------------------------------- helpers


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


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


# --------------------------------------------------------------------------- entry point


def reproduce(
    *,
    prompts: int = 16,
    max_new_tokens: int = 48,
    weights: Sequence[float] = (0.25, 0.5, 1.0),
    output: Path = Path("docs/reproduction.md"),
    figures_dir: Path = Path("docs/figures"),
    run_path: Path = Path("runs/reproduction.jsonl"),
    resume: bool = False,
    report_only: bool = False,
    device: str = "cpu",
    progress: bool = True,
    lm: Any = None,
    rm: Any = None,
    methods: Sequence[str] | None = None,
) -> Path:
    """Run the reproduction and write the report; returns the report's path.

    Args:
        prompts, max_new_tokens: bundled test prompts and tokens per response.
        weights: the λ sweep (the default λ = 0.5 is always in the grid).
        output, figures_dir, run_path: where the report, its PNGs and the run file go.
        resume: continue an interrupted run file instead of starting over.
        report_only: decode nothing; render the report from the run file as it is (a
            partial run is reported as partial, with the missing configurations listed).
        lm, rm: model objects to use instead of the defaults (tests pass small ones).
        methods: sequence-level methods to include; default every method of the
            registry's ``METHODS`` other than base, ARGS and those needing setup
            (``NEEDS_SETUP``).
    """
    from rshape_fast.decoding.registry import METHODS

    started = time.perf_counter()
    output = Path(output)
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    md_dir = output.parent

    toy = toy_example()
    toy_text = _toy_section(toy, figures_dir / "toy_soft_curve.png", md_dir)

    if methods is None and report_only and Path(run_path).is_file():
        # Render what the run file was made with, not what the registry holds today.
        header = read_run(run_path).header or {}
        made_with = [p["knobs"]["method"] for p in header.get("points", [])]
        methods = [m for m in dict.fromkeys(made_with) if m not in ("base", "args")]
    if methods is None:
        methods = [m for m in METHODS if m not in ("base", "args") and m not in NEEDS_SETUP]
    not_run = {
        m: NEEDS_SETUP.get(m, "not selected for this run")
        for m in METHODS
        if m not in ("base", "args") and m not in methods
    }
    config = reproduction_config(
        prompts=prompts, max_new_tokens=max_new_tokens, weights=weights, methods=methods
    )
    run_path = Path(run_path)
    if report_only:
        run = read_run(run_path)
        expected = len((run.header or {}).get("points", [])) * len(
            (run.header or {}).get("prompt_ids", [])
        )
        decoding_text = (
            f"decoding skipped (`--report-only`: rendered from the run file, which holds "
            f"{len(run.rows)} of {expected} generations"
            + ("" if len(run.rows) >= expected else "; **the run is incomplete**")
            + ")"
        )
    else:
        if not resume:
            # From scratch: old rows and judge scores would make the timing meaningless.
            for stale in (run_path, run_path.with_name(run_path.name + ".judges.json")):
                stale.unlink(missing_ok=True)
        summary = run_eval(
            config,
            run_path,
            lm=lm,
            rm=rm,
            restart=not resume,
            device=device,
            progress=progress,
            keep_going=True,
        )
        for point_id, reason in summary.skipped.items():
            not_run[point_id] = reason
        decoding_text = (
            f"decoding {_duration(time.perf_counter() - started)} ({summary.generated} "
            f"responses generated, {summary.reused} reused from an earlier interrupted run)"
        )
    decoded = time.perf_counter()
    metrics = compute_metrics(run_path, device=device)
    scored = time.perf_counter()

    figures = plot_all(metrics, figures_dir)
    claims, verdicts = claims_section(metrics, PAPER_DEFAULTS["weight"])
    robustness = robustness_section(
        metrics, PAPER_DEFAULTS["weight"], figures_dir / "robustness.png", md_dir
    )
    default_ids = [
        p["id"]
        for p in metrics.points
        if p["knobs"]["perturbation"] == "none"
        and (p["knobs"]["weight"] == PAPER_DEFAULTS["weight"] or p["knobs"]["method"] != "args")
    ]
    srs_ids = [
        p["id"]
        for p in metrics.points
        if p["knobs"]["method"] == "args" and p["knobs"]["shaping"] == "srs"
    ]
    row_seconds = sum(p["cost"]["seconds"] * p["n"] for p in metrics.points)
    elapsed = time.perf_counter() - started
    threads = _torch_threads()

    parts = [
        "# Reproduction report\n\n",
        "_Generated by `rshape reproduce "
        f"--prompts {prompts} --max-new-tokens {max_new_tokens} "
        f"--weights {','.join(f'{w:g}' for w in weights)}"
        f"{' --resume' if resume else ''}{' --report-only' if report_only else ''}`; "
        "every number and every verdict below is computed "
        "by that command — edit the code, not this file._\n\n",
        f"**Run time: {_duration(elapsed)}** in total on {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}, torch threads: {threads}): "
        f"{decoding_text}, judges and metrics "
        f"{_duration(scored - decoded)}. Summed decoding time recorded in the rows: "
        f"{_duration(row_seconds)}.\n\n",
        "## Summary\n\n",
        "".join(f"- {v}\n" for v in verdicts)
        or "- No claim can be checked yet: SRS-ARGS at the default λ has no results.\n",
        "\n## Settings\n\n",
        f"- Models: LM `{config.lm}`, steering reward `{config.rm}`; held-out "
        "judges VADER compound and MiniLM positive-vs-negative anchors, coherence = MiniLM "
        "cosine(prompt, response), diversity = Π_{n=2..4} distinct n-gram ratio.\n",
        f"- Prompts: the first {metrics.prompts} prompts of the bundled test split; "
        f"{max_new_tokens} new tokens at most per response (the paper uses 128).\n",
        "- Token level (ARGS family): "
        + ", ".join(f"{k} = {v}" for k, v in PAPER_DEFAULTS.items() if k not in ("method",))
        + f"; λ sweep {', '.join(f'{w:g}' for w in weights)}.\n",
        "- Sequence-level methods: "
        + ", ".join(f"{k} = {v}" for k, v in SEQUENCE_KNOBS.items())
        + f" (run: {', '.join(methods) if methods else 'none'}).\n",
        "- Intervals are 95 % percentile bootstrap (2000 resamples, seed 0); win-tie = "
        "(wins + ties) / prompts, each configuration against the baseline point that differs "
        "from it in the fewest knobs.\n",
        f"- Run file `{run_path}`, config hash `{metrics.config_hash}`.\n\n",
        toy_text,
        "\n## 2. Decoding on the bundled test prompts\n\n",
        f"### At the paper's defaults (λ = {PAPER_DEFAULTS['weight']:g})\n\n",
        metrics_table_md(_subset(metrics, default_ids)),
        "\n### Win-tie of SRS-ARGS against each baseline\n\n",
        win_tie_table_md(metrics, points=srs_ids, judges=(*HELD_OUT, "reward")),
        "\n",
        figures_md(figures, md_dir),
        claims,
        robustness,
    ]
    for point_id in metrics.missing:
        # compute_metrics keeps only the skip reasons of points that never got rows.
        not_run.setdefault(point_id, metrics.skipped.get(point_id, "no results in the file yet"))
    if not_run:
        parts.append("\n## Methods and configurations not run\n\n")
        parts += [f"- `{name}`: {reason}\n" for name, reason in not_run.items()]
    parts += ["\n## All configurations\n\n", metrics_table_md(metrics)]
    output.write_text("".join(parts), encoding="utf-8")
    return output


def _subset(metrics: RunMetrics, ids: Sequence[str]) -> RunMetrics:
    keep = set(ids)
    return replace(
        metrics,
        points=[p for p in metrics.points if p["id"] in keep],
        win_tie=[w for w in metrics.win_tie if w["point"] in keep],
        values={k: v for k, v in metrics.values.items() if k in keep},
    )


def _torch_threads() -> str:
    try:
        import torch
    except ImportError:  # pragma: no cover - the models extra brings torch
        return "n/a"
    return str(torch.get_num_threads())
