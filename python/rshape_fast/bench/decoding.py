"""`rshape bench decoding`: end-to-end SRS-ARGS on the default models against the naive loop.

The naive loop (`rshape_fast.bench.naive`) has the semantics of the authors' code: batch 1,
no KV caches, the reward model re-run on the whole sequence for every candidate, a
bisection threshold.

Both decode greedily with the same k and length, EOS ignored so every row runs the full
length; the run checks they emit the same tokens. Prints tokens/s and ratios measured in
this run, the phase split of the fast path, one reward ensemble, and the cost of SRS
shaping over raw ARGS.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rshape_fast.bench import synthetic
from rshape_fast.bench.report import BenchReport, Column
from rshape_fast.bench.synthetic import SIZES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--synthetic",
        choices=tuple(SIZES),
        help="randomly initialised models of this size instead of the default ones: "
        "base decoding against SRS-ARGS at batch 1, 8 and 32, and each phase against its "
        "floor (rshape_fast.bench.synthetic; bf16 unless --dtype)",
    )
    parser.add_argument(
        "--tokenizer",
        help="--synthetic: a tokenizer folder (default: the bundled LM's; the GPU check "
        "carries only these files)",
    )
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per prompt")
    parser.add_argument("--naive-prompts", type=int, default=2, help="prompts for the naive loop")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the batched run")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")


def _phases(results: list[Any]) -> dict[str, float]:
    """Shares of wall time: LM, reward model, top-k + shaping + selection, the rest."""
    total = sum(r.cost.seconds_total for r in results)
    lm = sum(r.cost.seconds_lm for r in results)
    rm = sum(r.cost.seconds_rm for r in results)
    select = sum(r.cost.seconds_select for r in results)
    return {
        "lm_share": lm / total,
        "rm_share": rm / total,
        "select_share": select / total,
        "other_share": (total - lm - rm - select) / total,
    }


def run(report: BenchReport, args: argparse.Namespace) -> None:
    import torch

    from rshape_fast.bench.naive import naive_args
    from rshape_fast.decoding import generate
    from rshape_fast.models import load_lm, load_reward_model
    from rshape_fast.prompts import load_prompts

    if args.synthetic:
        synthetic.run(report, args)
        return
    if args.quick:
        args.tokens, args.naive_prompts = 16, 1
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    lm = load_lm(device=args.device, dtype=args.dtype)
    rm = load_reward_model(device=args.device, dtype=args.dtype)
    count = max(args.batch, args.naive_prompts)
    prompts = [p.text for p in load_prompts(split="test", limit=count)]
    knobs = {"k": 10, "weight": 0.5, "max_new_tokens": args.tokens}
    # Both sides run to the full length, so tokens/s compares like with like.
    eos = lm.eos_token_ids
    lm.eos_token_ids = frozenset()
    try:
        naive_prompts = prompts[: args.naive_prompts]
        t0 = time.perf_counter()
        naive = [naive_args(lm, rm, p, max_new_tokens=args.tokens) for p in naive_prompts]
        naive_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fast1 = generate(naive_prompts, lm=lm, rm=rm, batch_size=1, **knobs)
        fast1_s = time.perf_counter() - t0
        batch = prompts[: args.batch]
        runs = {}
        for shaping in ("srs", "raw"):
            t0 = time.perf_counter()
            results = generate(batch, lm=lm, rm=rm, batch_size=args.batch, shaping=shaping, **knobs)
            runs[shaping] = (results, time.perf_counter() - t0)
        judge = load_reward_model("smollm2-chat-judge", device=args.device, dtype=args.dtype)
        ensemble = []
        for name, reward in (
            ("sentiment alone", rm),
            ("chat-judge alone", judge),
            ("min(sentiment, chat-judge)", [rm, judge]),
        ):
            t0 = time.perf_counter()
            results = generate(
                batch, lm=lm, rm=reward, ensemble="min", batch_size=args.batch, **knobs
            )
            ensemble.append((name, results, time.perf_counter() - t0))
    finally:
        lm.eos_token_ids = eos

    naive_tokens = sum(len(ids) for ids in naive)
    naive_rate = naive_tokens / naive_s
    table = report.table(
        f"SRS-ARGS, k = 10, λ = 0.5, greedy, {args.tokens} new tokens, {args.dtype}",
        [
            Column("run", "run"),
            Column("tokens", "tokens"),
            Column("seconds", "seconds", ".2f"),
            Column("tokens_per_s", "tokens/s", ".1f"),
            Column("over_naive", "× naive", ".1f"),
        ],
    )
    rows = [
        ("naive loop, batch 1", naive_tokens, naive_s),
        ("rshape_fast, batch 1", sum(len(r.token_ids) for r in fast1), fast1_s),
    ]
    for shaping, (results, seconds) in runs.items():
        tokens = sum(len(r.token_ids) for r in results)
        rows.append((f"rshape_fast {shaping}, batch {args.batch}", tokens, seconds))
    for name, tokens, seconds in rows:
        rate = tokens / seconds
        table.add(
            run=name,
            tokens=tokens,
            seconds=seconds,
            tokens_per_s=rate,
            over_naive=rate / naive_rate,
        )
    same = all(r.token_ids == ids for r, ids in zip(fast1, naive, strict=True))
    report.note(f"batch-1 fast path emits the naive loop's tokens: {same}", same_tokens=same)

    phases = report.table(
        "phase split of the fast path (share of wall time)",
        [
            Column("run", "run"),
            Column("lm_share", "LM", ".1%"),
            Column("rm_share", "reward model", ".1%"),
            Column("select_share", "top-k + shaping + selection", ".2%"),
            Column("other_share", "other", ".1%"),
        ],
    )
    for name, results in (
        ("batch 1", fast1),
        *((f"{s}, batch {args.batch}", r) for s, (r, _) in runs.items()),
    ):
        phases.add(run=name, **_phases(results))

    members = report.table(
        f"reward ensembles (SRS-ARGS, batch {args.batch}): each member alone, then both",
        [
            Column("reward", "reward"),
            Column("seconds", "seconds", ".2f"),
            Column("rm_seconds", "RM s", ".2f"),
            Column("tokens_per_s", "tokens/s", ".1f"),
            Column("reward_path", "reward path"),
        ],
    )
    for name, results, seconds in ensemble:
        members.add(
            reward=name,
            seconds=seconds,
            rm_seconds=sum(r.cost.seconds_rm for r in results),
            tokens_per_s=sum(len(r.token_ids) for r in results) / seconds,
            reward_path=results[0].extras["reward_path"],
        )

    srs, srs_s = runs["srs"]
    raw, _ = runs["raw"]
    steps = max(len(r.token_ids) for r in srs)
    extra = sum(r.cost.seconds_select for r in srs) - sum(r.cost.seconds_select for r in raw)
    report.note(
        f"shaping cost: SRS selection phase − raw selection phase = "
        f"{extra / steps * 1e3:.3f} ms a step = {extra / srs_s:.3%} of SRS step time",
        shaping_ms_per_step=extra / steps * 1e3,
        shaping_share=extra / srs_s,
    )
