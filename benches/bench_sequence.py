"""End-to-end benchmark of the sequence-level methods on the default models.

1. `streaming_bon` (early rejection) against `bon` at N ∈ {8, 16, 32}: mean final steering
   reward, generated tokens, wall time, and the ratios streaming / bon.
1b. As Speculative Rejection measures it, the compute needed to reach a reward: for each N,
   the generated tokens and seconds `streaming_bon` needs (starting from N, 2N or 4N
   samples) to reach `bon`'s mean reward at N; both methods' reward at about equal generated
   tokens (streaming from 2N); and the loss at fixed N as a share of best-of-N's gain over a
   single base sample.
2. `segment_beam` and (given `--value-head`) `cd` against `bon` and `args` at roughly
   matched wall time: for each, `bon`'s N is picked so its time, extrapolated from part 1,
   matches that method's.

Prints markdown tables; never asserts anything about timings (docs/architecture.md).

    python benches/bench_sequence.py            # 8 test prompts, 48 new tokens
    python benches/bench_sequence.py --quick    # 4 prompts, 16 new tokens, N ∈ {4, 8}
    python benches/bench_sequence.py --value-head runs/cd/head   # also `cd` (rshape cd-train)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from common import add_device_flag, check_device, print_load
from rshape_fast.decoding import generate
from rshape_fast.models import load_lm, load_reward_model
from rshape_fast.prompts import load_prompts


def run(prompts: list[str], lm: Any, rm: Any, **knobs: Any) -> dict[str, float]:
    """Mean reward, total generated tokens and wall seconds of one method over the prompts."""
    t0 = time.perf_counter()
    results = generate(prompts, lm=lm, rm=rm, **knobs)
    seconds = time.perf_counter() - t0
    return {
        "reward": float(np.mean([r.reward for r in results])),
        "tokens": float(sum(r.cost.generated_tokens for r in results)),
        "seconds": seconds,
        "lm_calls": float(sum(r.cost.lm_calls for r in results)),
        "rm_calls": float(sum(r.cost.rm_calls for r in results)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--prompts", type=int, help="number of test prompts")
    parser.add_argument("--max-new-tokens", type=int, help="response budget")
    parser.add_argument("--ns", type=str, help="comma-separated N values")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--value-head", help="a value head folder: adds `cd` to part 2")
    add_device_flag(parser)
    args = parser.parse_args()
    check_device(args.device)
    print_load()
    count = args.prompts or (4 if args.quick else 8)
    budget = args.max_new_tokens or (16 if args.quick else 48)
    ns = [int(x) for x in (args.ns or ("4,8" if args.quick else "8,16,32")).split(",")]
    checkpoint = max(budget // 4, 2)
    prompts = [p.text for p in load_prompts(split="test")][:count]
    lm, rm = load_lm(device=args.device), load_reward_model(device=args.device)
    common = dict(max_new_tokens=budget, seed=args.seed, top_p=0.9, batch_size=count)
    print(
        f"## sequence-level methods: {count} test prompts, {budget} new tokens, "
        f"temperature 0.7, top-p 0.9, checkpoint every {checkpoint} tokens, reject 0.5\n"
    )

    print("### streaming_bon vs bon\n")
    print(
        "| N | bon reward | stream reward | bon tokens | stream tokens | token ratio "
        "| bon s | stream s | time ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    per_sample_seconds = []
    bon_by_n = {}
    stream_by_n: dict[int, dict[str, float]] = {}

    def streaming(n: int) -> dict[str, float]:
        if n not in stream_by_n:
            stream_by_n[n] = run(
                prompts,
                lm,
                rm,
                method="streaming_bon",
                n=n,
                checkpoint_tokens=checkpoint,
                reject_fraction=0.5,
                **common,
            )
        return stream_by_n[n]

    for n in ns:
        bon = run(prompts, lm, rm, method="bon", n=n, **common)
        stream = streaming(n)
        bon_by_n[n] = bon
        per_sample_seconds.append(bon["seconds"] / n)
        print(
            f"| {n} | {bon['reward']:.3f} | {stream['reward']:.3f} | {bon['tokens']:.0f} "
            f"| {stream['tokens']:.0f} | {stream['tokens'] / bon['tokens']:.2f} "
            f"| {bon['seconds']:.1f} | {stream['seconds']:.1f} "
            f"| {stream['seconds'] / bon['seconds']:.2f} |",
            flush=True,
        )

    print("\n### streaming_bon measured by the compute it needs to reach bon's reward\n")
    single = run(prompts, lm, rm, method="bon", n=1, **common)  # one base sample
    print(
        "| N | bon reward | bon tokens | bon s | streaming N' reaching it | its reward "
        "| its tokens | its s | tokens / bon | streaming(2N) reward at tokens "
        "| loss at N / bon's gain |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in ns:
        bon = bon_by_n[n]
        reached = next(
            (m for m in (n, 2 * n, 4 * n) if streaming(m)["reward"] >= bon["reward"]), None
        )
        hit = streaming(reached) if reached is not None else None
        double = streaming(2 * n)
        gain = bon["reward"] - single["reward"]
        loss = (bon["reward"] - stream_by_n[n]["reward"]) / gain if gain > 0 else float("nan")
        reach = (
            f"{reached} | {hit['reward']:.3f} | {hit['tokens']:.0f} | {hit['seconds']:.1f} "
            f"| {hit['tokens'] / bon['tokens']:.2f}"
            if hit is not None and reached is not None
            else "none of N, 2N, 4N | – | – | – | –"
        )
        print(
            f"| {n} | {bon['reward']:.3f} | {bon['tokens']:.0f} | {bon['seconds']:.1f} | {reach} "
            f"| {double['reward']:.3f} at {double['tokens']:.0f} | {loss:.1%} |",
            flush=True,
        )
    print(f"\n(one base sample: mean reward {single['reward']:.3f})")

    print("\n### segment_beam and cd vs bon vs args at matched wall time\n")
    rows = [
        (
            "segment_beam (W=2, S=2)",
            run(
                prompts,
                lm,
                rm,
                method="segment_beam",
                beam_width=2,
                segment_samples=2,
                temperature=0.7,
                **common,
            ),
        )
    ]
    if args.value_head:
        cd = run(
            prompts,
            lm,
            rm,
            method="cd",
            value_head=args.value_head,
            k=10,
            weight=1.5,
            **{**common, "top_p": None},
        )
        rows.append(("cd (k=10, λ=1.5, greedy)", cd))
    # bon's time grows about linearly in N at this size: match each method's wall time.
    seconds_per_sample = float(np.mean(per_sample_seconds))
    for name, row in list(rows):
        matched_n = max(1, round(row["seconds"] / seconds_per_sample))
        if matched_n not in bon_by_n:
            bon_by_n[matched_n] = run(prompts, lm, rm, method="bon", n=matched_n, **common)
        rows.append((f"bon (N={matched_n}, matched to {name.split()[0]})", bon_by_n[matched_n]))
    rows.append(
        (
            "args (k=10, λ=0.5, srs)",
            run(prompts, lm, rm, method="args", **{**common, "top_p": None}),
        )
    )
    base = run(prompts, lm, rm, method="base", greedy=True, **{**common, "top_p": None})
    rows.append(("base (greedy)", base))
    print(
        "| method | mean reward | generated tokens | lm calls | rm calls | seconds | time / base |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, row in rows:
        print(
            f"| {name} | {row['reward']:.3f} | {row['tokens']:.0f} | {row['lm_calls']:.0f} "
            f"| {row['rm_calls']:.0f} | {row['seconds']:.1f} "
            f"| {row['seconds'] / base['seconds']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
