"""The scale of each built-in reward model, and how hard SRS steers at that scale.

Along greedy base decoding of bundled train prompts, every step's k = 10 candidate tokens
are scored by the reward model (the candidate set SRS-ARGS shapes). For each reward model
this prints the distribution of the per-step candidate reward spreads (max − min, and the
standard deviation) and of `r − m*`, and the *guidance strength*: how often the shaped term
moves the argmax away from the LM's own top token at λ = 0.5, for SRS (paper knobs, B = 12,
α = 1.5), for SRS after `reward_scale="auto"`, and for raw ARGS at the same λ. It writes
`docs/figures/reward_scale.png` (the histograms), which docs/algorithms.md shows.

    python benches/bench_reward_scale.py                 # 16 train prompts, 24 steps
    python benches/bench_reward_scale.py --quick         # 4 prompts, 8 steps

Measures distributions, not speed; still, run it alone so that its minutes stay short.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from common import add_device_flag, check_device, print_load
from rshape_fast.decoding.calibration import estimate_reward_scale, greedy_candidate_sets
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.models import load_lm, load_reward_model
from rshape_fast.prompts import load_prompts
from rshape_fast.shaping import fuse_and_select, stackelberg_threshold

REWARD_MODELS = ("smollm2-sentiment", "smollm2-chat-judge")
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "reward_scale.png"
K = 10


def moved(values: np.ndarray, rewards: np.ndarray, scheme: str, options: DecodingOptions) -> float:
    """Share of steps whose fused argmax is not the LM's top candidate (index 0)."""
    chosen, _ = fuse_and_select(
        values, rewards, weight=options.weight, shaping=scheme, params=options.shape_params
    )
    return float(np.mean(np.asarray(chosen) != 0))


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 prompts, 8 steps")
    parser.add_argument("--prompts", type=int, default=16, help="bundled train prompts")
    parser.add_argument("--steps", type=int, default=24, help="greedy steps per prompt")
    add_device_flag(parser)
    args = parser.parse_args()
    check_device(args.device)
    if args.quick:
        args.prompts, args.steps = 4, 8
    print_load()
    torch.set_num_threads(2)
    lm = load_lm(device=args.device)
    prompts = [p.text for p in load_prompts(split="train", limit=args.prompts)]
    options = DecodingOptions()  # the paper's SRS-ARGS knobs
    figure = Figure(figsize=(10, 3.6 * len(REWARD_MODELS)), layout="constrained")
    axes = figure.subplots(len(REWARD_MODELS), 2, squeeze=False)
    print(
        f"\n{args.prompts} train prompts × {args.steps} greedy steps, k = {K}, "
        f"λ = {options.weight}, B = {options.bound}, α = {options.alpha}\n"
    )
    print(
        "| reward model | median spread | median std | r − m* (5–95 %) | auto scale "
        "| argmax moved: SRS | SRS, auto scale | raw ARGS |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row, name in enumerate(REWARD_MODELS):
        rm = load_reward_model(name, device=args.device)
        values, rewards = greedy_candidate_sets(lm, rm, prompts, k=K, steps=args.steps)
        spread = rewards.max(-1) - rewards.min(-1)
        std = rewards.std(-1)
        probs = np.exp(values - values.max(-1, keepdims=True))
        # The threshold the shaping uses (B_eff/β capped at γ ≤ 2, as ARGS runs it).
        b_eff = np.minimum(options.bound, options.spread_ratio * spread)
        weight = np.exp(b_eff / options.shaping_beta)
        if options.max_weight is not None:
            weight = np.minimum(weight, options.max_weight)
        m_star = np.asarray(stackelberg_threshold(rewards, probs, gamma=weight))
        centred = (rewards - m_star[:, None]).ravel()
        scale = estimate_reward_scale(lm, rm, prompts[:8], k=K, steps=8)
        srs = moved(values, rewards, "srs", options)
        srs_auto = moved(values, rewards / np.float32(scale), "srs", options)
        raw = moved(values, rewards, "raw", options)
        low, high = np.quantile(centred, [0.05, 0.95])
        print(
            f"| {name} | {np.median(spread):.3f} | {np.median(std):.3f} | "
            f"[{low:+.2f}, {high:+.2f}] | {scale:.3f} | {srs:.1%} | {srs_auto:.1%} | {raw:.1%} |"
        )
        left, right = axes[row]
        left.hist(spread, bins=40, color="#4c72b0")
        left.axvline(1 / options.alpha, color="k", ls="--", lw=1)
        left.set_title(f"{name}: spread of each step's {K} rewards", fontsize=10)
        left.set_xlabel("max r − min r   (dashed: 1/α, the sigmoid's width)", fontsize=9)
        right.hist(centred, bins=60, color="#dd8452")
        right.set_title(f"{name}: r − m* of every candidate", fontsize=10)
        right.set_xlabel(
            f"argmax moved: SRS {srs:.1%}, SRS auto-scaled {srs_auto:.1%}, raw {raw:.1%}",
            fontsize=9,
        )
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURE, dpi=110)
    print(f"\nwrote {FIGURE}")


if __name__ == "__main__":
    main()
