"""`rshape arm-train`: an autoregressive reward model from a cd-data directory's pairs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rshape_fast.genarm.config import ArmConfig

# The ArmConfig fields `rshape arm-train` takes as flags (`--beta-r` for `beta_r`), with
# their type and help; the defaults are ArmConfig's.
_KNOBS: dict[str, tuple[type, str]] = {
    "beta_r": (float, "β_r of r = β_r Σ log π_ARM"),
    "train_layers": (int, "top decoder layers trained"),
    "epochs": (int, "passes over the train pairs"),
    "batch_prompts": (int, "prompts (all their pairs) a step"),
    "lr": (float, "AdamW learning rate"),
    "min_gap": (float, "smallest reward gap kept"),
    "held_out": (float, "share of prompts held out"),
    "seed": (int, "split and order seed"),
}


def cmd_arm_train(args: argparse.Namespace) -> int:
    from rshape_fast.genarm.train import train_arm

    config = ArmConfig(**{name: getattr(args, name) for name in _KNOBS})
    report = train_arm(
        args.data,
        args.output,
        config,
        lm_name=args.lm,
        device=args.device,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    before, after = report.accuracy_before, report.accuracy_after
    print(
        "arm-train: pair accuracy (share of a prompt's pairs ordered as the steering reward "
        f"orders them, 95 % interval over prompts): train {_accuracy(before['train'])} -> "
        f"{_accuracy(after['train'])}, held-out {_accuracy(before['held_out'])} -> "
        f"{_accuracy(after['held_out'])} ({report.train_pairs} train pairs from "
        f"{report.train_prompts} prompts, {report.held_out_pairs} held-out pairs from "
        f"{report.held_out_prompts}; {report.seconds:.0f} s) -> {args.output}\n"
        f"arm-train: held-out change {_accuracy(report.held_out_gain, signed=True)} (paired "
        "over prompts); held-out after each epoch "
        + ", ".join(f"{a:.3f}" for a in report.held_out_by_epoch)
    )
    return 0


def _accuracy(value: tuple[float, float, float], signed: bool = False) -> str:
    mean, low, high = value
    sign = "+" if signed else ""
    return f"{mean:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def add_arm_commands(subparsers: Any) -> None:
    """Register `arm-train` on the `rshape` subparsers."""
    train = subparsers.add_parser(
        "arm-train",
        help="GenARM: train an autoregressive reward model from cd-data's scored samples",
        description=(
            "Pair every two samples of a prompt in a cd-data directory whose rewards differ by "
            "at least --min-gap, hold out --held-out of the prompts, and "
            "train the top --train-layers layers of the LM with GenARM's pair loss. Prints "
            "the pair accuracy before and after, on train and held-out pairs, and writes a "
            "causal-LM folder for method genarm (--arm)."
        ),
    )
    train.add_argument("--data", default="runs/cd-data", help="directory written by cd-data")
    train.add_argument("--output", "-o", required=True, help="folder for the ARM")
    train.add_argument("--lm", help="LM to start from (default: the one cd-data sampled)")
    for name, (kind, help_) in _KNOBS.items():
        flag = "--" + name.replace("_", "-")
        train.add_argument(flag, type=kind, default=getattr(ArmConfig, name), help=help_)
    train.add_argument("--device", default="cpu", help="torch device")
    train.set_defaults(func=cmd_arm_train)
