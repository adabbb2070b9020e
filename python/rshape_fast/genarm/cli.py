"""`rshape arm-train`: an autoregressive reward model from a cd-data directory's pairs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rshape_fast.genarm.config import ArmConfig


def cmd_arm_train(args: argparse.Namespace) -> int:
    from rshape_fast.genarm.train import train_arm

    config = ArmConfig(
        beta_r=args.beta_r,
        train_layers=args.train_layers,
        epochs=args.epochs,
        batch_prompts=args.batch_prompts,
        lr=args.lr,
        min_gap=args.min_gap,
        held_out=args.held_out,
        seed=args.seed,
    )
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
    train.add_argument(
        "--beta-r", type=float, default=ArmConfig.beta_r, help="β_r of r = β_r Σ log π_ARM"
    )
    train.add_argument(
        "--train-layers",
        type=int,
        default=ArmConfig.train_layers,
        help="top decoder layers trained",
    )
    train.add_argument(
        "--epochs", type=int, default=ArmConfig.epochs, help="passes over the train pairs"
    )
    train.add_argument(
        "--batch-prompts",
        type=int,
        default=ArmConfig.batch_prompts,
        help="prompts (all their pairs) a step",
    )
    train.add_argument("--lr", type=float, default=ArmConfig.lr, help="AdamW learning rate")
    train.add_argument(
        "--min-gap", type=float, default=ArmConfig.min_gap, help="smallest reward gap kept"
    )
    train.add_argument(
        "--held-out", type=float, default=ArmConfig.held_out, help="share of prompts held out"
    )
    train.add_argument("--seed", type=int, default=ArmConfig.seed, help="split and order seed")
    train.add_argument("--device", default="cpu", help="torch device")
    train.set_defaults(func=cmd_arm_train)
