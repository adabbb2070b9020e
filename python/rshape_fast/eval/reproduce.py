"""`rshape reproduce`: the paper's protocol, run on the bundled prompts; regenerates
``docs/reproduction.md`` and its figures.

For each *suite* (a steering reward model: the sentiment judge, the conversation-format chat
judge, and an ensemble of the two), three stages, each an ordinary
:class:`~rshape_fast.eval.grid.EvalConfig` run by
:func:`~rshape_fast.eval.run_loop.run_eval` into its own run file (so any part of the
reproduction resumes where it stopped):

1. **sweep**: vanilla ARGS (raw reward) over a λ grid on a balanced subset of the *train*
   split; λ* is the best steering reward before the held-out judges fall
   (:func:`choose_weight`);
2. **test**: base and ARGS with each of the suite's shaping schemes at λ*, at the paper's
   α and B, with and without ``reward_scale="auto"``, on the *test* split;
3. **extras** (the suites that have them): robustness to perturbed rewards, the
   sequence-level methods, and controlled decoding with three value heads (raw targets,
   SRS targets, SRS targets on the calibrated reward).

The report is generated from the run files: every number and every verdict comes from the
rows. Stages run breadth first (every suite's sweep and test before any extras), so a run
cut short still holds the comparisons that decide.
"""

from __future__ import annotations

import os
import platform
import time
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
    CD_HEADS,
    CD_SAMPLES,
    HELD_OUT,
    MAX_NEW_TOKENS,
    PAPER_DEFAULTS,
    RM_DTYPE,
    SEQUENCE_KNOBS,
    SUITES,
    SWEEP_PROMPTS,
    SWEEP_WEIGHTS,
    TEST_PROMPTS,
    Suite,
    WeightChoice,
    choose_weight,
    extras_config,
    schemes_config,
    sweep_config,
    train_prompt_ids,
)
from rshape_fast.eval.report import Plot, figures_md, format_ci, metrics_table_md, new_figure
from rshape_fast.eval.run_file import read_run
from rshape_fast.eval.run_loop import is_distributed, run_eval
from rshape_fast.eval.run_metrics import RunMetrics, compute_metrics
from rshape_fast.eval.toy import ToyExample, toy_example

__all__ = ["reproduce"]

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
class _Stage:
    """What the report knows of one run file."""

    path: Path
    metrics: RunMetrics | None
    expected: int

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


def _stage(path: Path, expected: int, device: str) -> _Stage:
    if not path.is_file() or not read_run(path).rows:
        return _Stage(path, None, expected)
    return _Stage(path, _relabel(compute_metrics(path, device=device)), expected)


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
    suite: Suite, stage: _Stage, choice: WeightChoice | None, figure: Path, md_dir: Path
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
    suite: Suite, stage: _Stage, weight: float | None, figure: Path, md_dir: Path
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


def _extras_section(stage: _Stage, md_dir: Path) -> str:
    head = f"### Robustness, sequence-level methods and CD at λ* ({stage.status})\n\n"
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


def reproduce(
    *,
    suites: Sequence[str] = tuple(SUITES),
    prompts: int = TEST_PROMPTS,
    max_new_tokens: int = MAX_NEW_TOKENS,
    weights: Sequence[float] = SWEEP_WEIGHTS,
    sweep_prompts: int = SWEEP_PROMPTS,
    rm_dtype: str | None = RM_DTYPE,
    extras: bool = True,
    cd_prompts: int | None = None,
    output: Path = Path("docs/reproduction.md"),
    figures_dir: Path = Path("docs/figures"),
    run_dir: Path = Path("runs/reproduce"),
    report_only: bool = False,
    device: str = "cpu",
    progress: bool = True,
    workers: int | None = None,
    address: str | None = None,
    lm: Any = None,
    rm: dict[str, Any] | None = None,
) -> Path:
    """Run the protocol (resuming whatever the run files already hold) and write the
    report; returns the report's path.

    Args:
        suites: names of :data:`SUITES` to run, in this order.
        prompts, max_new_tokens: test prompts (the first ones of the bundled test split)
            and the response cap.
        weights, sweep_prompts: the λ grid and the number of train prompts of the sweep.
        rm_dtype: the reward models' dtype (the LM stays float32; README, "Speed").
        extras: run the extras stage of the suites that have one.
        cd_prompts: train prompts the CD data is collected on (None: the whole split).
        output, figures_dir, run_dir: the report, its PNGs, and the folder of the run
            files (``RUN_DIR/SUITE/{sweep,test,extras}.jsonl`` and ``cd/``).
        report_only: decode nothing; render the report from the run files as they are.
        workers, address: decode the sweep, test and extras grids on Ray workers, as
            :func:`~rshape_fast.eval.run_loop.run_eval` does (CD data and heads are made
            in this process). Each worker estimates an `"auto"` scale itself; every row
            records the scale it was decoded with.
        lm, rm: model objects instead of the defaults (tests pass small ones); `rm` maps a
            suite name to its reward model (a list for an ensemble).
    """
    started = time.perf_counter()
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        from rshape_fast.errors import ParameterError

        raise ParameterError(f"suites: unknown suite {unknown[0]!r}; one of {list(SUITES)}")
    output, figures_dir, run_dir = Path(output), Path(figures_dir), Path(run_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    md_dir = output.parent
    chosen = [SUITES[s] for s in suites]
    distributed = is_distributed(workers, address)
    sweep_ids = train_prompt_ids(sweep_prompts)
    models: dict[str, tuple[Any, Any]] = {}

    def models_for(suite: Suite, config: EvalConfig) -> tuple[Any, Any]:
        # One load per suite: the "auto" scale is then estimated once for all its stages.
        if suite.name not in models:
            from rshape_fast.eval.tasks import load_models

            given = None if rm is None else rm.get(suite.name)
            models[suite.name] = load_models(config, device, lm=lm, rm=given)
        return models[suite.name]

    def run(suite: Suite, config: EvalConfig, path: Path) -> None:
        if distributed:
            # Workers load the models the config names; run_eval refuses model objects.
            suite_lm, suite_rm = lm, None if rm is None else rm.get(suite.name)
        else:
            suite_lm, suite_rm = models_for(suite, config)
        path.parent.mkdir(parents=True, exist_ok=True)
        run_eval(
            config,
            path,
            lm=suite_lm,
            rm=suite_rm,
            device=device,
            progress=progress,
            keep_going=True,
            workers=workers,
            address=address,
        )

    def sweep_of(suite: Suite) -> _Stage:
        config = sweep_config(
            suite,
            prompt_ids=sweep_ids,
            max_new_tokens=max_new_tokens,
            weights=weights,
            rm_dtype=rm_dtype,
        )
        path = run_dir / suite.name / "sweep.jsonl"
        if not report_only:
            run(suite, config, path)
        return _stage(path, _expected(config), device)

    def test_of(suite: Suite, weight: float) -> EvalConfig:
        return schemes_config(
            suite,
            weight=weight,
            prompts=prompts,
            max_new_tokens=max_new_tokens,
            rm_dtype=rm_dtype,
        )

    # The sweep's metrics pick λ* and are reported: read once.
    sweeps: dict[str, _Stage] = {}
    choices: dict[str, WeightChoice | None] = {}
    for suite in chosen:
        sweep = sweeps[suite.name] = sweep_of(suite)
        choice = choices[suite.name] = (
            None if sweep.metrics is None else choose_weight(sweep.metrics)
        )
        if choice is not None and not report_only:
            run(suite, test_of(suite, choice.weight), run_dir / suite.name / "test.jsonl")
    extra_configs: dict[str, EvalConfig] = {}
    for suite in chosen:
        choice = choices[suite.name]
        if not (extras and suite.extras and choice is not None):
            continue
        heads = [str(run_dir / suite.name / "cd" / name) for name, _, _ in CD_HEADS]
        config = extras_config(
            suite,
            weight=choice.weight,
            prompts=prompts,
            max_new_tokens=max_new_tokens,
            rm_dtype=rm_dtype,
            value_heads=heads,
        )
        extra_configs[suite.name] = config
        if not report_only:
            _train_heads(
                suite,
                config,
                run_dir / suite.name / "cd",
                models_for(suite, config),
                max_new_tokens=max_new_tokens,
                prompts=cd_prompts,
                progress=progress,
            )
            run(suite, config, run_dir / suite.name / "extras.jsonl")
    decoded = time.perf_counter()

    sections: list[str] = []
    summary: list[tuple[str, list[tuple[str, str]]]] = []
    for suite in chosen:
        choice, sweep = choices[suite.name], sweeps[suite.name]
        weight = None if choice is None else choice.weight
        test = (
            _Stage(run_dir / suite.name / "test.jsonl", None, 0)
            if weight is None
            else _stage(
                run_dir / suite.name / "test.jsonl", _expected(test_of(suite, weight)), device
            )
        )
        extra = (
            _stage(
                run_dir / suite.name / "extras.jsonl", _expected(extra_configs[suite.name]), device
            )
            if suite.name in extra_configs
            else None
        )
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
                    with_cd=suite.name in extra_configs,
                ),
            )
        )
    elapsed = time.perf_counter() - started

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
    command = (
        f"rshape reproduce --suites {','.join(suites)} --prompts {prompts} "
        f"--max-new-tokens {max_new_tokens} --weights {','.join(f'{w:g}' for w in weights)} "
        f"--sweep-prompts {sweep_prompts} --rm-dtype {rm_dtype}"
        + ("" if extras else " --no-extras")
        + (" --report-only" if report_only else "")
    )
    parts = [
        "# Reproduction report\n\n",
        f"_Generated by `{command}`; every number and verdict below is computed from the "
        f"run files in `{run_dir}` by that command — edit the code, not this file._\n\n",
        f"This invocation took {_duration(elapsed)} on {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}, torch threads: {_torch_threads()}), "
        f"{_duration(decoded - started)} of it decoding what the run files did not hold yet. "
        "The cost columns are per-prompt means recorded while each row was generated.\n\n",
        "## Summary\n\n",
        "Each verdict is a paired difference over the same prompts with its 95 % bootstrap "
        "interval: *holds* when the interval is above 0, **reversed** when it is below, "
        "*undecided* when it contains 0.\n\n",
        table,
        "\n## Protocol\n\n",
        f"- LM `{DEFAULT_LM}` (float32); reward models in {rm_dtype or 'float32'}; held-out "
        "judges VADER compound and MiniLM positive-vs-negative anchors; coherence = MiniLM "
        "cosine(prompt, response); diversity = Π_{n=2..4} distinct n-gram ratio.\n",
        f"- λ*: vanilla ARGS swept over λ ∈ {{{', '.join(f'{w:g}' for w in weights)}}} on "
        f"{len(sweep_ids)} train prompts (the same number of each kind); walking λ "
        "upwards, the sweep stops at the first λ where every held-out judge is below its "
        "value at the λ before, and λ* is the best steering reward before it.\n",
        f"- Test: the first {prompts} prompts of the bundled test split, at most "
        f"{max_new_tokens} new tokens (the paper uses 128). Token level: "
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


def _train_heads(
    suite: Suite,
    config: EvalConfig,
    folder: Path,
    models: tuple[Any, Any],
    *,
    max_new_tokens: int,
    prompts: int | None,
    progress: bool,
) -> None:
    """Collect the CD data (resumable) and train the heads of :data:`CD_HEADS` not yet
    saved; the calibrated head uses the decoders' own `"auto"` scale."""
    from rshape_fast.cd.data import CDDataConfig, collect
    from rshape_fast.cd.train import TrainConfig, train_value_head
    from rshape_fast.decoding.calibration import resolve_reward_scale
    from rshape_fast.decoding.options import DecodingOptions
    from rshape_fast.prompts import load_prompts

    lm, rm = models
    data = folder / "data"
    rm_name = suite.rm if isinstance(suite.rm, str) else "+".join(suite.rm)
    data_config = CDDataConfig(
        lm=config.lm, rm=rm_name, samples=CD_SAMPLES, max_new_tokens=max_new_tokens
    )
    train = [(p.id, p.text) for p in load_prompts(split="train", limit=prompts)]
    collect(data, train, lm=lm, rm=rm, config=data_config, progress=progress)
    scale = resolve_reward_scale(DecodingOptions(reward_scale="auto"), lm, rm)
    for name, shaping, calibrated in CD_HEADS:
        out = folder / name
        if (out / "config.json").is_file():
            continue
        train_config = TrainConfig(shaping=shaping, reward_scale=scale if calibrated else None)
        train_value_head(data, out, train_config, progress=progress)


def _torch_threads() -> str:
    try:
        import torch
    except ImportError:  # pragma: no cover - the models extra brings torch
        return "n/a"
    return str(torch.get_num_threads())
