"""One decoding step against what the hardware allows: fp32 against bf16, and the floors.

1. SRS-ARGS (k = 10, λ = 0.5, greedy, EOS ignored so every row runs the full length) on the
   default models at batch 8, with the LM and the reward model in fp32, in bf16, and fp32 LM
   with a bf16 reward model: seconds per phase (LM, RM, selection) and the speed-up over
   fp32; agreement with fp32 (prompts whose tokens are identical, tokens identical position
   by position) and the steering reward under the fp32 reward model, paired against fp32
   with a 95 % bootstrap interval.
2. Where the reward model's candidate forward spends its time (torch profiler: matmuls,
   attention, the rest) and which attention kernel runs with the block mask; the cost of
   building the mask itself.
3. Floors: the matmuls one step of each model must do (the same shapes, `torch.matmul` in
   the same dtype, timed alone), and each phase's time per step as a multiple of its floor.
4. The 1-token LM step at batch 1 against the weight-read floor (weight bytes over the read
   bandwidth of a large tensor).

    python benches/bench_step.py               # 8 prompts, 32 new tokens
    python benches/bench_step.py --quick       # 4 prompts, 8 new tokens
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from common import add_device_flag, check_device, print_load
from rshape_fast.decoding import generate
from rshape_fast.decoding.lm_state import LMState
from rshape_fast.kv_batch import KVBatch, block_mask
from rshape_fast.models import load_lm, load_reward_model
from rshape_fast.prompts import load_prompts

CONFIGS = (("float32", "float32"), ("bfloat16", "bfloat16"), ("float32", "bfloat16"))
K = 10


def median_seconds(fn: Callable[[], Any], repeats: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bootstrap_interval(diffs: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(diffs, size=(4000, diffs.size), replace=True).mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def linear_shapes(model: torch.nn.Module) -> list[tuple[int, int]]:
    """(in, out) of every Linear in the model's decoder layers."""
    return [
        (m.in_features, m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and ".layers." in name
    ]


def matmul_floor(
    shapes: list[tuple[int, int]], rows: int, dtype: torch.dtype, device: str
) -> float:
    """Seconds of `x[rows, in] @ W[in, out]` for every shape, back to back (median)."""
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

    return median_seconds(step)


Runs = dict[tuple[str, str], dict[str, Any]]


def part_dtypes(args: argparse.Namespace, prompts: list[str]) -> Runs:
    print("\n## 1. fp32 against bf16 (SRS-ARGS, k = 10, λ = 0.5, greedy, batch", args.batch, ")")
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
    print(
        "\n| LM | RM | seconds | LM s | RM s | select s | × fp32 (RM phase) | × fp32 (all) |"
        " identical prompts | identical tokens | steering reward | vs fp32 [95 % CI] |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (lm_dtype, rm_dtype), run in out.items():
        same = sum(a == b for a, b in zip(run["tokens"], ref["tokens"], strict=True))
        positions = [
            np.mean([x == y for x, y in zip(a, b, strict=False)]) if a else 1.0
            for a, b in zip(run["tokens"], ref["tokens"], strict=True)
        ]
        diff = run["reward"] - ref["reward"]
        low, high = bootstrap_interval(diff)
        print(
            f"| {lm_dtype} | {rm_dtype} | {run['seconds']:.1f} | {run['lm']:.1f} | "
            f"{run['rm']:.1f} | {run['select']:.2f} | {ref['rm'] / run['rm']:.2f} | "
            f"{ref['seconds'] / run['seconds']:.2f} | {same}/{len(prompts)} | "
            f"{np.mean(positions):.1%} | {run['reward'].mean():+.3f} | "
            f"{diff.mean():+.3f} [{low:+.3f}, {high:+.3f}] |"
        )
    return out


def rm_step_inputs(
    rm: Any, prompt: str, rows: int, response: int
) -> tuple[KVBatch, torch.Tensor, int]:
    """A reward-model KV batch of `rows` copies of a prompt's head plus `response` tokens,
    and one step's candidate blocks."""
    head, tail = rm.template_ids(prompt)
    body = rm.backbone_and_head()[0]
    batch = KVBatch(body, [head + [28] * response] * rows, pad_id=0)
    batch.forward()
    block = 1 + len(tail)
    cands = torch.randint(100, 5000, (rows, K))
    tail_t = torch.tensor(tail)
    blocks = torch.cat([cands.unsqueeze(-1), tail_t.expand(rows, K, len(tail))], 2)
    return batch, blocks.reshape(rows, K * block), block


def profile_rm_forward(args: argparse.Namespace, prompt: str, dtype: str) -> None:
    rm = load_reward_model(device=args.device, dtype=dtype)
    batch, blocks, block = rm_step_inputs(rm, prompt, args.batch, 16)

    def step() -> None:
        batch.append(torch.full((batch.rows,), 28))
        batch.forward_blocks(blocks, block)
        batch.crop(blocks.shape[1])

    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    totals: dict[str, float] = {}
    kernels = set()
    for event in prof.key_averages():
        name = event.key
        if name in ("aten::mm", "aten::addmm", "aten::bmm"):
            group = "matmul (projections, MLP)"
        elif "scaled_dot_product" in name:
            kernels.add(name)
            if name != "aten::scaled_dot_product_attention":
                continue  # the dispatched kernel's time is inside its parent's
            group = "attention (sdpa, total)"
        else:
            continue
        field = "self_cpu_time_total" if group.startswith("matmul") else "cpu_time_total"
        totals[group] = totals.get(group, 0.0) + getattr(event, field) / 1e6
    wall = median_seconds(step, repeats=5, warmup=1)
    print(
        f"\n{dtype}: {args.batch} rows × {blocks.shape[1]} candidate tokens, "
        f"{wall * 1e3:.1f} ms a forward; attention implementation "
        f"{rm.model.config._attn_implementation!r}, kernels {sorted(kernels)}"
    )
    for group, seconds in totals.items():
        print(f"  {group}: {seconds / 3 * 1e3:.1f} ms a forward ({seconds / 3 / wall:.0%})")
    full = torch.ones((args.batch, batch.mask.shape[1] + 1), dtype=torch.long)

    def build_mask() -> None:
        allowed = block_mask(full, 1, K, block)
        bias = torch.zeros(allowed.shape, dtype=rm.model.dtype)
        bias.masked_fill_(~allowed, torch.finfo(rm.model.dtype).min)

    mask_s = median_seconds(build_mask)
    print(
        f"  building the block mask and its bias: {mask_s * 1e3:.2f} ms "
        f"({mask_s / wall:.1%} of the forward)"
    )


def part_profile(args: argparse.Namespace, prompts: list[str]) -> None:
    print("\n## 2. Where the reward model's candidate forward spends its time")
    for dtype in ("float32", "bfloat16"):
        profile_rm_forward(args, prompts[0], dtype)


def part_floors(args: argparse.Namespace, prompts: list[str], runs: Runs) -> None:
    print("\n## 3. Each phase against its matmul floor (per decoding step, batch", args.batch, ")")
    print("\n| dtype | phase | tokens per step | measured ms | floor ms | × floor |")
    print("|---|---|---|---|---|---|")
    for dtype in ("float32", "bfloat16"):
        torch_dtype = getattr(torch, dtype)
        lm = load_lm(device=args.device, dtype=dtype)
        rm = load_reward_model(device=args.device, dtype=dtype)
        tail = rm.template_ids(prompts[0])[1]
        rm_rows = args.batch * (1 + K * (1 + len(tail)))
        config = lm.model.config
        lm_shapes = [*linear_shapes(lm.model), (config.hidden_size, config.vocab_size)]
        rm_shapes = linear_shapes(rm.model)
        run = runs[(dtype, dtype)]
        steps = args.tokens
        for phase, shapes, rows in (("LM", lm_shapes, args.batch), ("RM", rm_shapes, rm_rows)):
            floor = matmul_floor(shapes, rows, torch_dtype, args.device)
            measured = run[phase.lower()] / steps
            print(
                f"| {dtype} | {phase} | {rows} | {measured * 1e3:.1f} | {floor * 1e3:.1f} | "
                f"{measured / floor:.2f} |"
            )


def one_token_step(lm: Any, prompt: str) -> Callable[[], Any]:
    state = LMState(lm, [lm.encode(prompt)])
    state.prefill()
    token = torch.tensor([28])
    return lambda: state.advance(token)


def part_weight_floor(args: argparse.Namespace, prompts: list[str]) -> None:
    print("\n## 4. A 1-token LM step at batch 1 against the weight-read floor")
    buffer = torch.ones(256 * 1024 * 1024 // 4, dtype=torch.float32, device=args.device)
    bandwidth = buffer.numel() * 4 / median_seconds(buffer.sum)
    print(f"read bandwidth (sum over a 256 MiB tensor): {bandwidth / 1e9:.1f} GB/s")
    print("\n| dtype | weight MB | floor ms | measured ms | × floor |")
    print("|---|---|---|---|---|")
    for dtype in ("float32", "bfloat16"):
        lm = load_lm(device=args.device, dtype=dtype)
        step_s = median_seconds(one_token_step(lm, prompts[0]), repeats=15)
        weights = sum(p.numel() * p.element_size() for p in lm.model.parameters())
        floor = weights / bandwidth
        print(
            f"| {dtype} | {weights / 1e6:.0f} | {floor * 1e3:.1f} | {step_s * 1e3:.1f} | "
            f"{step_s / floor:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 prompts, 8 new tokens")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per prompt")
    parser.add_argument("--batch", type=int, default=8, help="rows decoded together")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    add_device_flag(parser)
    args = parser.parse_args()
    check_device(args.device)
    if args.quick:
        args.tokens, args.batch = 8, 4
    torch.set_num_threads(args.threads)
    print_load()
    prompts = [p.text for p in load_prompts(split="test", limit=args.batch)]
    runs = part_dtypes(args, prompts)
    part_profile(args, prompts)
    part_floors(args, prompts, runs)
    part_weight_floor(args, prompts)


if __name__ == "__main__":
    main()
