"""`rshape bench kernels|decoding|step|sequence`: the flags every benchmark shares, and its
own. Building the parser imports no torch; a benchmark imports what it needs when it runs."""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any

import rshape_fast.bench as package
from rshape_fast.bench import decoding, kernels, sequence, step
from rshape_fast.cache import DTYPE_NAMES

BENCHMARKS: dict[str, ModuleType] = {
    "kernels": kernels,
    "decoding": decoding,
    "step": step,
    "sequence": sequence,
}


def add_bench_commands(sub: Any) -> None:
    bench = sub.add_parser(
        "bench",
        help="benchmarks against numpy, torch, the naive loop and the hardware's floors",
        description=(package.__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = bench.add_subparsers(dest="benchmark", required=True)
    for name, module in BENCHMARKS.items():
        doc = (module.__doc__ or "").strip()
        parser = which.add_parser(
            name,
            # The docstring's first line, after "`rshape bench NAME`: ".
            help=doc.splitlines()[0].split(": ", 1)[-1].rstrip("."),
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
        parser.add_argument(
            "--quick", action="store_true", help="fewer sizes and shorter runs (a smoke test)"
        )
        parser.add_argument(
            "--json",
            metavar="OUT",
            help="also write every figure and ratio, with the machine, versions and load, here",
        )
        parser.add_argument(
            "--dtype",
            choices=DTYPE_NAMES,
            help="weights of the models (default: float32, bfloat16 for --synthetic; `step` "
            "compares dtypes)",
        )
        module.add_arguments(parser)
        parser.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from rshape_fast.bench.report import BenchReport

    if args.device != "cpu":
        from rshape_fast.models.loading import resolve_device

        resolve_device(args.device)  # no such device: one line, before any work
    if args.dtype is None:
        args.dtype = "bfloat16" if getattr(args, "synthetic", None) else "float32"
    report = BenchReport(args.benchmark, device=args.device, dtype=args.dtype, quick=args.quick)
    BENCHMARKS[args.benchmark].run(report, args)
    if args.json:
        report.write_json(args.json)
    return 0
