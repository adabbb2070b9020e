"""`rshape bench step`: one decoding step against what the hardware allows.

1. SRS-ARGS (k = 10, λ = 0.5, greedy, EOS ignored so every row runs the full length) on the
   default models at batch `--batch`, with the LM and the reward model in fp32, in bf16,
   and an fp32 LM with a bf16 reward model: seconds per phase (LM, RM, selection) and the
   speed-up over fp32; agreement with fp32 (prompts whose tokens are identical, tokens
   identical position by position) and the steering reward under the fp32 reward model,
   paired against fp32 with a 95 % bootstrap interval.
2. Where the reward model's candidate forward spends its time (torch profiler: matmuls,
   attention) and which attention kernel runs with the block mask; the cost of building
   the mask itself.
3. Floors: the matmuls one step of each model must do (the same shapes, `torch.matmul` in
   the same dtype, timed alone), and each phase's time per step as a multiple of its floor.
4. The 1-token LM step at batch 1 against the weight-read floor (weight bytes over the read
   bandwidth of a large tensor).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from rshape_fast.bench.report import BenchReport, Column, median_seconds, synced

CONFIGS = (("float32", "float32"), ("bfloat16", "bfloat16"), ("float32", "bfloat16"))
K = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per prompt")
    parser.add_argument("--batch", type=int, default=8, help="rows decoded together")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")


def bootstrap_interval(diffs: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(diffs, size=(4000, diffs.size), replace=True).mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def linear_shapes(model: Any) -> list[tuple[int, int]]:
    """(in, out) of every Linear in the model's decoder layers."""
    import torch

    return [
        (m.in_features, m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and ".layers." in name
    ]


def matmul_floor(shapes: list[tuple[int, int]], rows: int, dtype: Any, device: str) -> float:
    """Seconds of `x[rows, in] @ W[in, out]` for every shape, back to back (median)."""
    import torch

    pairs = [
        (
            torch.randn(rows, i, dtype=dtype, device=device),
            torch.randn(o, i, dtype=dtype, device=device),
        )
        for i, o in shapes
    ]

    def step() -> None:
        for x, w in pairs:
            torch.matmul(x, w.T)

    return median_seconds(synced(step, device), min_repeats=7, warmup=2)


Runs = dict[tuple[str, str], dict[str, Any]]


def part_dtypes(report: BenchReport, args: argparse.Namespace, prompts: list[str]) -> Runs:
    from rshape_fast.decoding import generate
    from rshape_fast.models import load_lm, load_reward_model

    judge = load_reward_model(device=args.device)  # fp32: the steering reward of every config
    out: Runs = {}
    for lm_dtype, rm_dtype in CONFIGS:
        lm = load_lm(device=args.device, dtype=lm_dtype)
        rm = load_reward_model(device=args.device, dtype=rm_dtype)
        lm.eos_token_ids = frozenset()  # every row runs the full length
        generate(prompts[:1], lm=lm, rm=rm, max_new_tokens=2)  # warm-up
        t0 = time.perf_counter()
        results = generate(
            prompts, lm=lm, rm=rm, k=K, batch_size=args.batch, max_new_tokens=args.tokens
        )
        seconds = time.perf_counter() - t0
        out[(lm_dtype, rm_dtype)] = {
            "seconds": seconds,
            "lm": sum(r.cost.seconds_lm for r in results),
            "rm": sum(r.cost.seconds_rm for r in results),
            "select": sum(r.cost.seconds_select for r in results),
            "tokens": [r.token_ids for r in results],
            "reward": judge.score(prompts, [r.text for r in results]).astype(np.float64),
        }
    ref = out[CONFIGS[0]]
    table = report.table(
        f"1. fp32 against bf16 (SRS-ARGS, k = {K}, λ = 0.5, greedy, batch {args.batch})",
        [
            Column("lm_dtype", "LM"),
            Column("rm_dtype", "RM"),
            Column("seconds", "seconds", ".1f"),
            Column("lm_seconds", "LM s", ".1f"),
            Column("rm_seconds", "RM s", ".1f"),
            Column("select_seconds", "select s", ".2f"),
            Column("rm_speedup", "× fp32 (RM phase)", ".2f"),
            Column("speedup", "× fp32 (all)", ".2f"),
            Column("identical_prompts", "identical prompts"),
            Column("identical_tokens", "identical tokens", ".1%"),
            Column("reward", "steering reward", "+.3f"),
            Column("reward_vs_fp32", "vs fp32", "+.3f"),
            Column("ci_low", "95 % CI low", "+.3f"),
            Column("ci_high", "95 % CI high", "+.3f"),
        ],
    )
    for (lm_dtype, rm_dtype), run in out.items():
        same = sum(a == b for a, b in zip(run["tokens"], ref["tokens"], strict=True))
        positions = [
            np.mean([x == y for x, y in zip(a, b, strict=False)]) if a else 1.0
            for a, b in zip(run["tokens"], ref["tokens"], strict=True)
        ]
        diff = run["reward"] - ref["reward"]
        low, high = bootstrap_interval(diff)
        table.add(
            lm_dtype=lm_dtype,
            rm_dtype=rm_dtype,
            seconds=run["seconds"],
            lm_seconds=run["lm"],
            rm_seconds=run["rm"],
            select_seconds=run["select"],
            rm_speedup=ref["rm"] / run["rm"],
            speedup=ref["seconds"] / run["seconds"],
            identical_prompts=f"{same}/{len(prompts)}",
            identical_tokens=float(np.mean(positions)),
            reward=float(run["reward"].mean()),
            reward_vs_fp32=float(diff.mean()),
            ci_low=low,
            ci_high=high,
        )
    return out


def rm_step_inputs(rm: Any, prompt: str, rows: int, response: int) -> tuple[Any, Any, int]:
    """A reward-model KV batch of `rows` copies of a prompt's head plus `response` tokens,
    and one step's candidate blocks."""
    import torch

    from rshape_fast.kv_batch import KVBatch

    head, tail = rm.template_ids(prompt)
    body = rm.backbone_and_head()[0]
    batch = KVBatch(body, [head + [28] * response] * rows, pad_id=0)
    batch.forward()
    block = 1 + len(tail)
    cands = torch.randint(100, 5000, (rows, K), device=batch.device)
    tail_t = torch.tensor(tail, device=batch.device)
    blocks = torch.cat([cands.unsqueeze(-1), tail_t.expand(rows, K, len(tail))], 2)
    return batch, blocks.reshape(rows, K * block), block


def part_profile(report: BenchReport, args: argparse.Namespace, prompt: str) -> None:
    import torch

    from rshape_fast.kv_batch import block_mask
    from rshape_fast.models import load_reward_model

    table = report.table(
        "2. where the reward model's candidate forward spends its time",
        [
            Column("dtype", "dtype"),
            Column("forward_ms", "forward ms", ".1f"),
            Column("matmul_share", "matmul share", ".0%"),
            Column("attention_share", "attention share", ".0%"),
            Column("mask_ms", "block mask ms", ".2f"),
            Column("attention", "attention implementation"),
            Column("kernels", "attention kernels"),
        ],
    )
    for dtype in ("float32", "bfloat16"):
        rm = load_reward_model(device=args.device, dtype=dtype)
        batch, blocks, block = rm_step_inputs(rm, prompt, args.batch, 16)

        def step(batch: Any = batch, blocks: Any = blocks, block: int = block) -> None:
            batch.append(torch.full((batch.rows,), 28, device=batch.device))
            batch.forward_blocks(blocks, block)
            batch.crop(blocks.shape[1])

        step()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step()
        totals = {"matmul": 0.0, "attention": 0.0}
        kernels = set()
        for event in prof.key_averages():
            name = event.key
            if name in ("aten::mm", "aten::addmm", "aten::bmm"):
                totals["matmul"] += event.self_cpu_time_total / 1e6
            elif "scaled_dot_product" in name:
                kernels.add(name)
                # The dispatched kernel's time is inside its parent's.
                if name == "aten::scaled_dot_product_attention":
                    totals["attention"] += event.cpu_time_total / 1e6
        wall = median_seconds(step, warmup=1)
        full = torch.ones((args.batch, batch.mask.shape[1] + 1), dtype=torch.long)

        def build_mask(full: Any = full, block: int = block, rm: Any = rm) -> None:
            allowed = block_mask(full, 1, K, block)
            bias = torch.zeros(allowed.shape, dtype=rm.model.dtype)
            bias.masked_fill_(~allowed, torch.finfo(rm.model.dtype).min)

        table.add(
            dtype=dtype,
            forward_ms=wall * 1e3,
            matmul_share=totals["matmul"] / 3 / wall,
            attention_share=totals["attention"] / 3 / wall,
            mask_ms=median_seconds(build_mask, min_repeats=7, warmup=2) * 1e3,
            attention=rm.model.config._attn_implementation,
            kernels=", ".join(sorted(kernels)),
        )


def part_floors(report: BenchReport, args: argparse.Namespace, prompt: str, runs: Runs) -> None:
    import torch

    from rshape_fast.models import load_lm, load_reward_model

    table = report.table(
        f"3. each phase against its matmul floor (per decoding step, batch {args.batch})",
        [
            Column("dtype", "dtype"),
            Column("phase", "phase"),
            Column("rows", "tokens per step"),
            Column("measured_ms", "measured ms", ".1f"),
            Column("floor_ms", "floor ms", ".1f"),
            Column("over_floor", "× floor", ".2f"),
        ],
    )
    for dtype in ("float32", "bfloat16"):
        lm = load_lm(device=args.device, dtype=dtype)
        rm = load_reward_model(device=args.device, dtype=dtype)
        tail = rm.template_ids(prompt)[1]
        rm_rows = args.batch * (1 + K * (1 + len(tail)))
        config = lm.model.config
        lm_shapes = [*linear_shapes(lm.model), (config.hidden_size, config.vocab_size)]
        run = runs[(dtype, dtype)]
        for phase, shapes, rows in (
            ("LM", lm_shapes, args.batch),
            ("RM", linear_shapes(rm.model), rm_rows),
        ):
            floor = matmul_floor(shapes, rows, getattr(torch, dtype), args.device)
            measured = run[phase.lower()] / args.tokens
            table.add(
                dtype=dtype,
                phase=phase,
                rows=rows,
                measured_ms=measured * 1e3,
                floor_ms=floor * 1e3,
                over_floor=measured / floor,
            )


def one_token_step(lm: Any, prompt: str) -> Callable[[], Any]:
    import torch

    from rshape_fast.decoding.lm_state import LMState

    state = LMState(lm, [lm.encode(prompt)])
    state.prefill()
    token = torch.tensor([28], device=lm.device)
    return lambda: state.advance(token)


def read_bandwidth(device: str) -> float:
    """Bytes per second of a sum over a 256 MiB tensor: the read floor of a weight pass."""
    import torch

    buffer = torch.ones(256 * 1024 * 1024 // 4, dtype=torch.float32, device=device)
    seconds = median_seconds(synced(buffer.sum, device), min_repeats=7, warmup=2)
    return buffer.numel() * 4 / seconds


def part_weight_floor(report: BenchReport, args: argparse.Namespace, prompt: str) -> None:
    from rshape_fast.models import load_lm

    bandwidth = read_bandwidth(args.device)
    report.note(
        f"read bandwidth (sum over a 256 MiB tensor): {bandwidth / 1e9:.1f} GB/s",
        read_gb_s=bandwidth / 1e9,
    )
    table = report.table(
        "4. a 1-token LM step at batch 1 against the weight-read floor",
        [
            Column("dtype", "dtype"),
            Column("weight_mb", "weight MB", ".0f"),
            Column("floor_ms", "floor ms", ".1f"),
            Column("measured_ms", "measured ms", ".1f"),
            Column("over_floor", "× floor", ".2f"),
        ],
    )
    for dtype in ("float32", "bfloat16"):
        lm = load_lm(device=args.device, dtype=dtype)
        step_s = median_seconds(one_token_step(lm, prompt), min_repeats=15, warmup=2)
        weights = sum(p.numel() * p.element_size() for p in lm.model.parameters())
        floor = weights / bandwidth
        table.add(
            dtype=dtype,
            weight_mb=weights / 1e6,
            floor_ms=floor * 1e3,
            measured_ms=step_s * 1e3,
            over_floor=step_s / floor,
        )


def run(report: BenchReport, args: argparse.Namespace) -> None:
    import torch

    from rshape_fast.prompts import load_prompts

    if args.quick:
        args.tokens, args.batch = 8, 4
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    prompts = [p.text for p in load_prompts(split="test", limit=args.batch)]
    runs = part_dtypes(report, args, prompts)
    part_profile(report, args, prompts[0])
    part_floors(report, args, prompts[0], runs)
    part_weight_floor(report, args, prompts[0])
