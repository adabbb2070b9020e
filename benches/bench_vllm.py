"""vLLM against the transformers engine, in one run: best-of-N, streaming best-of-N, ARGS.

Run in the vLLM environment, alone on the machine (`make vllm-env` first):

    .venv-vllm/bin/python benches/bench_vllm.py [--prompts 8] [--tokens 48] [--device cpu]

The same bundled test prompts, default LM and steering reward model on both engines:
`bon` and `streaming_bon` at N = 8 and 32 (temperature 0.7, top-p 0.9, sampled), and greedy
SRS-ARGS. For each it prints generated tokens per second of wall time and the mean steering
reward, and the ratio vLLM / transformers. The transformers engine runs first, before vLLM
is started. Both engines' torch runs on every core (OMP_NUM_THREADS is set to the core count
unless given, since vLLM would otherwise drop torch to one thread in this process).
"""

from __future__ import annotations

import argparse
import os
import time

from common import add_device_flag, check_device, print_load

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

RUNS = [
    ("bon", {"n": 8}),
    ("bon", {"n": 32}),
    ("streaming_bon", {"n": 8}),
    ("streaming_bon", {"n": 32}),
    ("args", {"shaping": "srs", "greedy": True}),
]
SAMPLED = {"greedy": False, "temperature": 0.7, "top_p": 0.9}


def measure(lm, rm, prompts, tokens, method, knobs):
    import rshape_fast as rf

    sampled = {} if method == "args" else SAMPLED
    started = time.perf_counter()
    results = rf.generate(
        prompts,
        lm=lm,
        rm=rm,
        method=method,
        max_new_tokens=tokens,
        batch_size=len(prompts),
        **sampled,
        **knobs,
    )
    seconds = time.perf_counter() - started
    generated = sum(r.cost.generated_tokens for r in results)
    reward = sum(r.reward for r in results) / len(results)
    return results, generated / seconds, reward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--prompts", type=int, default=8, help="bundled test prompts")
    parser.add_argument("--tokens", type=int, default=48, help="max_new_tokens")
    add_device_flag(parser)
    args = parser.parse_args()
    check_device(args.device)
    print_load()

    from rshape_fast.models import load_lm, load_reward_model
    from rshape_fast.prompts import load_prompts

    prompts = [p.text for p in load_prompts(split="test", limit=args.prompts)]
    rm = load_reward_model(device=args.device)
    figures = {}
    hf = load_lm(device=args.device)
    for method, knobs in RUNS:
        figures["transformers", method, str(knobs)] = measure(
            hf, rm, prompts, args.tokens, method, knobs
        )
    del hf
    vllm = load_lm(engine="vllm", device=args.device, max_model_len=1024, block_size=32)
    for method, knobs in RUNS:
        figures["vllm", method, str(knobs)] = measure(vllm, rm, prompts, args.tokens, method, knobs)

    print(
        f"\n{len(prompts)} test prompts, {args.tokens} new tokens, device {args.device}, "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    )
    print(
        f"{'method':<14}{'knobs':<34}{'tok/s hf':>10}{'tok/s vllm':>12}{'ratio':>7}"
        f"{'reward hf':>11}{'reward vllm':>13}{'same tokens':>13}"
    )
    for method, knobs in RUNS:
        a_results, a_speed, a_reward = figures["transformers", method, str(knobs)]
        b_results, b_speed, b_reward = figures["vllm", method, str(knobs)]
        same = sum(a.token_ids == b.token_ids for a, b in zip(a_results, b_results, strict=True))
        print(
            f"{method:<14}{knobs!s:<34}{a_speed:>10.1f}{b_speed:>12.1f}"
            f"{b_speed / a_speed:>7.2f}{a_reward:>+11.3f}{b_reward:>+13.3f}"
            f"{f'{same}/{len(prompts)}':>13}"
        )


if __name__ == "__main__":
    main()
