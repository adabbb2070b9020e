"""End-to-end SRS-ARGS decoding on the default models: our fast path vs the naive loop.

The naive loop has the semantics of the authors' code: batch 1, no KV caches, the reward
model re-run on the whole sequence for every candidate, bisection threshold. Both decode
greedily with the same k and length; the run checks they emit the same tokens.

    python benches/bench_decoding.py            # 64 new tokens, 2 naive prompts, batch 1 and 8
    python benches/bench_decoding.py --quick    # 16 new tokens, 1 naive prompt

Prints tokens/s and ratios measured in this run, the phase breakdown of the fast path, and
the cost of SRS shaping over raw ARGS. Not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from common import add_device_flag, check_device, print_load
from rshape_fast.decoding import generate
from rshape_fast.models import load_lm, load_reward_model
from rshape_fast.prompts import load_prompts

# The naive loop lives with the tests that check the fast path against it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from naive_decoding import naive_args


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per prompt")
    parser.add_argument("--naive-prompts", type=int, default=2, help="prompts for the naive loop")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the batched run")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="16 tokens, 1 naive prompt")
    parser.add_argument("--dtype", default="float32", help="dtype of both models")
    add_device_flag(parser)
    args = parser.parse_args()
    check_device(args.device)
    print_load()
    if args.quick:
        args.tokens, args.naive_prompts = 16, 1
    torch.set_num_threads(args.threads)
    lm = load_lm(device=args.device, dtype=args.dtype)
    rm = load_reward_model(device=args.device, dtype=args.dtype)
    prompts = [
        p.text for p in load_prompts(split="test", limit=max(args.batch, args.naive_prompts))
    ]
    knobs = {"k": 10, "weight": 0.5, "max_new_tokens": args.tokens}
    # Both sides run to the full length, so tokens/s compares like with like.
    eos = set(lm.eos_token_ids)
    lm.eos_token_ids = frozenset()

    naive_prompts = prompts[: args.naive_prompts]
    t0 = time.perf_counter()
    naive = [naive_args(lm, rm, p, max_new_tokens=args.tokens) for p in naive_prompts]
    naive_s = time.perf_counter() - t0
    naive_tokens = sum(len(ids) for ids in naive)

    t0 = time.perf_counter()
    fast1 = generate(naive_prompts, lm=lm, rm=rm, batch_size=1, **knobs)
    fast1_s = time.perf_counter() - t0
    fast1_tokens = sum(len(r.token_ids) for r in fast1)
    same = all(r.token_ids == ids for r, ids in zip(fast1, naive, strict=True))

    batch_prompts = prompts[: args.batch]
    runs = {}
    for shaping in ("srs", "raw"):
        t0 = time.perf_counter()
        results = generate(
            batch_prompts, lm=lm, rm=rm, batch_size=args.batch, shaping=shaping, **knobs
        )
        runs[shaping] = (results, time.perf_counter() - t0)
    # One ensemble row: each member alone, then their worst case, at the same knobs.
    judge = load_reward_model("smollm2-chat-judge", device=args.device, dtype=args.dtype)
    ensemble_rows = []
    for name, reward in (
        ("sentiment alone", rm),
        ("chat-judge alone", judge),
        ("min(sentiment, chat-judge)", [rm, judge]),
    ):
        t0 = time.perf_counter()
        results = generate(
            batch_prompts, lm=lm, rm=reward, ensemble="min", batch_size=args.batch, **knobs
        )
        ensemble_rows.append((name, results, time.perf_counter() - t0))
    lm.eos_token_ids = frozenset(eos)

    naive_rate = naive_tokens / naive_s
    print(
        f"\nSRS-ARGS, k=10, λ=0.5, greedy, {args.tokens} new tokens, {args.threads} torch "
        f"threads, {args.dtype}"
    )
    print(f"{'run':<34}{'tokens':>8}{'seconds':>10}{'tokens/s':>10}{'× naive':>9}")
    rows = [
        ("naive loop, batch 1", naive_tokens, naive_s),
        ("rshape_fast, batch 1", fast1_tokens, fast1_s),
    ]
    for shaping, (results, seconds) in runs.items():
        tokens = sum(len(r.token_ids) for r in results)
        rows.append((f"rshape_fast {shaping}, batch {args.batch}", tokens, seconds))
    for name, tokens, seconds in rows:
        rate = tokens / seconds
        print(f"{name:<34}{tokens:>8}{seconds:>10.2f}{rate:>10.1f}{rate / naive_rate:>8.1f}×")
    print(f"batch-1 fast path emits the naive loop's tokens: {same}")

    print("\nphase breakdown of the fast path (share of wall time)")
    for name, results in (
        ("batch 1", fast1),
        *((f"{s}, batch {args.batch}", r) for s, (r, _) in runs.items()),
    ):
        total = sum(r.cost.seconds_total for r in results)
        lm_s = sum(r.cost.seconds_lm for r in results)
        rm_s = sum(r.cost.seconds_rm for r in results)
        sel_s = sum(r.cost.seconds_select for r in results)
        other = total - lm_s - rm_s - sel_s
        print(
            f"  {name:<16} LM {lm_s / total:6.1%}  RM {rm_s / total:6.1%}  "
            f"top-k+shaping+selection {sel_s / total:6.2%}  other {other / total:6.1%}"
        )
    print(f"\nreward ensembles (SRS-ARGS, batch {args.batch}): the cost of each member and of both")
    print(f"{'reward':<30}{'seconds':>9}{'RM s':>8}{'tokens/s':>10}  reward path")
    for name, results, seconds in ensemble_rows:
        tokens = sum(len(r.token_ids) for r in results)
        rm_s = sum(r.cost.seconds_rm for r in results)
        path = results[0].extras["reward_path"]
        print(f"{name:<30}{seconds:>9.2f}{rm_s:>8.2f}{tokens / seconds:>10.1f}  {path}")

    srs_results, srs_s = runs["srs"]
    raw_results, _ = runs["raw"]
    steps = max(len(r.token_ids) for r in srs_results)
    extra = sum(r.cost.seconds_select for r in srs_results) - sum(
        r.cost.seconds_select for r in raw_results
    )
    print(
        f"\nshaping cost: SRS selection phase − raw selection phase = {extra / steps * 1e3:.3f} ms "
        f"a step = {extra / srs_s:.3%} of SRS step time"
    )


if __name__ == "__main__":
    main()
