"""What `rshape reproduce` runs: the suites, their grids and the choice of λ*.

Kept free of torch and matplotlib, so that `rshape reproduce --help` can show these
defaults instantly; :mod:`rshape_fast.eval.reproduce` runs the stages and writes the report.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rshape_fast.decoding.options import PERTURBATIONS
from rshape_fast.decoding.registry import SEQUENCE_LEVEL, UNSHAPED
from rshape_fast.eval.grid import DEFAULT_JUDGES, EvalConfig

__all__ = [
    "HELD_OUT",
    "MAX_NEW_TOKENS",
    "PAPER_DEFAULTS",
    "RM_DTYPE",
    "RUN_DIR",
    "SUITES",
    "SWEEP_PROMPTS",
    "SWEEP_WEIGHTS",
    "TEST_PROMPTS",
    "ReproductionPlan",
    "Suite",
    "WeightChoice",
    "choose_weight",
    "extras_config",
    "schemes_config",
    "sweep_config",
    "train_prompt_ids",
]

HELD_OUT = DEFAULT_JUDGES
PERTURBED = tuple(p for p in PERTURBATIONS if p != "none")
TEST_PROMPTS = 84
MAX_NEW_TOKENS = 48
# float32: bf16 pays only on CPUs with AMX; with AVX-512 BF16 alone (this machine) an
# ARGS step took 1.4x as long (docs/performance.md).
RM_DTYPE = "float32"

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
# Min-max and mean-std normalise away any affine change of the reward, so calibration
# cannot change their tokens (tests/test_calibration.py): one run stands for both.
SCALE_FREE = ("minmax", "meanstd")
SCALINGS: tuple[str | None, ...] = (None, "auto")
# Up to 8: on the sentiment judge λ* was the top of an earlier grid that stopped at 2.
SWEEP_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SWEEP_PROMPTS = 24
# Sequence-level methods sample; N is kept small so the whole report fits a CPU budget.
SEQUENCE_KNOBS: dict[str, Any] = {"greedy": False, "temperature": 0.7, "top_p": 0.9, "n": 4}
# Value heads of the CD comparison: (name, target shaping, calibrated targets).
CD_HEADS = (("raw", "raw", False), ("srs", "srs", False), ("srs-auto", "srs", True))
CD_SAMPLES = 10
# Tracked in git (results/, unlike runs/), so that a run a session could not finish resumes
# in the next one from the committed rows.
RUN_DIR = Path("results/reproduce")


@dataclass(frozen=True)
class Suite:
    """One steering reward model and what the reproduction runs with it.

    The chat judge costs 3–4× the sentiment judge per step and the ensemble both, so those
    two suites run the schemes that decide (raw and SRS, each with and without
    calibration); only the sentiment suite runs every scheme and the extras.
    """

    name: str
    rm: str | tuple[str, ...]
    title: str
    shapings: tuple[str, ...]
    ensemble: str = "mean"
    extras: bool = False

    @property
    def rm_config(self) -> str | list[str]:
        """The `rm` of the suite's EvalConfigs (a list is an ensemble)."""
        return self.rm if isinstance(self.rm, str) else list(self.rm)


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("sentiment", "smollm2-sentiment", "sentiment judge", ALL_SHAPINGS, extras=True),
        Suite(
            "chat-judge", "smollm2-chat-judge", "chat judge (conversation format)", ("raw", "srs")
        ),
        Suite(
            "ensemble",
            ("smollm2-sentiment", "smollm2-chat-judge"),
            "ensemble: mean of the sentiment and chat judges",
            ("raw", "srs"),
        ),
    )
}
"""The suites, in the order they run."""


# --------------------------------------------------------------------------- configs


def train_prompt_ids(count: int = SWEEP_PROMPTS, prompts_file: str | None = None) -> list[str]:
    """The first `count / kinds` train prompts of each kind (the bundled file lists the
    kinds in blocks, so its first prompts would all be reviews)."""
    from rshape_fast.prompts import load_prompts

    prompts = load_prompts(prompts_file, split="train")
    kinds = list(dict.fromkeys(p.kind for p in prompts))
    per_kind = max(1, count // len(kinds))
    chosen = {p.id for kind in kinds for p in [q for q in prompts if q.kind == kind][:per_kind]}
    return [p.id for p in prompts if p.id in chosen]


def _base(suite: Suite, max_new_tokens: int, weight: float) -> dict[str, Any]:
    return {
        **PAPER_DEFAULTS,
        "max_new_tokens": max_new_tokens,
        "weight": weight,
        "ensemble": suite.ensemble,
    }


def sweep_config(
    suite: Suite,
    *,
    prompt_ids: Sequence[str],
    max_new_tokens: int,
    weights: Sequence[float],
    rm_dtype: str | None,
) -> EvalConfig:
    """Stage 1: vanilla ARGS over the λ grid on train prompts."""
    return EvalConfig(
        base=_base(suite, max_new_tokens, PAPER_DEFAULTS["weight"]),
        grid=[{"method": ["args"], "shaping": ["raw"], "weight": [float(w) for w in weights]}],
        split="train",
        prompt_ids=list(prompt_ids),
        rm=suite.rm_config,
        rm_dtype=rm_dtype,
    )


def schemes_config(
    suite: Suite, *, weight: float, prompts: int, max_new_tokens: int, rm_dtype: str | None
) -> EvalConfig:
    """Stage 2: base, and ARGS with each scheme at λ*, with and without calibration."""
    grid: list[dict[str, list[Any]]] = [{"method": ["base"]}]
    for shaping in suite.shapings:
        scalings = [None] if shaping in SCALE_FREE else list(SCALINGS)
        grid.append({"method": ["args"], "shaping": [shaping], "reward_scale": scalings})
    return _test_split(suite, grid, weight, prompts, max_new_tokens, rm_dtype)


def extras_config(
    suite: Suite,
    *,
    weight: float,
    prompts: int,
    max_new_tokens: int,
    rm_dtype: str | None,
    value_heads: Sequence[str],
) -> EvalConfig:
    """Stage 3: CD with each of `value_heads` (folders), raw and SRS (both scalings) under
    perturbed rewards, and the sequence-level methods, all at λ*.

    In that order, which a local run decodes one configuration after another: the CD heads
    are the part of the extras the reproduction must have, so a run cut short holds them
    first (a distributed run hands out the sequence-level methods first, see
    :func:`~rshape_fast.eval.tasks.plan_tasks`)."""
    grid: list[dict[str, list[Any]]] = [{"method": ["base"]}]
    if value_heads:
        grid.append({"method": ["cd"], "value_head": list(value_heads)})
    grid += [
        {"method": ["args"], "shaping": ["raw"], "perturbation": list(PERTURBED)},
        {
            "method": ["args"],
            "shaping": ["srs"],
            "reward_scale": list(SCALINGS),
            "perturbation": list(PERTURBED),
        },
    ]
    for method in SEQUENCE_LEVEL:
        scalings = [None] if method in UNSHAPED else list(SCALINGS)
        knobs = {k: [v] for k, v in SEQUENCE_KNOBS.items()}
        grid.append({"method": [method], "reward_scale": scalings, **knobs})
    return _test_split(suite, grid, weight, prompts, max_new_tokens, rm_dtype)


def _test_split(
    suite: Suite,
    grid: list[dict[str, list[Any]]],
    weight: float,
    prompts: int,
    max_new_tokens: int,
    rm_dtype: str | None,
) -> EvalConfig:
    return EvalConfig(
        base=_base(suite, max_new_tokens, weight),
        grid=grid,
        split="test",
        limit=prompts,
        rm=suite.rm_config,
        rm_dtype=rm_dtype,
    )


# --------------------------------------------------------------------------- λ*


@dataclass(frozen=True)
class WeightChoice:
    """λ* and the sweep it was read from: per λ, the mean steering reward and held-out
    judges (`rows`), and the first λ at which every held-out judge fell (`fell_at`)."""

    weight: float
    rows: list[dict[str, float]]
    fell_at: float | None

    @property
    def reason(self) -> str:
        """One sentence: why this λ."""
        if self.fell_at is None:
            where = "the held-out judges never both fall on this sweep"
        else:
            where = (
                f"at λ = {self.fell_at:g} every held-out judge falls below its value at the "
                "λ before"
            )
        return f"λ* = {self.weight:g}: the best steering reward before the fall; {where}."


def choose_weight(metrics: Any) -> WeightChoice:
    """λ* of a sweep: walk λ upwards and stop at the first λ where every held-out judge
    (VADER, MiniLM) is lower than at the λ before; λ* is the best mean steering reward
    among the λ before that one (all of them when the judges never fall)."""
    rows = sorted(
        (
            {"weight": float(p["knobs"]["weight"])}
            | {s: float(p["scores"][s]["mean"]) for s in ("reward", *HELD_OUT)}
            for p in metrics.points
            if p["knobs"]["method"] == "args" and all(s in p["scores"] for s in HELD_OUT)
        ),
        key=lambda r: r["weight"],
    )
    if not rows:
        raise ValueError("the sweep has no ARGS point with held-out judge scores")
    kept, fell_at = [rows[0]], None
    for before, row in itertools.pairwise(rows):
        if all(row[j] < before[j] for j in HELD_OUT):
            fell_at = row["weight"]
            break
        kept.append(row)
    best = max(kept, key=lambda r: r["reward"])
    return WeightChoice(best["weight"], rows, fell_at)


@dataclass(frozen=True)
class ReproductionPlan:
    """One `rshape reproduce` invocation's choices, and the configs and run files they
    give each suite's stages: what the stage runner runs and the report renders."""

    suites: tuple[str, ...] = tuple(SUITES)
    prompts: int = TEST_PROMPTS
    max_new_tokens: int = MAX_NEW_TOKENS
    weights: tuple[float, ...] = SWEEP_WEIGHTS
    sweep_prompts: int = SWEEP_PROMPTS
    rm_dtype: str | None = RM_DTYPE
    extras: bool = True
    run_dir: Path = RUN_DIR

    @property
    def chosen(self) -> list[Suite]:
        """The suites to run, in order."""
        return [SUITES[name] for name in self.suites]

    def path(self, suite: Suite, stage: str) -> Path:
        """The run file of a stage ("sweep", "test", "extras"): RUN_DIR/SUITE/STAGE.jsonl."""
        return self.run_dir / suite.name / f"{stage}.jsonl"

    def head_folders(self, suite: Suite) -> list[str]:
        """The value-head folders of :data:`CD_HEADS` (RUN_DIR/SUITE/cd/NAME)."""
        return [str(self.run_dir / suite.name / "cd" / name) for name, _, _ in CD_HEADS]

    def sweep(self, suite: Suite) -> EvalConfig:
        return sweep_config(
            suite,
            prompt_ids=train_prompt_ids(self.sweep_prompts),
            max_new_tokens=self.max_new_tokens,
            weights=self.weights,
            rm_dtype=self.rm_dtype,
        )

    def test(self, suite: Suite, weight: float) -> EvalConfig:
        return schemes_config(
            suite,
            weight=weight,
            prompts=self.prompts,
            max_new_tokens=self.max_new_tokens,
            rm_dtype=self.rm_dtype,
        )

    def has_extras(self, suite: Suite) -> bool:
        return self.extras and suite.extras

    def extras_of(self, suite: Suite, weight: float) -> EvalConfig:
        return extras_config(
            suite,
            weight=weight,
            prompts=self.prompts,
            max_new_tokens=self.max_new_tokens,
            rm_dtype=self.rm_dtype,
            value_heads=self.head_folders(suite),
        )

    def command(self, *, report_only: bool) -> str:
        """The `rshape reproduce` command line of this plan."""
        return (
            f"rshape reproduce --suites {','.join(self.suites)} --prompts {self.prompts} "
            f"--max-new-tokens {self.max_new_tokens} "
            f"--weights {','.join(f'{w:g}' for w in self.weights)} "
            f"--sweep-prompts {self.sweep_prompts} --rm-dtype {self.rm_dtype}"
            + ("" if self.extras else " --no-extras")
            + (" --report-only" if report_only else "")
        )
