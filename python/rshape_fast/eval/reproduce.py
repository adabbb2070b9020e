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
3. **extras** (the suites that have them): controlled decoding with three value heads
   (raw targets, SRS targets, SRS targets on the calibrated reward), robustness to
   perturbed rewards, and the sequence-level methods, in that order.

The report is generated from the run files: every number and every verdict comes from the
rows. Stages run breadth first (every suite's sweep and test before any extras), so a run
cut short still holds the comparisons that decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rshape_fast.errors import ParameterError
from rshape_fast.eval.grid import EvalConfig
from rshape_fast.eval.protocol import (
    CD_HEADS,
    CD_SAMPLES,
    MAX_NEW_TOKENS,
    RM_DTYPE,
    RUN_DIR,
    SUITES,
    SWEEP_PROMPTS,
    SWEEP_WEIGHTS,
    TEST_PROMPTS,
    ReproductionPlan,
    Suite,
    WeightChoice,
    choose_weight,
)
from rshape_fast.eval.reproduction_report import Stage, read_stage, render_report
from rshape_fast.eval.run_loop import is_distributed, run_eval

__all__ = ["reproduce"]


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
    run_dir: Path = RUN_DIR,
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
        rm_dtype: the reward models' dtype (the LM stays float32; docs/performance.md).
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
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ParameterError(f"suites: unknown suite {unknown[0]!r}; one of {list(SUITES)}")
    plan = ReproductionPlan(
        suites=tuple(suites),
        prompts=prompts,
        max_new_tokens=max_new_tokens,
        weights=tuple(weights),
        sweep_prompts=sweep_prompts,
        rm_dtype=rm_dtype,
        extras=extras,
        run_dir=Path(run_dir),
    )
    stages = _Stages(plan, device, lm, rm, workers, address, progress)
    # The sweep's metrics pick λ* and are reported: read once.
    sweeps: dict[str, Stage] = {}
    choices: dict[str, WeightChoice | None] = {}
    for suite in plan.chosen:
        config, path = plan.sweep(suite), plan.path(suite, "sweep")
        if not report_only:
            stages.run(suite, config, path)
        sweep = sweeps[suite.name] = read_stage(path, config, device)
        choice = choices[suite.name] = (
            None if sweep.metrics is None else choose_weight(sweep.metrics)
        )
        if choice is not None and not report_only:
            stages.run(suite, plan.test(suite, choice.weight), plan.path(suite, "test"))
    for suite in plan.chosen:
        choice = choices[suite.name]
        if report_only or choice is None or not plan.has_extras(suite):
            continue
        config = plan.extras_of(suite, choice.weight)
        _train_heads(
            suite,
            config,
            plan.run_dir / suite.name / "cd",
            stages.models_for(suite, config),
            max_new_tokens=max_new_tokens,
            prompts=cd_prompts,
            progress=progress,
        )
        stages.run(suite, config, plan.path(suite, "extras"))
    return render_report(
        plan,
        sweeps,
        choices,
        output=Path(output),
        figures_dir=Path(figures_dir),
        device=device,
        report_only=report_only,
    )


class _Stages:
    """Runs a stage's config into its run file: in this process with the suite's models
    (loaded once per suite, so the "auto" scale is estimated once for all its stages), or
    on Ray workers, which load the models the config names."""

    def __init__(
        self,
        plan: ReproductionPlan,
        device: str,
        lm: Any,
        rm: dict[str, Any] | None,
        workers: int | None,
        address: str | None,
        progress: bool,
    ) -> None:
        self.plan = plan
        self.device = device
        self.lm = lm
        self.rm = rm or {}
        self.workers = workers
        self.address = address
        self.progress = progress
        self.distributed = is_distributed(workers, address)
        self.models: dict[str, tuple[Any, Any]] = {}

    def models_for(self, suite: Suite, config: EvalConfig) -> tuple[Any, Any]:
        if suite.name not in self.models:
            from rshape_fast.eval.tasks import load_models

            given = self.rm.get(suite.name)
            self.models[suite.name] = load_models(config, self.device, lm=self.lm, rm=given)
        return self.models[suite.name]

    def run(self, suite: Suite, config: EvalConfig, path: Path) -> None:
        if self.distributed:
            # Workers load the models the config names; run_eval refuses model objects.
            lm, rm = self.lm, self.rm.get(suite.name)
        else:
            lm, rm = self.models_for(suite, config)
        path.parent.mkdir(parents=True, exist_ok=True)
        run_eval(
            config,
            path,
            lm=lm,
            rm=rm,
            device=self.device,
            progress=self.progress,
            keep_going=True,
            workers=self.workers,
            address=self.address,
        )


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
    missing = [head for head in CD_HEADS if not (folder / head[0] / "config.json").is_file()]
    if not missing:
        return  # the committed heads: a clean clone need not collect the data again
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
    for name, shaping, calibrated in missing:
        train_config = TrainConfig(shaping=shaping, reward_scale=scale if calibrated else None)
        train_value_head(data, folder / name, train_config, progress=progress)
