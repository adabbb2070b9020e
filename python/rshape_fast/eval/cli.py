"""The `rshape eval`, `rshape report` and `rshape reproduce` subcommands.

Registered on the main parser by :func:`add_eval_commands`; every heavy import (torch,
matplotlib) happens inside the command functions so that `rshape --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rshape_fast.cache import DTYPE_NAMES

__all__ = ["add_eval_commands", "cmd_eval", "cmd_report", "cmd_reproduce"]


def _comma_list(text: str) -> list[Any]:
    from rshape_fast.eval.grid import parse_value

    return [parse_value(v.strip()) for v in text.split(",") if v.strip()]


def _key_values(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SystemExit(f"rshape eval: {flag} expects KEY=VALUE, got {text!r}")
    return key.strip().replace("-", "_"), value.strip()


def build_config(args: argparse.Namespace) -> Any:
    """An `EvalConfig` from `--config` (if given) overridden by the command-line flags."""
    from rshape_fast.eval.grid import EvalConfig, load_config, parse_value

    config = load_config(args.config) if args.config else EvalConfig()
    for item in args.set or []:
        key, value = _key_values(item, "--set")
        config.base[key] = parse_value(value)
    if args.max_new_tokens is not None:
        config.base["max_new_tokens"] = args.max_new_tokens
    block: dict[str, list[Any]] = {}
    for flag, knob in (
        ("methods", "method"),
        ("shapings", "shaping"),
        ("weights", "weight"),
        ("perturbations", "perturbation"),
    ):
        value = getattr(args, flag)
        if value:
            block[knob] = _comma_list(value)
    for item in args.axis or []:
        key, value = _key_values(item, "--axis")
        block[key] = _comma_list(value)
    if block:
        # Grid flags replace the config's grid: the command line describes the whole run.
        config.grid = [block]
    if args.prompts_file is not None:
        config.prompts_file = args.prompts_file
    if args.split is not None:
        config.split = None if args.split == "all" else args.split
    if args.prompts is not None:
        config.limit = args.prompts
    if args.lm is not None:
        config.lm = args.lm
    if args.rm:
        config.rm = args.rm[0] if len(args.rm) == 1 else list(args.rm)
    if args.dtype is not None:
        config.dtype = args.dtype
    if args.rm_dtype is not None:
        config.rm_dtype = args.rm_dtype
    if args.baseline:
        config.baselines = list(args.baseline)
    # Re-run the checks of __post_init__ on the edited config.
    return EvalConfig(**config.__dict__)


def cmd_eval(args: argparse.Namespace) -> int:
    from rshape_fast.eval.grid import expand_grid
    from rshape_fast.eval.report import metrics_table_md, win_tie_table_md
    from rshape_fast.eval.run_loop import run_eval
    from rshape_fast.eval.run_metrics import compute_metrics

    config = build_config(args)
    points = expand_grid(config)
    where = (
        f"on the Ray cluster at {args.ray_address}"
        if args.ray_address
        else f"on {args.workers} local Ray workers"
        if args.workers and args.workers > 1
        else "in this process"
    )
    print(f"rshape eval: {len(points)} configurations {where} -> {args.output}", file=sys.stderr)
    summary = run_eval(
        config,
        args.output,
        restart=args.restart,
        device=args.device,
        progress=not args.quiet,
        workers=args.workers,
        address=args.ray_address,
    )
    print(
        f"rshape eval: {summary.generated} generated, {summary.reused} already in the file, "
        f"{len(summary.skipped)} configurations skipped, {summary.seconds:.0f} s "
        f"({summary.rows_per_second:.2f} rows/s)",
        file=sys.stderr,
    )
    for name, stats in summary.workers.items():
        print(
            f"  worker {name}: {stats.rows} rows in {stats.seconds:.0f} s of tasks "
            f"({stats.rows_per_second:.2f} rows/s, {stats.cpu_seconds:.0f} CPU s)",
            file=sys.stderr,
        )
    if summary.lost_workers:
        print(f"  workers lost and replaced: {', '.join(summary.lost_workers)}", file=sys.stderr)
    for point_id, reason in summary.skipped.items():
        print(f"  skipped {point_id}: {reason}", file=sys.stderr)
    if args.no_metrics:
        return 0
    metrics = compute_metrics(args.output, device=args.device)
    print(metrics_table_md(metrics))
    print(win_tie_table_md(metrics))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rshape_fast.eval.report import write_report
    from rshape_fast.eval.run_metrics import judge_cache_path

    run = Path(args.run)
    print(
        f"rshape report: reading the run file {run} and its judge-score cache "
        f"{judge_cache_path(run)} (made if missing)",
        file=sys.stderr,
    )
    report = write_report(
        args.run,
        output=args.output,
        figures_dir=args.figures,
        baselines=args.baseline or None,
        device=args.device,
    )
    print(f"wrote {report.markdown}")
    print(f"wrote {report.metrics_json}")
    for figure in report.figures:
        print(f"wrote {figure.path}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from rshape_fast.eval.reproduce import reproduce

    started = time.perf_counter()
    path = reproduce(
        suites=[s.strip() for s in args.suites.split(",") if s.strip()],
        prompts=args.prompts,
        max_new_tokens=args.max_new_tokens,
        weights=tuple(float(w) for w in _comma_list(args.weights)),
        sweep_prompts=args.sweep_prompts,
        rm_dtype=args.rm_dtype,
        extras=args.extras,
        output=Path(args.output),
        figures_dir=Path(args.figures),
        run_dir=Path(args.run_dir),
        report_only=args.report_only,
        device=args.device,
        progress=not args.quiet,
        workers=args.workers,
        address=args.ray_address,
    )
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s")
    return 0


def _add_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        help="decode on N Ray workers of a local cluster (needs the distributed extra); "
        "default: this process, or one worker per CPU with --ray-address",
    )
    parser.add_argument("--ray-address", help="join the Ray cluster at this address")


def _add_device_and_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_eval_commands(sub: Any) -> None:
    """Register `eval`, `report` and `reproduce` on the `rshape` subparsers."""
    ev = sub.add_parser(
        "eval",
        help="decode a grid of configurations into a resumable JSONL run file, then score it",
        description="A grid of decoding configurations (methods × shapings × λ × ...) over a "
        "prompt set. Rows are appended as they finish; re-running resumes.",
    )
    ev.add_argument("--config", help="TOML config: [base] knobs, [[grid]] blocks, prompts")
    ev.add_argument("--output", "-o", default="runs/eval.jsonl", help="the JSONL run file")
    ev.add_argument("--methods", help="grid axis: comma-separated methods")
    ev.add_argument("--shapings", help="grid axis: comma-separated shaping schemes")
    ev.add_argument("--weights", help="grid axis: comma-separated λ values")
    ev.add_argument("--perturbations", help="grid axis: comma-separated perturbations")
    ev.add_argument("--axis", action="append", help="another grid axis, KEY=V1,V2 (repeatable)")
    ev.add_argument("--set", action="append", help="a base knob for every point, KEY=VALUE")
    ev.add_argument("--max-new-tokens", type=int, help="tokens per response (base knob)")
    ev.add_argument("--prompts-file", help="prompt file (default: the bundled prompts)")
    ev.add_argument("--split", choices=("train", "test", "all"), help="split (default test)")
    ev.add_argument("--prompts", type=int, help="use at most this many prompts")
    ev.add_argument("--baseline", action="append", help="baseline selector, e.g. method=base")
    ev.add_argument("--lm", help="language model name or folder")
    ev.add_argument(
        "--rm",
        action="append",
        help="steering reward model name or folder; repeat it for an ensemble, combined by "
        "the ensemble knob (--set ensemble=min, or --axis ensemble=mean,min,uwo,logsigmoid)",
    )
    ev.add_argument("--dtype", choices=DTYPE_NAMES, help="dtype of the models (default float32)")
    ev.add_argument(
        "--rm-dtype", choices=DTYPE_NAMES, help="dtype of the reward models (default --dtype)"
    )
    _add_workers(ev)
    ev.add_argument(
        "--restart",
        "--overwrite",
        action="store_true",
        help="discard a run file written for another configuration",
    )
    ev.add_argument("--no-metrics", action="store_true", help="decode only; no judges")
    _add_device_and_quiet(ev)
    ev.set_defaults(func=cmd_eval)

    rep = sub.add_parser("report", help="Markdown table and PNG plots of a run file")
    rep.add_argument(
        "run", help="the JSONL run file written by `rshape eval` (a partial one is fine)"
    )
    rep.add_argument("--output", "-o", help="Markdown file (default RUN.md)")
    rep.add_argument("--figures", help="folder of the PNGs (default RUN_figures/)")
    rep.add_argument("--baseline", action="append", help="baseline selector (repeatable)")
    rep.add_argument("--device", default="cpu", help="torch device of the MiniLM judge")
    rep.set_defaults(func=cmd_report)

    rp = sub.add_parser(
        "reproduce",
        help="the paper's protocol per reward model (λ sweep on train, every scheme at λ* "
        "on test); resumable; regenerates docs/reproduction.md",
    )
    from rshape_fast.eval import protocol

    rp.add_argument(
        "--suites",
        default=",".join(protocol.SUITES),
        help="reward-model suites to run, in order (comma-separated)",
    )
    rp.add_argument(
        "--prompts", type=int, default=protocol.TEST_PROMPTS, help="bundled test prompts to use"
    )
    rp.add_argument(
        "--max-new-tokens", type=int, default=protocol.MAX_NEW_TOKENS, help="tokens per response"
    )
    rp.add_argument(
        "--weights",
        default=",".join(f"{w:g}" for w in protocol.SWEEP_WEIGHTS),
        help="λ sweep of vanilla ARGS",
    )
    rp.add_argument(
        "--sweep-prompts",
        type=int,
        default=protocol.SWEEP_PROMPTS,
        help="train prompts of the sweep",
    )
    rp.add_argument(
        "--rm-dtype", default=protocol.RM_DTYPE, choices=DTYPE_NAMES, help="reward models' dtype"
    )
    rp.add_argument(
        "--no-extras",
        dest="extras",
        action="store_false",
        help="skip robustness, sequence-level methods and CD",
    )
    rp.add_argument("--output", default="docs/reproduction.md", help="the report")
    rp.add_argument("--figures", default="docs/figures", help="folder of the PNGs")
    rp.add_argument(
        "--run-dir", default=str(protocol.RUN_DIR), help="folder of the run files (tracked)"
    )
    rp.add_argument(
        "--report-only",
        action="store_true",
        help="decode nothing: render the report from the run files as they are (may be partial)",
    )
    _add_workers(rp)
    _add_device_and_quiet(rp)
    rp.set_defaults(func=cmd_reproduce)
