"""`rshape cd-data` and `rshape cd-train`: the offline half of controlled decoding."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rshape_fast.cache import DEFAULT_LM, DEFAULT_REWARD_MODEL


def cmd_cd_data(args: argparse.Namespace) -> int:
    from rshape_fast.cd.data import CDDataConfig, check_resumable, collect
    from rshape_fast.models import load_lm, load_reward_model
    from rshape_fast.prompts import load_prompts

    # Validate the config and the output directory before spending seconds on models.
    config = CDDataConfig(
        lm=args.lm,
        rm=args.rm,
        samples=args.samples,
        temperature=args.temperature,
        top_p=None if args.top_p >= 1 else args.top_p,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        chat_template=args.chat_template,
        dtype=args.dtype,
    )
    check_resumable(args.output, config, overwrite=args.overwrite)
    prompts = load_prompts(args.prompts_file, split=args.split, limit=args.limit)
    lm = load_lm(args.lm, device=args.device)
    rm = load_reward_model(args.rm, device=args.device)
    report = collect(
        args.output,
        [(p.id, p.text) for p in prompts],
        lm=lm,
        rm=rm,
        config=config,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(
        f"cd-data: {report.prompts_done} prompts collected, {report.prompts_skipped} already "
        f"done; {report.samples} samples, {report.tokens} tokens, {report.lm_calls} LM calls, "
        f"{report.seconds:.1f} s -> {args.output}",
        file=sys.stderr,
    )
    return 0


def _resolve_reward_scale(value: float | str | None, data_dir: str, device: str) -> float | None:
    """`--reward-scale`: None, a number, or "auto": the decoders' estimate
    (decoding/calibration.py) for the LM and reward model the data was collected with."""
    if value != "auto":
        return None if value is None else float(value)
    from rshape_fast.cd.data import CDDataset
    from rshape_fast.decoding.calibration import resolve_reward_scale
    from rshape_fast.decoding.options import DecodingOptions
    from rshape_fast.models import load_lm, load_reward_model

    data = CDDataset(data_dir).config
    options = DecodingOptions(reward_scale="auto", chat_template=data.chat_template)
    lm = load_lm(data.lm, device=device)
    rm = load_reward_model(data.rm, device=device)
    scale = resolve_reward_scale(options, lm, rm)
    print(f"cd-train: reward_scale='auto' estimated {scale:.4g} ({data.rm})", file=sys.stderr)
    return scale


def cmd_cd_train(args: argparse.Namespace) -> int:
    from rshape_fast.cd.train import TrainConfig, train_value_head

    config = TrainConfig(
        shaping=args.shaping,
        bound=args.bound,
        beta=args.beta,
        alpha=args.alpha,
        spread_ratio=args.spread_ratio,
        max_weight=args.max_weight,
        max_exponent=args.max_exponent,
        cap=args.cap,
        reward_scale=_resolve_reward_scale(args.reward_scale, args.data, args.device),
        width=args.width,
        td_weight=args.td_weight,
        val_fraction=args.val_fraction,
        lr=args.lr,
        batch_size=args.batch_size,
        max_epochs=args.max_epochs,
        patience=args.patience,
        seed=args.seed,
    )
    head = train_value_head(args.data, args.output, config, progress=not args.quiet)
    metrics: dict[str, Any] = head.config["metrics"]
    print(json.dumps(metrics, indent=2))
    print(
        f"cd-train: validation loss {metrics['val_loss']:.4f} vs constant predictor "
        f"{metrics['val_constant_loss']:.4f} -> {args.output}",
        file=sys.stderr,
    )
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def add_cd_commands(subparsers: Any) -> None:
    """Register `cd-data` and `cd-train` on the `rshape` subparsers."""
    data = subparsers.add_parser(
        "cd-data",
        help="CD step 1: sample M responses per training prompt, store hidden states + rewards",
        description=(
            "Sample M base responses per prompt (batched on one forked KV cache), score them "
            "with the steering reward model and store per-token last-layer hidden states. "
            "Resumable: rerunning skips finished prompts; a different config is refused "
            "unless --overwrite."
        ),
    )
    data.add_argument("--output", "-o", default="runs/cd-data", help="data directory")
    data.add_argument("--prompts-file", help="JSONL/text prompt file (default: bundled prompts)")
    data.add_argument("--split", default="train", choices=("train", "test"), help="prompt split")
    data.add_argument("--limit", type=_positive_int, help="use at most this many prompts")
    data.add_argument("-M", "--samples", type=int, default=10, help="responses per prompt")
    data.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    data.add_argument("--top-p", type=float, default=0.9, help="nucleus mass (1 = off)")
    data.add_argument("--top-k", type=_positive_int, help="keep only the top-k tokens")
    data.add_argument("--max-new-tokens", type=_positive_int, default=64, help="response cap")
    data.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    data.add_argument(
        "--no-chat-template", dest="chat_template", action="store_false", help="raw prompts"
    )
    data.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    data.add_argument("--lm", default=DEFAULT_LM, help="LM: built-in name or folder")
    data.add_argument("--rm", default=DEFAULT_REWARD_MODEL, help="steering reward model")
    data.add_argument("--device", default="cpu", help="torch device")
    data.add_argument("--overwrite", action="store_true", help="replace existing data")
    data.add_argument("--quiet", action="store_true", help="no progress bar")
    data.set_defaults(func=cmd_cd_data)

    train = subparsers.add_parser(
        "cd-train",
        help="CD step 2: fit a value head on cd-data output (raw or shaped targets)",
        description=(
            "Fit V(h) = Linear-GELU-Linear on the stored hidden states. Loss: MSE to the "
            "per-prompt shaped reward at the last token + td-weight x MSE between adjacent "
            "token values. Shaping defaults are the CD ones (B=15, beta=0.667, alpha=1, "
            "spread ratio 2, exponent cap 2)."
        ),
    )
    from rshape_fast.shaping import SCHEMES

    train.add_argument("--data", default="runs/cd-data", help="directory written by cd-data")
    train.add_argument("--output", "-o", required=True, help="folder for the value head")
    train.add_argument("--shaping", default="srs", choices=SCHEMES, help="target transform")
    train.add_argument("--bound", type=float, default=15.0, help="SRS bound B")
    train.add_argument("--beta", type=float, default=0.667, help="KL strength β")
    train.add_argument("--alpha", type=float, default=1.0, help="sigmoid sharpness α")
    train.add_argument("--spread-ratio", type=float, default=2.0, help="B_eff ratio")
    train.add_argument("--max-weight", type=_optional_float, default=None, help="γ cap")
    train.add_argument("--max-exponent", type=_optional_float, default=2.0, help="B/β cap")
    train.add_argument("--cap", type=float, default=1.0, help="clip of the 'cap' transform")
    from rshape_fast.decoding.options import parse_reward_scale

    train.add_argument(
        "--reward-scale",
        type=parse_reward_scale,
        help="divide rewards by this before shaping: a number, or 'auto' (the decoders' "
        "estimate for the data's LM and reward model; loads both); default none",
    )
    train.add_argument("--device", default="cpu", help="torch device (for --reward-scale auto)")
    train.add_argument("--width", type=_positive_int, default=256, help="MLP hidden width")
    train.add_argument("--td-weight", type=float, default=1.0, help="adjacent-token MSE weight")
    train.add_argument("--val-fraction", type=float, default=0.2, help="prompts held out")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train.add_argument("--batch-size", type=_positive_int, default=32, help="sequences a step")
    train.add_argument("--max-epochs", type=_positive_int, default=200, help="epoch budget")
    train.add_argument("--patience", type=_positive_int, default=15, help="early stopping")
    train.add_argument("--seed", type=int, default=0, help="split and init seed")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_cd_train)


__all__ = ["add_cd_commands"]
