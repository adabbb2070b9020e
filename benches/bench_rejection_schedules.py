"""How much reward each early-rejection schedule of `streaming_bon` keeps, and at what cost.

Draws N samples per prompt exactly as `bon` / `streaming_bon` do (same keys, same seed),
scores every sample's partial response every `--every` tokens and its final response
once, then replays `streaming_bon` offline with the Rust `StreamingBestOfN` for every
checkpoint spacing (a multiple of `--every`) and reject fraction. One sampling pass thus
gives the whole trade-off: mean final reward relative to `bon`, and generated tokens
relative to `bon`. Run it on the train split to pick `checkpoint_tokens` and
`reject_fraction` for a reward model, then check the choice on test prompts with
`bench_sequence.py`. Prints markdown; asserts nothing.

    python benches/bench_rejection_schedules.py       # 8 train prompts, N = 32, 128 tokens
    python benches/bench_rejection_schedules.py --max-new-tokens 48 --every 4
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from common import add_device_flag, check_device, print_load
from rshape_fast._core import StreamingBestOfN
from rshape_fast.decoding.best_of_n import draw_samples
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.phase_timer import PhaseTimer
from rshape_fast.decoding.response_sampler import score_texts
from rshape_fast.decoding.results import Cost
from rshape_fast.decoding.reward_scorers import PartialResponseScorer, shares_cache
from rshape_fast.decoding.token_draws import prompt_key
from rshape_fast.models import load_lm, load_reward_model
from rshape_fast.prompts import load_prompts


@dataclass
class Trajectory:
    """One sample: its length, final reward and the reward of its first t tokens."""

    prompt: int
    length: int
    final: float
    partial: dict[int, float]


def sample_trajectories(
    prompts: list[str], n: int, budget: int, every: int, seed: int, device: str
) -> list[Trajectory]:
    lm, rm = load_lm(device=device), load_reward_model(device=device)
    if not shares_cache(rm, lm):  # checked before minutes of sampling, not after
        raise SystemExit("this bench needs a decoder reward model that reads the LM's ids")
    options = DecodingOptions(method="bon", n=n, max_new_tokens=budget, seed=seed, top_p=0.9)
    costs, timer = [Cost() for _ in prompts], PhaseTimer()
    keys = [prompt_key(p) for p in prompts]  # keyed as generate keys them
    sampler, groups = draw_samples(lm, prompts, keys, options, costs, timer)
    sampler.run()
    samples = [s for group in groups for s in group]
    owners = [s.owner for s in samples]
    final = score_texts(rm, prompts, owners, [s.text for s in samples], costs, timer)
    out = [
        Trajectory(s.owner, len(s.tokens), float(f), {})
        for s, f in zip(samples, final, strict=True)
    ]
    # Partial rewards exactly as `run_streaming_bon` computes them: from the reward model's
    # KV cache, the rows still generating at each checkpoint.
    scorer = PartialResponseScorer(rm, [prompts[o] for o in owners], list(range(len(samples))))
    for t in range(every, budget, every):
        live = [j for j, s in enumerate(samples) if len(s.tokens) > t]
        if not live:
            break
        rewards, _ = scorer.score(live, [samples[j].tokens[:t] for j in live])
        for j, r in zip(live, rewards, strict=True):
            out[j].partial[t] = float(r)
    return out


def replay(
    trajectories: list[Trajectory], n: int, budget: int, spacing: int, fraction: float
) -> tuple[float, int]:
    """`run_streaming_bon`'s decisions on recorded trajectories: (mean reward, tokens)."""
    prompts = len(trajectories) // n
    state = StreamingBestOfN(prompts, n)
    recorded: set[int] = set()
    stopped: dict[int, int] = {}
    for t in range(spacing, budget, spacing):
        batch = [g for g in range(len(trajectories)) if g not in recorded and g not in stopped]
        if not any(trajectories[g].length > t for g in batch):
            break
        done = [trajectories[g].length <= t for g in batch]
        scores = [
            trajectories[g].final if d else trajectories[g].partial[t]
            for g, d in zip(batch, done, strict=True)
        ]
        state.record(
            np.array(batch, dtype=np.int64),
            np.array(scores, dtype=np.float32),
            np.array(done, dtype=bool),
        )
        recorded.update(g for g, d in zip(batch, done, strict=True) if d)
        for g in state.prune(reject_fraction=fraction).tolist():
            stopped[g] = t
    rest = [g for g in range(len(trajectories)) if g not in recorded and g not in stopped]
    state.record(
        np.array(rest, dtype=np.int64),
        np.array([trajectories[g].final for g in rest], dtype=np.float32),
        np.ones(len(rest), dtype=bool),
    )
    best, _ = state.best_finished()
    reward = float(np.mean([trajectories[int(g)].final for g in best]))
    tokens = sum(min(tr.length, stopped.get(g, tr.length)) for g, tr in enumerate(trajectories))
    return reward, tokens


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--every", type=int, default=16, help="partial scoring interval")
    parser.add_argument("--fractions", default="0.3,0.5,0.7", help="reject fractions")
    parser.add_argument("--seed", type=int, default=0)
    add_device_flag(parser)
    args = parser.parse_args()
    check_device(args.device)
    print_load()
    if not 1 <= args.every < args.max_new_tokens:
        parser.error("--every must be at least 1 and below --max-new-tokens")
    prompts = [p.text for p in load_prompts(split=args.split)][: args.prompts]
    trajectories = sample_trajectories(
        prompts, args.n, args.max_new_tokens, args.every, args.seed, args.device
    )
    bon_reward = float(
        np.mean(
            [
                max(tr.final for tr in trajectories[q * args.n : (q + 1) * args.n])
                for q in range(len(prompts))
            ]
        )
    )
    bon_tokens = sum(tr.length for tr in trajectories)
    print(
        f"## early-rejection schedules: {len(prompts)} {args.split} prompts, N = {args.n}, "
        f"{args.max_new_tokens} new tokens; bon mean reward {bon_reward:.3f}, "
        f"{bon_tokens} tokens\n"
    )
    print(
        "| checkpoint every | reject fraction | mean reward | reward / bon | bon tokens / tokens |"
    )
    print("|---|---|---|---|---|")
    for spacing in range(args.every, args.max_new_tokens, args.every):
        for fraction in (float(f) for f in args.fractions.split(",")):
            reward, tokens = replay(trajectories, args.n, args.max_new_tokens, spacing, fraction)
            print(
                f"| {spacing} | {fraction:.2f} | {reward:.3f} | {reward / bon_reward:.3f} "
                f"| {bon_tokens / tokens:.2f} |"
            )


if __name__ == "__main__":
    main()
