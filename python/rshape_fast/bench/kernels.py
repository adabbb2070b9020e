"""`rshape bench kernels`: the Rust kernels against numpy and torch, in the same run.

Top-k: for each (B, V, k), the median time of `rshape_fast.topk`, `torch.topk` (one thread
on CPU) and `numpy.argpartition` plus a sort of the k, the ratios to ours, our throughput
in GB/s and that of `numpy.max(x, axis=1)` over the same array: the memory floor of any
top-k, which has to read the whole array once. `fuse_and_select`: microseconds per call
including the Python call, against a vectorised numpy implementation of the same step.
`sample_tokens` (temperature, top-p, inverse-CDF draw): milliseconds per call against the
same rule in torch (`sample_tokens_torch`, a full sort per row, the decoders' path on a
GPU) and in numpy, on rows that are flat (normal · 3) and peaked (normal · 8).
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

import numpy as np

import rshape_fast
from rshape_fast.bench.report import BenchReport, Column, median_seconds, synced


def numpy_topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The usual numpy top-k: argpartition, then sort the k survivors."""
    idx = np.argpartition(x, -k, axis=1)[:, -k:]
    vals = np.take_along_axis(x, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(idx, order, axis=1)


def numpy_fuse_and_select(
    base: np.ndarray, rewards: np.ndarray, *, weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """`fuse_and_select(shaping="srs")` with softmax-of-base probabilities, greedy, in
    numpy, vectorised over rows: the exact threshold from F at every breakpoint. The knobs
    are those of `ShapeParams()`, the token-level rule (a cap on γ, no exponent cap)."""
    knobs = rshape_fast.ShapeParams()
    b = base.astype(np.float64)
    r = rewards.astype(np.float64)
    p = np.exp(b - b.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    lo, hi = r.min(axis=1, keepdims=True), r.max(axis=1, keepdims=True)
    b_eff = np.minimum(knobs.bound, knobs.spread_ratio * (hi - lo))
    cap = knobs.max_weight
    assert cap is not None  # the token-level rule caps γ
    gamma = np.minimum(np.exp(b_eff / knobs.beta), cap)
    diff = r[:, None, :] - r[:, :, None]  # [B, point j, candidate i]
    f_at = (p[:, None, :] * np.where(diff >= 0, gamma[:, :, None], 1.0) * diff).sum(axis=-1)
    # The root lies on the piece ending at the smallest reward with F <= 0.
    right = np.where(f_at <= 0, r, np.inf).min(axis=1, keepdims=True)
    w = np.where(r >= right, gamma, 1.0) * p
    m = (w * r).sum(axis=1, keepdims=True) / w.sum(axis=1, keepdims=True)
    shaped = b_eff / (1.0 + np.exp(-knobs.alpha * (r - m)))
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


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # the kernels need numpy only; torch's column then reads –
        return None
    return torch


def bench_topk(
    report: BenchReport,
    batches: list[int],
    vocabs: list[int],
    ks: list[int],
    budget: float,
    device: str,
) -> None:
    torch = _torch()
    rng = np.random.default_rng(0)
    table = report.table(
        f"top-k over float32 logits [B, V] (torch on {device})",
        [
            Column("batch", "B"),
            Column("vocab", "V"),
            Column("k", "k"),
            Column("ours_us", "ours µs", ".1f"),
            Column("torch_us", "torch µs", ".1f"),
            Column("numpy_us", "numpy µs", ".1f"),
            Column("torch_over_ours", "torch/ours", ".1f"),
            Column("numpy_over_ours", "numpy/ours", ".1f"),
            Column("ours_gb_s", "ours GB/s", ".1f"),
            Column("floor_gb_s", "max GB/s (floor)", ".1f"),
            Column("floor_share", "floor / ours", ".0%"),
        ],
    )
    for b in batches:
        for v in vocabs:
            x = (rng.standard_normal((b, v), dtype=np.float32) * 3.0).astype(np.float32)
            xt = torch.from_numpy(x).to(device) if torch is not None else None
            t_max = median_seconds(partial(np.max, x, axis=1), budget=budget)
            for k in ks:
                t_ours = median_seconds(partial(rshape_fast.topk, x, k), budget=budget)
                t_torch = (
                    None
                    if xt is None
                    else median_seconds(synced(partial(torch.topk, xt, k), device), budget=budget)
                )
                t_numpy = median_seconds(partial(numpy_topk, x, k), budget=budget, min_repeats=3)
                table.add(
                    batch=b,
                    vocab=v,
                    k=k,
                    ours_us=t_ours * 1e6,
                    torch_us=None if t_torch is None else t_torch * 1e6,
                    numpy_us=t_numpy * 1e6,
                    torch_over_ours=None if t_torch is None else t_torch / t_ours,
                    numpy_over_ours=t_numpy / t_ours,
                    ours_gb_s=x.nbytes / t_ours / 1e9,
                    floor_gb_s=x.nbytes / t_max / 1e9,
                    floor_share=t_max / t_ours,
                )


def bench_fuse(report: BenchReport, shapes: list[tuple[int, int]], budget: float) -> None:
    rng = np.random.default_rng(1)
    table = report.table(
        "fuse_and_select (shaping='srs', softmax-of-base probabilities, greedy)",
        [
            Column("batch", "B"),
            Column("k", "k"),
            Column("ours_us", "ours µs/call", ".1f"),
            Column("numpy_us", "numpy µs/call", ".1f"),
            Column("numpy_over_ours", "numpy/ours", ".1f"),
            Column("same_choices", "same choices", ".0%"),
        ],
    )
    for b, k in shapes:
        base = rng.standard_normal((b, k), dtype=np.float32)
        rewards = rng.standard_normal((b, k), dtype=np.float32)
        t_ours = median_seconds(
            partial(rshape_fast.fuse_and_select, base, rewards, weight=0.5),
            budget=budget,
        )
        t_numpy = median_seconds(
            partial(numpy_fuse_and_select, base, rewards, weight=0.5),
            budget=budget,
        )
        ours, _ = rshape_fast.fuse_and_select(base, rewards, weight=0.5)
        theirs, _ = numpy_fuse_and_select(base, rewards, weight=0.5)
        table.add(
            batch=b,
            k=k,
            ours_us=t_ours * 1e6,
            numpy_us=t_numpy * 1e6,
            numpy_over_ours=t_numpy / t_ours,
            same_choices=float(np.mean(ours == theirs)),
        )


def bench_sample(report: BenchReport, batches: list[int], vocab: int, budget: float) -> None:
    from rshape_fast import _core

    torch = _torch()
    rng = np.random.default_rng(2)
    table = report.table(
        f"sample_tokens over float32 logits [B, {vocab}], temperature 0.7",
        [
            Column("batch", "B"),
            Column("logits", "logits"),
            Column("top_p", "top-p"),
            Column("ours_ms", "ours ms", ".2f"),
            Column("torch_ms", "torch ms", ".2f"),
            Column("numpy_ms", "numpy ms", ".2f"),
            Column("torch_over_ours", "torch/ours", ".1f"),
            Column("numpy_over_ours", "numpy/ours", ".1f"),
            Column("same_tokens", "same tokens", ".0%"),
        ],
    )
    for b in batches:
        for kind, scale in (("flat", 3.0), ("peaked", 8.0)):
            x = (rng.standard_normal((b, vocab), dtype=np.float32) * scale).astype(np.float32)
            u = rng.random(b)
            for top_p in (None, 0.9):
                knobs: dict[str, Any] = {"temperature": 0.7, "top_p": top_p}
                ours = _core.sample_tokens(x, u, **knobs)
                t_ours = median_seconds(partial(_core.sample_tokens, x, u, **knobs), budget=budget)
                t_numpy = median_seconds(
                    partial(numpy_sample_tokens, x, u, **knobs),
                    budget=budget,
                    min_repeats=3,
                )
                same = ours == numpy_sample_tokens(x, u, **knobs)
                t_torch = None
                if torch is not None:
                    from rshape_fast.decoding.token_draws import sample_tokens_torch

                    xt = torch.from_numpy(x)
                    t_torch = median_seconds(
                        partial(sample_tokens_torch, xt, u, top_k=None, **knobs),
                        budget=budget,
                        min_repeats=3,
                    )
                    same &= ours == sample_tokens_torch(xt, u, top_k=None, **knobs).numpy()
                table.add(
                    batch=b,
                    logits=kind,
                    top_p=top_p,
                    ours_ms=t_ours * 1e3,
                    torch_ms=None if t_torch is None else t_torch * 1e3,
                    numpy_ms=t_numpy * 1e3,
                    torch_over_ours=None if t_torch is None else t_torch / t_ours,
                    numpy_over_ours=t_numpy / t_ours,
                    same_tokens=float(np.mean(same)),
                )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own: `--quick` picks fewer sizes and shorter repeats."""
    del parser


def run(report: BenchReport, args: argparse.Namespace) -> None:
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(1)  # ours is single-threaded too
    if args.quick:
        bench_topk(report, [1, 64], [32000, 151936], [10], budget=0.1, device=args.device)
        bench_fuse(report, [(64, 10)], budget=0.2)
        bench_sample(report, [8], 49152, budget=0.2)
    else:
        bench_topk(
            report,
            [1, 16, 64],
            [32000, 49152, 128256, 151936],
            [10, 40],
            budget=0.5,
            device=args.device,
        )
        bench_fuse(report, [(1, 10), (16, 10), (64, 10), (64, 40), (256, 10)], budget=0.5)
        bench_sample(report, [1, 32, 256], 49152, budget=0.5)
