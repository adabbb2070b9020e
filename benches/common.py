"""What every benchmark shares: the `--device` flag and the load check.

Benchmarks run alone: two torch processes on a 2-core machine slow each other by 10× or
more, so each benchmark prints the load average it started under.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the same tables on a GPU)")


def check_device(device: str) -> None:
    """Exit with a one-line message when `device` is CUDA and no GPU is present."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {device}: CUDA is absent on this machine; run with --device cpu")
        sys.exit(0)


def print_load() -> None:
    """The 1-minute load average: anything well above 0 means the figures are not alone."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            load = f.read().split()[0]
    except OSError:
        load = "unknown"
    print(f"load average at start: {load} (benchmarks must run alone on the machine)")
