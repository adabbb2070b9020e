"""The `rshape` command: generate, list models, run the demo (and, later, evaluate)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from rshape_fast.errors import RshapeError


def _delimiters(text: str) -> tuple[str, ...]:
    """`--segment-delimiters` value: comma-separated, with backslash escapes such as \\n."""
    return tuple(text.encode().decode("unicode_escape").split(","))


# (flag, DecodingOptions field, type, help). Defaults come from DecodingOptions itself.
KNOBS: list[tuple[str, str, Any, str]] = [
    ("--method", "method", str, "decoding method"),
    ("--shaping", "shaping", str, "reward transform (algorithms.md §3)"),
    ("--k", "k", int, "candidate tokens per step"),
    ("--weight", "weight", float, "guidance weight λ (= 1/β)"),
    ("--bound", "bound", float, "SRS bound B"),
    ("--alpha", "alpha", float, "sigmoid sharpness α"),
    ("--beta", "beta", float, "KL strength β of the SRS weight (default 1/λ)"),
    ("--spread-ratio", "spread_ratio", float, "B_eff = min(B, ratio·(max r − min r))"),
    ("--max-weight", "max_weight", float, "cap of the SRS weight γ (token level)"),
    ("--max-exponent", "max_exponent", float, "cap of the exponent B/β (sequence level)"),
    ("--cap", "cap", float, "cap of the 'cap' transform"),
    ("--perturbation", "perturbation", str, "robustness perturbation of the rewards"),
    ("--noise-variance", "noise_variance", float, "variance of the 'noise' perturbation"),
    ("--temperature", "temperature", float, "sampling temperature"),
    ("--top-k", "top_k", int, "base sampling: keep the top-k tokens"),
    ("--top-p", "top_p", float, "base sampling: nucleus mass"),
    ("--max-new-tokens", "max_new_tokens", int, "tokens to generate at most"),
    ("--batch-size", "batch_size", int, "prompts decoded together"),
    ("--seed", "seed", int, "seed of every random draw"),
    ("--n", "n", int, "best-of-N family: samples per prompt"),
    ("--checkpoint-tokens", "checkpoint_tokens", int, "streaming_bon: tokens per checkpoint"),
    ("--reject-fraction", "reject_fraction", float, "streaming_bon: share rejected per check"),
    ("--segment-delimiters", "segment_delimiters", _delimiters, "segment ends: 'a,b', \\n escapes"),
    ("--entropy-threshold", "entropy_threshold", float, "segment ends above this entropy"),
    ("--min-segment-tokens", "min_segment_tokens", int, "segment tokens before the entropy rule"),
    ("--max-segment-tokens", "max_segment_tokens", int, "length cap of a segment"),
    ("--segment-samples", "segment_samples", int, "segments sampled per prefix and round"),
    ("--retries", "retries", int, "segment: extra rounds before taking the best"),
    ("--accept-threshold", "accept_threshold", float, "segment: fixed acceptance reward"),
    ("--beam-width", "beam_width", int, "segment_beam: prefixes kept per prompt"),
    ("--value-head", "value_head", str, "cd: value head folder written by `rshape cd-train`"),
]


def _add_knobs(parser: argparse.ArgumentParser) -> None:
    from rshape_fast.decoding.options import METHODS, PERTURBATIONS, SHAPINGS, DecodingOptions

    defaults = DecodingOptions()
    choices = {"method": METHODS, "shaping": SHAPINGS, "perturbation": PERTURBATIONS}
    group = parser.add_argument_group("decoding knobs")
    for flag, name, kind, text in KNOBS:
        default = getattr(defaults, name)
        group.add_argument(
            flag,
            dest=name,
            type=kind,
            default=default,
            choices=choices.get(name),
            help=f"{text} (default: {default})",
        )
    group.add_argument(
        "--sample", dest="greedy", action="store_false", help="sample instead of greedy decoding"
    )
    group.add_argument(
        "--no-chat-template",
        dest="chat_template",
        action="store_false",
        help="feed prompts as raw text, without the LM's chat template",
    )
    group.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    group.add_argument("--lm", default="smollm2-135m-instruct", help="LM: built-in name or folder")
    group.add_argument("--rm", default="smollm2-sentiment", help="reward model: name or folder")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def _knobs(args: argparse.Namespace) -> dict[str, Any]:
    names = [name for _, name, _, _ in KNOBS] + ["greedy", "chat_template"]
    out = {name: getattr(args, name) for name in names}
    out["stop"] = tuple(args.stop)
    return out


def _read_prompts(args: argparse.Namespace) -> list[str]:
    from rshape_fast.prompts import load_prompts

    texts = list(args.prompt or [])
    if args.prompts_file:
        texts += [
            p.text for p in load_prompts(args.prompts_file, split=args.split, limit=args.limit)
        ]
    if not texts:
        raise SystemExit("rshape generate: give --prompt TEXT or --prompts-file FILE")
    return texts


def cmd_generate(args: argparse.Namespace) -> int:
    from rshape_fast.decoding import generate
    from rshape_fast.models import load_lm

    prompts = _read_prompts(args)
    out = open(args.output, "a", encoding="utf-8") if args.output else None
    try:

        def write(result: Any) -> None:
            row = json.dumps(result.to_dict(), ensure_ascii=False)
            if out is not None:
                out.write(row + "\n")
                out.flush()
            else:
                print(row, flush=True)

        generate(
            prompts,
            lm=load_lm(args.lm, device=args.device),
            rm=None if args.method == "base" else args.rm,
            device=args.device,
            progress=not args.quiet,
            on_result=write,
            **_knobs(args),
        )
    finally:
        if out is not None:
            out.close()
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from rshape_fast.models import available_models, cache_dir

    print(f"cache: {cache_dir()}")
    for entry in available_models():
        state = "cached" if entry["cached"] else "not cached (converted on first use)"
        print(f"  {entry['name']:<24} {entry['kind']:<7} {state}")
        print(f"      {entry['description']}")
    return 0


def _side_by_side(title_a: str, text_a: str, title_b: str, text_b: str) -> str:
    width = max(30, (shutil.get_terminal_size((120, 20)).columns - 3) // 2)
    col_a = [title_a, "-" * len(title_a), *textwrap.wrap(text_a or "(empty)", width)]
    col_b = [title_b, "-" * len(title_b), *textwrap.wrap(text_b or "(empty)", width)]
    rows = max(len(col_a), len(col_b))
    col_a += [""] * (rows - len(col_a))
    col_b += [""] * (rows - len(col_b))
    return "\n".join(f"{a:<{width}} | {b}" for a, b in zip(col_a, col_b, strict=True))


def cmd_demo(args: argparse.Namespace) -> int:
    from rshape_fast.decoding import generate
    from rshape_fast.models import load_lm, load_reward_model
    from rshape_fast.prompts import load_prompts

    prompts = [p.text for p in load_prompts(demo_only=True)][: args.limit]
    print(f"rshape demo: SRS-ARGS vs ARGS on {len(prompts)} bundled prompts", file=sys.stderr)
    lm = load_lm(device=args.device)
    rm = load_reward_model(device=args.device)
    common = {"k": 10, "weight": 0.5, "max_new_tokens": args.max_new_tokens, "batch_size": 8}
    srs = generate(prompts, lm=lm, rm=rm, method="args", shaping="srs", progress=True, **common)
    raw = generate(prompts, lm=lm, rm=rm, method="args", shaping="raw", progress=True, **common)
    # Both runs have a reward model, so every result carries a reward.
    srs_rewards = [float(r.reward or 0.0) for r in srs]
    raw_rewards = [float(r.reward or 0.0) for r in raw]
    for a, b, ra, rb in zip(srs, raw, srs_rewards, raw_rewards, strict=True):
        print(f"\n### {a.prompt}")
        print(
            _side_by_side(f"SRS-ARGS  reward {ra:+.3f}", a.text, f"ARGS  reward {rb:+.3f}", b.text)
        )
    wins = sum(ra >= rb for ra, rb in zip(srs_rewards, raw_rewards, strict=True))
    print(
        f"\nmean steering reward: SRS-ARGS {sum(srs_rewards) / len(srs):+.3f}  "
        f"ARGS {sum(raw_rewards) / len(raw):+.3f}  "
        f"(SRS ≥ ARGS on {wins}/{len(srs)} prompts; k=10, λ=0.5, B=12, α=1.5, greedy, "
        f"{args.max_new_tokens} new tokens)"
    )
    tokens = sum(r.cost.generated_tokens for r in srs)
    seconds = sum(r.cost.seconds_total for r in srs)
    print(f"SRS-ARGS speed: {tokens / seconds:.1f} tokens/s over {tokens} tokens")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rshape",
        description="Reward-guided decoding with Stackelberg reward shaping (rshape_fast).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="decode prompts with a method and shaping scheme")
    gen.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    gen.add_argument("--prompts-file", help="JSONL (id, prompt) or text file, one prompt a line")
    gen.add_argument("--split", choices=("train", "test"), help="keep only this split of the file")
    gen.add_argument("--limit", type=int, help="use at most this many prompts of the file")
    gen.add_argument("--output", "-o", help="append results to this JSONL file as they finish")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_knobs(gen)
    gen.set_defaults(func=cmd_generate)

    models = sub.add_parser("models", help="list the built-in models and whether they are cached")
    models.set_defaults(func=cmd_models)

    demo = sub.add_parser("demo", help="SRS-ARGS vs ARGS on bundled prompts, side by side")
    demo.add_argument("--limit", type=int, default=5, help="number of demo prompts")
    demo.add_argument("--max-new-tokens", type=int, default=128, help="tokens per response")
    demo.add_argument("--device", default="cpu", help="torch device")
    demo.set_defaults(func=cmd_demo)

    from rshape_fast.cd.cli import add_cd_commands

    add_cd_commands(sub)

    from rshape_fast.eval.cli import add_eval_commands

    add_eval_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rshape` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RshapeError as err:
        print(f"rshape: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
