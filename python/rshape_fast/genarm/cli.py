"""`rshape arm-train`: an autoregressive reward model from a cd-data directory's pairs."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_arm_train(args: argparse.Namespace) -> int:
    from rshape_fast.genarm.train import ArmConfig, train_arm

    config = ArmConfig(
        beta_r=args.beta_r,
        train_layers=args.train_layers,
        epochs=args.epochs,
        batch_pairs=args.batch_pairs,
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
        f"arm-train: pair accuracy (share ordered as the steering reward orders them): train "
        f"{before['train']:.3f} -> {after['train']:.3f}, held-out {before['held_out']:.3f} -> "
        f"{after['held_out']:.3f} ({report.train_pairs} train, {report.held_out_pairs} held-out "
        f"pairs; {report.seconds:.0f} s) -> {args.output}"
    )
    return 0


def add_arm_commands(subparsers: Any) -> None:
    """Register `arm-train` on the `rshape` subparsers."""
    train = subparsers.add_parser(
        "arm-train",
        help="GenARM: train an autoregressive reward model from cd-data's scored samples",
        description=(
            "Pair each prompt's i-th best with its i-th worst sample of a cd-data directory "
            "(dropping pairs closer than --min-gap), hold out --held-out of the prompts, and "
            "train the top --train-layers layers of the LM with GenARM's pair loss. Prints "
            "the pair accuracy before and after, on train and held-out pairs, and writes a "
            "causal-LM folder for method genarm (--arm)."
        ),
    )
    train.add_argument("--data", default="runs/cd-data", help="directory written by cd-data")
    train.add_argument("--output", "-o", required=True, help="folder for the ARM")
    train.add_argument("--lm", help="LM to start from (default: the one cd-data sampled)")
    train.add_argument("--beta-r", type=float, default=0.1, help="β_r of r = β_r Σ log π_ARM")
    train.add_argument("--train-layers", type=int, default=4, help="top decoder layers trained")
    train.add_argument("--epochs", type=int, default=2, help="passes over the train pairs")
    train.add_argument("--batch-pairs", type=int, default=8, help="pairs per step")
    train.add_argument("--lr", type=float, default=2e-5, help="AdamW learning rate")
    train.add_argument("--min-gap", type=float, default=0.1, help="smallest reward gap kept")
    train.add_argument("--held-out", type=float, default=0.2, help="share of prompts held out")
    train.add_argument("--seed", type=int, default=0, help="split and order seed")
    train.add_argument("--device", default="cpu", help="torch device")
    train.set_defaults(func=cmd_arm_train)
