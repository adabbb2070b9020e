"""Microbenchmarks of the Rust kernels against numpy and torch, measured in the same run.

    python benches/bench_kernels.py           # the full table (a few minutes)
    python benches/bench_kernels.py --quick   # a short run over fewer sizes

Top-k: for each (B, V, k), the median time of ``rshape_fast.topk``, ``torch.topk`` on one
thread and ``numpy.argpartition`` plus a sort of the k, the ratios to ours, our throughput
in GB/s and that of ``numpy.max(x, axis=1)`` over the same array: the memory floor of
any top-k, which has to read the whole array once. ``fuse_and_select``: microseconds per
call including the Python call, against a vectorised numpy implementation of the same step.
``sample_tokens`` (temperature, top-p, inverse-CDF draw): milliseconds per call against the
same rule in torch (``sample_tokens_torch``, a full sort per row, the decoders' path on a
GPU) and in numpy, on rows that are flat (normal · 3) and peaked (normal · 8).

Timings are medians of repeats after a warm-up; this prints numbers and never asserts them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

import rshape_fast
from common import add_device_flag, check_device, print_load

try:  # torch is optional: without it the torch column reads n/a
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None


def median_seconds(fn: Callable[[], object], *, budget: float, min_repeats: int = 5) -> float:
    """Median wall time of ``fn`` over repeats filling about ``budget`` seconds."""
    fn()  # warm-up: first-touch allocations, caches
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (
        time.perf_counter() - start < budget and len(times) < 10_000
    ):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def numpy_topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The usual numpy top-k: argpartition, then sort the k survivors."""
    idx = np.argpartition(x, -k, axis=1)[:, -k:]
    vals = np.take_along_axis(x, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(idx, order, axis=1)


def numpy_fuse_and_select(
    base: np.ndarray,
    rewards: np.ndarray,
    *,
    weight: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``fuse_and_select(shaping="srs")`` with softmax-of-base probabilities, greedy, in
    numpy, vectorised over rows: the exact threshold from F at every breakpoint. The knobs
    are those of ``ShapeParams()``, the token-level rule (a weight cap, no exponent cap)."""
    knobs = rshape_fast.ShapeParams()
    bound, beta, alpha = knobs.bound, knobs.beta, knobs.alpha
    spread_ratio, max_weight = knobs.spread_ratio, knobs.max_weight
    b = base.astype(np.float64)
    r = rewards.astype(np.float64)
    p = np.exp(b - b.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    lo, hi = r.min(axis=1, keepdims=True), r.max(axis=1, keepdims=True)
    b_eff = np.minimum(bound, spread_ratio * (hi - lo))
    gamma = np.minimum(np.exp(b_eff / beta), max_weight)
    diff = r[:, None, :] - r[:, :, None]  # [B, point j, candidate i]
    f_at = (p[:, None, :] * np.where(diff >= 0, gamma[:, :, None], 1.0) * diff).sum(axis=-1)
    # The root lies on the piece ending at the smallest reward with F <= 0.
    right = np.where(f_at <= 0, r, np.inf).min(axis=1, keepdims=True)
    w = np.where(r >= right, gamma, 1.0) * p
    m = (w * r).sum(axis=1, keepdims=True) / w.sum(axis=1, keepdims=True)
    shaped = b_eff / (1.0 + np.exp(-alpha * (r - m)))
    fused = (b + weight * shaped).astype(np.float32)
    return fused.argmax(axis=1), fused


def numpy_sample_tokens(
    x: np.ndarray, u: np.ndarray, *, temperature: float, top_p: float | None
) -> np.ndarray:
    """`sample_tokens`'s rule vectorised in numpy: a full stable sort per row for top-p."""
    w = np.exp((x - x.max(axis=1, keepdims=True)) / temperature, dtype=np.float64)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-w, axis=1, kind="stable")
        ranked = np.take_along_axis(w, order, axis=1)
        before = np.cumsum(ranked, axis=1) - ranked
        ranked[before >= top_p * w.sum(axis=1, keepdims=True)] = 0.0
        w = np.zeros_like(w)
        np.put_along_axis(w, order, ranked, axis=1)
    cdf = np.cumsum(w, axis=1)
    picked = (cdf <= u[:, None] * cdf[:, -1:]).sum(axis=1)
    return np.minimum(picked, x.shape[1] - 1)


def on_device(fn: Callable[[], object], device: str) -> Callable[[], object]:
    """`fn`, waiting for the device to finish (CUDA runs asynchronously)."""
    if not device.startswith("cuda"):
        return fn
    assert torch is not None

    def synced() -> object:
        out = fn()
        torch.cuda.synchronize()
        return out

    return synced


def bench_topk(
    batches: list[int], vocabs: list[int], ks: list[int], budget: float, device: str = "cpu"
) -> None:
    rng = np.random.default_rng(0)
    header = (
        f"{'B':>3} {'V':>7} {'k':>3} | {'ours us':>9} {'torch us':>9} {'numpy us':>10} | "
        f"{'torch/ours':>10} {'numpy/ours':>10} | {'ours GB/s':>9} {'max GB/s':>9} {'floor %':>7}"
    )
    print(f"\ntop-k over float32 logits [B, V] (torch on {device})")
    print(header)
    print("-" * len(header))
    for b in batches:
        for v in vocabs:
            x = (rng.standard_normal((b, v), dtype=np.float32) * 3.0).astype(np.float32)
            xt = torch.from_numpy(x).to(device) if torch is not None else None
            nbytes = x.nbytes
            t_max = median_seconds(lambda x=x: np.max(x, axis=1), budget=budget)
            for k in ks:
                t_ours = median_seconds(lambda x=x, k=k: rshape_fast.topk(x, k), budget=budget)
                if xt is not None:
                    t_torch = median_seconds(
                        on_device(lambda xt=xt, k=k: torch.topk(xt, k), device), budget=budget
                    )
                    torch_cols = f"{t_torch * 1e6:>9.1f}"
                    torch_ratio = f"{t_torch / t_ours:>10.1f}"
                else:
                    torch_cols, torch_ratio = f"{'n/a':>9}", f"{'n/a':>10}"
                t_numpy = median_seconds(
                    lambda x=x, k=k: numpy_topk(x, k), budget=budget, min_repeats=3
                )
                print(
                    f"{b:>3} {v:>7} {k:>3} | {t_ours * 1e6:>9.1f} {torch_cols} "
                    f"{t_numpy * 1e6:>10.1f} | {torch_ratio} {t_numpy / t_ours:>10.1f} | "
                    f"{nbytes / t_ours / 1e9:>9.1f} {nbytes / t_max / 1e9:>9.1f} "
                    f"{100 * t_max / t_ours:>7.0f}"
                )


def bench_fuse(shapes: list[tuple[int, int]], budget: float) -> None:
    rng = np.random.default_rng(1)
    header = (
        f"{'B':>3} {'k':>3} | {'ours us/call':>12} {'numpy us/call':>13} {'numpy/ours':>10}"
        f" | {'same choices':>12}"
    )
    print("\nfuse_and_select (shaping='srs', softmax-of-base probabilities, greedy)")
    print(header)
    print("-" * len(header))
    for b, k in shapes:
        base = rng.standard_normal((b, k), dtype=np.float32)
        rewards = rng.standard_normal((b, k), dtype=np.float32)
        t_ours = median_seconds(
            lambda base=base, rewards=rewards: rshape_fast.fuse_and_select(
                base, rewards, weight=0.5
            ),
            budget=budget,
        )
        t_numpy = median_seconds(
            lambda base=base, rewards=rewards: numpy_fuse_and_select(base, rewards, weight=0.5),
            budget=budget,
        )
        ours, _ = rshape_fast.fuse_and_select(base, rewards, weight=0.5)
        theirs, _ = numpy_fuse_and_select(base, rewards, weight=0.5)
        same = f"{np.mean(ours == theirs) * 100:.0f}%"
        print(
            f"{b:>3} {k:>3} | {t_ours * 1e6:>12.1f} {t_numpy * 1e6:>13.1f} "
            f"{t_numpy / t_ours:>10.1f} | {same:>12}"
        )


def bench_sample(batches: list[int], vocab: int, budget: float) -> None:
    from rshape_fast import _core

    rng = np.random.default_rng(2)
    header = (
        f"{'B':>3} {'logits':>6} {'top-p':>5} | {'ours ms':>8} {'torch ms':>9} {'numpy ms':>9} | "
        f"{'torch/ours':>10} {'numpy/ours':>10} | {'same tokens':>11}"
    )
    print(f"\nsample_tokens over float32 logits [B, {vocab}], temperature 0.7")
    print(header)
    print("-" * len(header))
    for b in batches:
        for kind, scale in (("flat", 3.0), ("peaked", 8.0)):
            x = (rng.standard_normal((b, vocab), dtype=np.float32) * scale).astype(np.float32)
            u = rng.random(b)
            for top_p in (None, 0.9):
                knobs = {"temperature": 0.7, "top_p": top_p}
                ours = _core.sample_tokens(x, u, **knobs)
                t_ours = median_seconds(
                    lambda x=x, u=u, k=knobs: _core.sample_tokens(x, u, **k), budget=budget
                )
                t_numpy = median_seconds(
                    lambda x=x, u=u, k=knobs: numpy_sample_tokens(x, u, **k),
                    budget=budget,
                    min_repeats=3,
                )
                same = ours == numpy_sample_tokens(x, u, **knobs)
                if torch is not None:
                    from rshape_fast.decoding.token_draws import sample_tokens_torch

                    xt = torch.from_numpy(x)
                    t_torch = median_seconds(
                        lambda xt=xt, u=u, k=knobs: sample_tokens_torch(xt, u, top_k=None, **k),
                        budget=budget,
                        min_repeats=3,
                    )
                    same &= ours == sample_tokens_torch(xt, u, top_k=None, **knobs).numpy()
                    torch_cols = f"{t_torch * 1e3:>9.2f}"
                    torch_ratio = f"{t_torch / t_ours:>10.1f}"
                else:
                    torch_cols, torch_ratio = f"{'n/a':>9}", f"{'n/a':>10}"
                print(
                    f"{b:>3} {kind:>6} {top_p or '-':>5} | {t_ours * 1e3:>8.2f} {torch_cols} "
                    f"{t_numpy * 1e3:>9.2f} | {torch_ratio} {t_numpy / t_ours:>10.1f} | "
                    f"{np.mean(same) * 100:>10.0f}%"
                )


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes, shorter repeats")
    add_device_flag(parser)
    args = parser.parse_args()
    check_device(args.device)
    print_load()
    if torch is not None:
        torch.set_num_threads(1)
    print(
        f"rshape_fast {rshape_fast.__version__}, numpy {np.__version__}, "
        f"torch {torch.__version__ if torch is not None else 'not installed'} (1 thread), "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    if args.quick:
        bench_topk([1, 64], [32000, 151936], [10], budget=0.1, device=args.device)
        bench_fuse([(64, 10)], budget=0.2)
        bench_sample([8], 49152, budget=0.2)
    else:
        bench_topk(
            [1, 16, 64], [32000, 49152, 128256, 151936], [10, 40], budget=0.5, device=args.device
        )
        bench_fuse([(1, 10), (16, 10), (64, 10), (64, 40), (256, 10)], budget=0.5)
        bench_sample([1, 32, 256], 49152, budget=0.5)


if __name__ == "__main__":
    main()
