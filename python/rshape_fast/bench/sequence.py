"""`rshape bench sequence`: the sequence-level methods on the default models.

1. `streaming_bon` (early rejection) against `bon` at each N: mean final steering reward,
   generated tokens, wall time, and the ratios streaming / bon.
2. As Speculative Rejection measures it, the compute needed to reach a reward: for each N,
   the generated tokens and seconds `streaming_bon` needs (starting from N, 2N or 4N
   samples) to reach `bon`'s mean reward at N; both methods' reward at about equal
   generated tokens (streaming from 2N); and the loss at fixed N as a share of best-of-N's
   gain over a single base sample.
3. `segment_beam` and (given `--value-head`) `cd` against `bon`, `args` and `base` at
   roughly matched wall time: `bon`'s N is picked so its time, extrapolated from part 1,
   matches that method's.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from rshape_fast.bench.report import BenchReport, Column


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompts", type=int, help="test prompts (default 8; --quick 4)")
    parser.add_argument(
        "--max-new-tokens", type=int, help="response budget (default 48; --quick 16)"
    )
    parser.add_argument("--ns", help="comma-separated N values (default 8,16,32; --quick 4,8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--value-head", help="a value head folder: adds `cd` to part 3")


class _Runner:
    """Runs one method over the prompts: mean reward, tokens, calls and wall seconds."""

    def __init__(self, prompts: list[str], lm: Any, rm: Any, common: dict[str, Any]) -> None:
        self.prompts, self.lm, self.rm, self.common = prompts, lm, rm, common

    def __call__(self, **knobs: Any) -> dict[str, float]:
        from rshape_fast.decoding import generate

        t0 = time.perf_counter()
        results = generate(self.prompts, lm=self.lm, rm=self.rm, **{**self.common, **knobs})
        seconds = time.perf_counter() - t0
        return {
            "reward": float(np.mean([r.reward for r in results])),
            "tokens": float(sum(r.cost.generated_tokens for r in results)),
            "seconds": seconds,
            "lm_calls": float(sum(r.cost.lm_calls for r in results)),
            "rm_calls": float(sum(r.cost.rm_calls for r in results)),
        }


def run(report: BenchReport, args: argparse.Namespace) -> None:
    from rshape_fast.models import load_lm, load_reward_model
    from rshape_fast.prompts import load_prompts

    count = args.prompts or (4 if args.quick else 8)
    budget = args.max_new_tokens or (16 if args.quick else 48)
    ns = [int(x) for x in (args.ns or ("4,8" if args.quick else "8,16,32")).split(",")]
    checkpoint = max(budget // 4, 2)
    prompts = [p.text for p in load_prompts(split="test", limit=count)]
    lm = load_lm(device=args.device, dtype=args.dtype)
    rm = load_reward_model(device=args.device, dtype=args.dtype)
    common = dict(max_new_tokens=budget, seed=args.seed, top_p=0.9, batch_size=count)
    measure = _Runner(prompts, lm, rm, common)
    report.note(
        f"sequence-level methods: {count} test prompts, {budget} new tokens, temperature 0.7, "
        f"top-p 0.9, a checkpoint every {checkpoint} tokens, reject fraction 0.5",
        prompts=count,
        max_new_tokens=budget,
        checkpoint_tokens=checkpoint,
    )
    streams: dict[int, dict[str, float]] = {}

    def streaming(n: int) -> dict[str, float]:
        if n not in streams:
            streams[n] = measure(
                method="streaming_bon", n=n, checkpoint_tokens=checkpoint, reject_fraction=0.5
            )
        return streams[n]

    table = report.table(
        "1. streaming_bon against bon",
        [
            Column("n", "N"),
            Column("bon_reward", "bon reward", ".3f"),
            Column("stream_reward", "stream reward", ".3f"),
            Column("bon_tokens", "bon tokens", ".0f"),
            Column("stream_tokens", "stream tokens", ".0f"),
            Column("token_ratio", "token ratio", ".2f"),
            Column("bon_seconds", "bon s", ".1f"),
            Column("stream_seconds", "stream s", ".1f"),
            Column("time_ratio", "time ratio", ".2f"),
        ],
    )
    bons: dict[int, dict[str, float]] = {}
    for n in ns:
        bon = bons[n] = measure(method="bon", n=n)
        stream = streaming(n)
        table.add(
            n=n,
            bon_reward=bon["reward"],
            stream_reward=stream["reward"],
            bon_tokens=bon["tokens"],
            stream_tokens=stream["tokens"],
            token_ratio=stream["tokens"] / bon["tokens"],
            bon_seconds=bon["seconds"],
            stream_seconds=stream["seconds"],
            time_ratio=stream["seconds"] / bon["seconds"],
        )
    seconds_per_sample = float(np.mean([bons[n]["seconds"] / n for n in ns]))

    single = measure(method="bon", n=1)  # one base sample
    reach = report.table(
        "2. streaming_bon measured by the compute it needs to reach bon's reward",
        [
            Column("n", "N"),
            Column("bon_reward", "bon reward", ".3f"),
            Column("bon_tokens", "bon tokens", ".0f"),
            Column("reached_n", "streaming N' reaching it"),
            Column("reached_reward", "its reward", ".3f"),
            Column("reached_tokens", "its tokens", ".0f"),
            Column("tokens_over_bon", "tokens / bon", ".2f"),
            Column("double_reward", "streaming(2N) reward", ".3f"),
            Column("double_tokens", "its tokens", ".0f"),
            Column("loss_share", "loss at N / bon's gain", ".1%"),
        ],
    )
    for n in ns:
        bon = bons[n]
        reached = next(
            (m for m in (n, 2 * n, 4 * n) if streaming(m)["reward"] >= bon["reward"]), None
        )
        hit = streaming(reached) if reached is not None else None
        double = streaming(2 * n)
        gain = bon["reward"] - single["reward"]
        reach.add(
            n=n,
            bon_reward=bon["reward"],
            bon_tokens=bon["tokens"],
            reached_n=reached,
            reached_reward=None if hit is None else hit["reward"],
            reached_tokens=None if hit is None else hit["tokens"],
            tokens_over_bon=None if hit is None else hit["tokens"] / bon["tokens"],
            double_reward=double["reward"],
            double_tokens=double["tokens"],
            loss_share=(bon["reward"] - streams[n]["reward"]) / gain if gain > 0 else None,
        )
    report.note(
        f"one base sample: mean reward {single['reward']:.3f}", single_reward=single["reward"]
    )

    rows = [
        (
            "segment_beam (W=2, S=2)",
            measure(method="segment_beam", beam_width=2, segment_samples=2, temperature=0.7),
        )
    ]
    if args.value_head:
        cd = measure(method="cd", value_head=args.value_head, k=10, weight=1.5, top_p=None)
        rows.append(("cd (k=10, λ=1.5, greedy)", cd))
    # bon's time grows about linearly in N at this size: match each method's wall time.
    for name, row in list(rows):
        matched = max(1, round(row["seconds"] / seconds_per_sample))
        if matched not in bons:
            bons[matched] = measure(method="bon", n=matched)
        rows.append((f"bon (N={matched}, matched to {name.split()[0]})", bons[matched]))
    rows.append(("args (k=10, λ=0.5, srs)", measure(method="args", top_p=None)))
    base = measure(method="base", greedy=True, top_p=None)
    rows.append(("base (greedy)", base))
    matched_table = report.table(
        "3. segment_beam and cd against bon, args and base at matched wall time",
        [
            Column("method", "method"),
            Column("reward", "mean reward", ".3f"),
            Column("tokens", "generated tokens", ".0f"),
            Column("lm_calls", "LM calls", ".0f"),
            Column("rm_calls", "RM calls", ".0f"),
            Column("seconds", "seconds", ".1f"),
            Column("time_over_base", "time / base", ".2f"),
        ],
    )
    for name, row in rows:
        matched_table.add(method=name, **row, time_over_base=row["seconds"] / base["seconds"])
