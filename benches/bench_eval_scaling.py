"""`rshape eval` on 1 and on 2 workers: rows/s, their ratio, and CPU seconds per row.

One small grid on the default models and bundled test prompts: base, SRS-ARGS and raw
ARGS (greedy, k = 10) and sampled best-of-N (N = 4). It is decoded twice into fresh run
files: in this process with one torch thread (one worker, one core), then on a local Ray
cluster of two single-threaded workers. The rows of the two runs must be identical token
for token (the run stops if not).

    python benches/bench_eval_scaling.py                       # 8 prompts, 32 new tokens
    python benches/bench_eval_scaling.py --prompts 4 --tokens 16

Prints, per run, the wall time (model loading and, with workers, Ray's start included),
rows/s on that wall time, rows/s on the workers' task time, and CPU seconds per row (all
threads of the decoding processes, task time only): the per-row cost that a larger cluster
divides among its workers. Needs the `distributed` extra. The machine should be otherwise
idle: the 2-worker run needs both cores. Not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from common import add_device_flag, check_device, print_load
from rshape_fast.eval.grid import EvalConfig
from rshape_fast.eval.run_file import read_run
from rshape_fast.eval.run_loop import RunSummary, run_eval


def grid(prompts: int, tokens: int) -> EvalConfig:
    """The benchmark's grid: three greedy token-level points and one sampled bon point."""
    return EvalConfig(
        base={"max_new_tokens": tokens, "k": 10, "weight": 0.5, "batch_size": 4},
        grid=[
            {"method": ["base"]},
            {"method": ["args"], "shaping": ["srs", "raw"]},
            {"method": ["bon"], "n": [4], "greedy": [False], "temperature": [0.7]},
        ],
        limit=prompts,
    )


def report(label: str, summary: RunSummary) -> float:
    """Print one run's line; return its rows/s on wall time."""
    task_seconds = max(s.seconds for s in summary.workers.values())
    cpu = sum(s.cpu_seconds for s in summary.workers.values())
    rows = summary.generated
    print(
        f"{label:<10} {rows:>5} {summary.seconds:>8.1f} {summary.rows_per_second:>11.3f} "
        f"{rows / task_seconds:>11.3f} {cpu / rows:>10.2f}"
    )
    for name, stats in summary.workers.items():
        print(f"{'':<10}   worker {name}: {stats.rows} rows, {stats.rows_per_second:.3f} rows/s")
    return summary.rows_per_second


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8, help="bundled test prompts")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per response")
    add_device_flag(parser)
    args = parser.parse_args()
    check_device(args.device)
    print_load()
    config = grid(args.prompts, args.tokens)
    # One worker = one core: this process decodes with one torch thread, as each Ray
    # worker does (Ray sets OMP_NUM_THREADS to the actor's one CPU).
    torch.set_num_threads(1)
    print(f"grid: 4 configurations × {args.prompts} prompts, {args.tokens} new tokens")
    print(
        f"{'workers':<10} {'rows':>5} {'wall s':>8} {'rows/s wall':>11} {'rows/s task':>11} "
        f"{'CPU s/row':>10}"
    )
    with tempfile.TemporaryDirectory() as folder:
        one_path, two_path = Path(folder) / "one.jsonl", Path(folder) / "two.jsonl"
        one = run_eval(config, one_path, device=args.device, progress=False)
        one_rate = report("1 (local)", one)
        two = run_eval(config, two_path, device=args.device, workers=2, progress=False)
        two_rate = report("2 (Ray)", two)
        ids = {(r["point_id"], r["prompt_id"]): r["token_ids"] for r in read_run(one_path).rows}
        ray_ids = {(r["point_id"], r["prompt_id"]): r["token_ids"] for r in read_run(two_path).rows}
        if ids != ray_ids:
            raise SystemExit("the 2-worker rows differ from the 1-worker rows")
    print(f"ratio 2 workers / 1 worker (rows/s on wall time): {two_rate / one_rate:.2f}")


if __name__ == "__main__":
    main()
