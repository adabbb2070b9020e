"""The `rshape` command: generate, list models, run the demo, evaluate, controlled decoding.

Building the parser and running `rshape --help`, `rshape SUBCOMMAND --help` or
`rshape models` imports neither torch nor transformers: the knobs come from the torch-free
`decoding.registry` and `decoding.options`, and every command imports what it needs when it
runs. A command that needs a missing optional dependency fails in one line that names the
extra to install (see `main`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from rshape_fast.cache import DEFAULT_LM, DEFAULT_REWARD_MODEL, DTYPE_NAMES, ENGINES
from rshape_fast.decoding.options import parse_reward_scale
from rshape_fast.errors import RshapeError

#: Values of `--dtype` and `--rm-dtype` (tests/test_cli.py checks them against models.loading).
DTYPES = DTYPE_NAMES


def _delimiters(text: str) -> tuple[str, ...]:
    """`--segment-delimiters` value: comma-separated, with backslash escapes such as \\n."""
    return tuple(text.encode().decode("unicode_escape").split(","))


@dataclass(frozen=True)
class Knob:
    """A `DecodingOptions` field as a command-line flag.

    `shown` is how the help prints the field's default (`{}` is the default itself): it says
    what an unset (None) value means, or when the default applies at all.
    """

    flag: str
    name: str
    kind: Any
    text: str
    shown: str = "{}"


# Defaults come from DecodingOptions itself; `shown` only says how to read them.
KNOBS: list[Knob] = [
    Knob("--method", "method", str, "decoding method"),
    Knob("--shaping", "shaping", str, "reward transform (docs/algorithms.md §3)"),
    Knob("--k", "k", int, "candidate tokens per step"),
    Knob("--weight", "weight", float, "guidance weight λ (= 1/β)"),
    Knob("--bound", "bound", float, "SRS bound B"),
    Knob("--alpha", "alpha", float, "sigmoid sharpness α"),
    Knob("--beta", "beta", float, "KL strength β of the SRS weight", "1/λ"),
    Knob("--spread-ratio", "spread_ratio", float, "B_eff = min(B, ratio·(max r − min r))"),
    Knob("--max-weight", "max_weight", float, "cap of the SRS weight γ (token level)"),
    Knob("--max-exponent", "max_exponent", float, "cap of B/β (sequence level)", "no cap"),
    Knob("--cap", "cap", float, "cap of the 'cap' transform"),
    Knob("--perturbation", "perturbation", str, "robustness perturbation of the rewards"),
    Knob("--noise-variance", "noise_variance", float, "variance of the 'noise' perturbation"),
    Knob(
        "--temperature",
        "temperature",
        float,
        "temperature of --sample and of the sampling methods",
        "{} where sampling applies",
    ),
    Knob("--top-k", "top_k", int, "sampling: keep the top-k tokens", "off"),
    Knob("--top-p", "top_p", float, "sampling: nucleus mass", "off"),
    Knob("--max-new-tokens", "max_new_tokens", int, "tokens to generate at most"),
    Knob("--batch-size", "batch_size", int, "prompts decoded together"),
    Knob("--seed", "seed", int, "seed of every random draw"),
    Knob("--n", "n", int, "best-of-N family: samples per prompt"),
    Knob("--checkpoint-tokens", "checkpoint_tokens", int, "streaming_bon: tokens per checkpoint"),
    Knob("--reject-fraction", "reject_fraction", float, "streaming_bon: share dropped per check"),
    Knob(
        "--segment-delimiters",
        "segment_delimiters",
        _delimiters,
        "segment ends: 'a,b', with \\n escapes",
    ),
    Knob(
        "--entropy-threshold",
        "entropy_threshold",
        float,
        "segment ends above this next-token entropy",
        "off",
    ),
    Knob("--min-segment-tokens", "min_segment_tokens", int, "segment tokens before entropy rule"),
    Knob("--max-segment-tokens", "max_segment_tokens", int, "length cap of a segment"),
    Knob("--segment-samples", "segment_samples", int, "segments sampled per prefix and round"),
    Knob("--retries", "retries", int, "segment: extra rounds before taking the best"),
    Knob(
        "--accept-threshold",
        "accept_threshold",
        float,
        "segment: fixed acceptance reward",
        "m* of the segments drawn so far",
    ),
    Knob("--beam-width", "beam_width", int, "segment_beam: prefixes kept per prompt"),
    Knob(
        "--value-head",
        "value_head",
        str,
        "cd: value head folder written by `rshape cd-train`",
        "none; cd needs one",
    ),
    Knob(
        "--arm",
        "arm",
        str,
        "genarm: autoregressive reward model folder written by `rshape arm-train`",
        "none; genarm needs one",
    ),
    Knob("--arm-weight", "arm_weight", float, "genarm: weight of the ARM's log-probabilities"),
    Knob("--ensemble", "ensemble", str, "how several --rm combine"),
    Knob("--uwo-weight", "uwo_weight", float, "uwo ensemble: weight of the members' variance"),
    Knob(
        "--reward-scale",
        "reward_scale",
        parse_reward_scale,
        "divide rewards by this before shaping, or 'auto' (estimated from base decoding)",
        "none",
    ),
]


def _add_knobs(parser: argparse.ArgumentParser) -> None:
    from rshape_fast.decoding.options import (
        ENSEMBLE_MODES,
        PERTURBATIONS,
        SHAPINGS,
        DecodingOptions,
    )
    from rshape_fast.decoding.registry import METHODS, TOKEN_LEVEL

    defaults = DecodingOptions()
    choices = {
        "method": METHODS,
        "shaping": SHAPINGS,
        "perturbation": PERTURBATIONS,
        "ensemble": ENSEMBLE_MODES,
    }
    group = parser.add_argument_group("decoding knobs")
    for knob in KNOBS:
        default = getattr(defaults, knob.name)
        # A tuple default is shown in the flag's own syntax, e.g. '\\n,.,!,?'.
        value = (
            ",".join(default).encode("unicode_escape").decode()
            if isinstance(default, tuple)
            else default
        )
        group.add_argument(
            knob.flag,
            dest=knob.name,
            type=knob.kind,
            default=default,
            choices=choices.get(knob.name),
            # argparse expands %-formats in help texts.
            help=f"{knob.text} (default: {knob.shown.format(value)})".replace("%", "%%"),
        )
    group.add_argument(
        "--sample",
        dest="greedy",
        action="store_false",
        help=f"{', '.join(TOKEN_LEVEL)}: sample instead of decoding greedily "
        "(the other methods always sample)",
    )
    group.add_argument(
        "--no-chat-template",
        dest="chat_template",
        action="store_false",
        help="feed prompts as raw text, without the LM's chat template",
    )
    group.add_argument(
        "--special-tokens-in-prompts",
        action="store_true",
        help="let special-token strings in prompts (e.g. <|im_end|>) act as control tokens; "
        "by default they are encoded as text, so a prompt cannot forge chat turns",
    )
    group.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def _add_models(parser: argparse.ArgumentParser) -> None:
    """--lm, --rm (repeatable), --dtype, --rm-dtype and --device: what `generate` loads."""
    group = parser.add_argument_group("models")
    group.add_argument(
        "--lm", default=DEFAULT_LM, help=f"LM: built-in name or HF folder (default: {DEFAULT_LM})"
    )
    group.add_argument(
        "--rm",
        action="append",
        help=f"steering reward model: built-in name or folder; repeat it for an ensemble "
        f"(default: {DEFAULT_REWARD_MODEL}; none for --method base)",
    )
    group.add_argument(
        "--dtype",
        default=DTYPES[0],
        choices=DTYPES,
        help=f"weights of the LM and the reward models (default: {DTYPES[0]})",
    )
    group.add_argument("--rm-dtype", choices=DTYPES, help="reward model weights (default: --dtype)")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default: cpu)")
    group.add_argument(
        "--engine",
        default=ENGINES[0],
        choices=ENGINES,
        help="what runs the LM: this package's transformers loop, or vLLM (the vllm extra; "
        "every method but cd and genarm) (default: transformers)",
    )


def _reward(args: argparse.Namespace) -> str | list[str] | None:
    """`rm=` of generate: None (its default reward model), one name, or a list, the ensemble."""
    if args.method == "base" or not args.rm:
        return None
    return args.rm[0] if len(args.rm) == 1 else list(args.rm)


def _knobs(args: argparse.Namespace) -> dict[str, Any]:
    names = [knob.name for knob in KNOBS] + ["greedy", "chat_template", "special_tokens_in_prompts"]
    out = {name: getattr(args, name) for name in names}
    out["stop"] = tuple(args.stop)
    return out


def _read_prompts(args: argparse.Namespace) -> tuple[list[str], list[str] | None]:
    """The prompts and their keys: a prompt file's ids, or None (keyed by their text)."""
    if args.prompt:
        return list(args.prompt), None
    from rshape_fast.prompts import load_prompts

    prompts = load_prompts(args.prompts_file, split=args.split, limit=args.limit)
    return [p.text for p in prompts], [p.id for p in prompts]


def cmd_generate(args: argparse.Namespace) -> int:
    from rshape_fast.decoding import generate

    prompts, keys = _read_prompts(args)
    lm: Any = args.lm
    if args.engine != "transformers":
        from rshape_fast.models import load_lm

        lm = load_lm(args.lm, engine=args.engine, device=args.device, dtype=args.dtype)
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
            keys=keys,
            lm=lm,
            rm=_reward(args),
            device=args.device,
            dtype=args.dtype,
            rm_dtype=args.rm_dtype,
            progress=not args.quiet,
            on_result=write,
            **_knobs(args),
        )
    finally:
        if out is not None:
            out.close()
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from rshape_fast.cache import available_models, cache_dir

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


class Parser(argparse.ArgumentParser):
    """Every `rshape` parser and subparser (subparsers inherit the class): a long option
    must be spelt out, because argparse's prefix matching would read a typo such as
    `--method` as another flag (`--methods`) and silently change the run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rshape",
        description="Reward-guided decoding with Stackelberg reward shaping (rshape_fast).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser(
        "generate",
        help="decode prompts with a method and shaping scheme",
        description="Decode prompts and write one JSON line per prompt as its batch finishes.",
    )
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    source.add_argument(
        "--prompts-file",
        help="prompt file: .jsonl with an `id` and a `prompt` per line, or text with one "
        "prompt a line (docs/models.md, 'Prompt files'); ids key the random draws",
    )
    gen.add_argument("--split", choices=("train", "test"), help="keep only this split of the file")
    gen.add_argument("--limit", type=int, help="use at most this many prompts of the file")
    gen.add_argument("--output", "-o", help="append results to this JSONL file as they finish")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_knobs(gen)
    _add_models(gen)
    gen.set_defaults(func=cmd_generate)

    models = sub.add_parser("models", help="list the built-in models and whether they are cached")
    models.set_defaults(func=cmd_models)

    demo = sub.add_parser("demo", help="SRS-ARGS vs ARGS on bundled prompts, side by side")
    demo.add_argument("--limit", type=int, default=5, help="number of demo prompts")
    demo.add_argument("--max-new-tokens", type=int, default=128, help="tokens per response")
    demo.add_argument("--device", default="cpu", help="torch device")
    demo.set_defaults(func=cmd_demo)

    from rshape_fast.engines.serve import add_serve_command

    add_serve_command(sub)

    from rshape_fast.cd.cli import add_cd_commands

    add_cd_commands(sub)

    from rshape_fast.genarm.cli import add_arm_commands

    add_arm_commands(sub)

    from rshape_fast.eval.cli import add_eval_commands

    add_eval_commands(sub)

    from rshape_fast.bench.cli import add_bench_commands

    add_bench_commands(sub)
    return parser


def _extra_providing(module: str) -> str | None:
    """The extra of rshape_fast whose requirements install `module` (a top-level import
    name), read from the installed package's metadata; None if no extra does."""
    try:
        requirements = metadata.requires("rshape_fast") or []
    except metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        # e.g. "tomli>=2 ; python_version < '3.11' and extra == 'eval'".
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", requirement)
        if name and extra and _normalized(name.group()) == _normalized(module):
            return extra.group(1)
    return None


def _normalized(name: str) -> str:
    """A distribution or module name compared as PEP 503 does (vaderSentiment = vadersentiment)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rshape` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RshapeError as err:
        print(f"rshape: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        # The one place where a missing optional dependency becomes a one-line answer.
        module = (err.name or "").partition(".")[0]
        extra = _extra_providing(module)
        if extra is None:
            raise
        print(
            f"rshape: error: `rshape {args.command}` needs {module}, which is not installed: "
            f"pip install 'rshape_fast[{extra}]' (in a checkout: pip install '.[{extra}]')",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
