"""The GPU check, in two halves: `prepare` here, `run` on a lent GPU machine.

    python scripts/gpu_check.py prepare   # here: .gpu-check/ (wheels, tokenizer), < 64 MiB
    python scripts/gpu_check.py run       # there, with OUT set: CUDA tests, 8B benchmark

The GPU machine has Python 3.12, torch and an older transformers, and nothing reachable, so
`prepare` puts into `.gpu-check/` what `run` installs there without an index: this
project's wheel (`make wheel`), the transformers this project is tested with and its
dependencies (wheels for Python 3.12; torch and numpy stay the machine's), pytest, and the
bundled tokenizer's files (the synthetic models need no weights). `run` installs them into a
virtual environment that sees the machine's torch, runs `tests/test_cuda.py`, then
`rshape bench kernels --quick` and `rshape bench decoding --synthetic llama-8b` on `cuda`,
writing the JSON and a log under `$OUT`. `make gpu-check-prepare` and `make gpu-check` call
these.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / ".gpu-check"
LIMIT = 64 * 1024 * 1024  # what one device call may carry
# Installed on the GPU machine with its own torch: not carried.
PROVIDED = {"torch", "numpy", "nvidia", "triton", "sympy", "networkx", "jinja2", "markupsafe"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def _run(argv: list[str], **kwargs: object) -> None:
    print("$", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def prepare(dist: Path) -> None:
    """Fill .gpu-check/ from `dist` (the wheel `make wheel` built) and the package index."""
    from rshape_fast.cache import DEFAULT_LM
    from rshape_fast.models.builtins import ensure_builtin

    shutil.rmtree(CHECK, ignore_errors=True)
    wheels = CHECK / "wheels"
    wheels.mkdir(parents=True)
    for wheel in dist.glob("rshape_fast-*.whl"):
        shutil.copy(wheel, wheels)
    pins = [f"{name}=={metadata.version(name)}" for name in ("transformers", "pytest")]
    download = [sys.executable, "-m", "pip", "download", "-q", "--dest", str(wheels)]
    target = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
    for platform in ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "any"):
        target += ["--platform", platform]
    _run([*download, *target, *pins])
    for wheel in wheels.glob("*.whl"):
        name = wheel.name.split("-")[0].lower().replace("_", "-")
        if name.split("-")[0] in PROVIDED:
            wheel.unlink()
    folder = ensure_builtin(DEFAULT_LM)
    (CHECK / "tokenizer").mkdir()
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            shutil.copy(folder / name, CHECK / "tokenizer" / name)
    size = sum(p.stat().st_size for p in CHECK.rglob("*") if p.is_file())
    print(f"{CHECK}: {size / 2**20:.1f} MiB in {len(list(wheels.glob('*.whl')))} wheels and")
    print(f"the tokenizer ({', '.join(TOKENIZER_FILES)}); a device call carries up to 64 MiB")
    if size > LIMIT:
        raise SystemExit(f"{CHECK} is {size / 2**20:.1f} MiB, over the 64 MiB a call carries")


def run(out: Path) -> None:
    """Install from .gpu-check/, run the CUDA tests and the benchmarks; results in `out`."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    env_dir = CHECK / "env"
    # The machine's torch (and numpy) are used as they are: the venv sees site-packages.
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)])
    python = str(env_dir / "bin" / "python")
    wheels = sorted(str(w) for w in (CHECK / "wheels").glob("*.whl"))
    _run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", *wheels])
    env = {**os.environ, "RSHAPE_FAST_TOKENIZER": str(CHECK / "tokenizer")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    _run(
        [python, "-c", "import torch, transformers, rshape_fast; print('torch', torch.__version__,"
         " 'transformers', transformers.__version__, 'rshape_fast', rshape_fast.__version__,"
         " torch.cuda.get_device_name())"],
        env=env,
    )  # fmt: skip
    # -W default: another torch may warn where this one does not; a warning is not a failure.
    tests = [python, "-m", "pytest", "tests/test_cuda.py", "-ra", "-v", "-W", "default"]
    _run(
        [*tests, "-p", "no:cacheprovider", f"--junitxml={out / 'cuda-tests.xml'}"],
        env=env,
        cwd=ROOT,
    )
    rshape = str(env_dir / "bin" / "rshape")
    _run([rshape, "bench", "kernels", "--quick", "--device", "cuda", "--json",
          str(out / "kernels-cuda.json")], env=env)  # fmt: skip
    _run([rshape, "bench", "decoding", "--synthetic", "llama-8b", "--device", "cuda",
          "--tokenizer", str(CHECK / "tokenizer"), "--json", str(out / "synthetic-llama-8b.json")],
         env=env)  # fmt: skip
    print(f"gpu check done in {time.perf_counter() - started:.0f} s; results in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    which = parser.add_subparsers(dest="step", required=True)
    prep = which.add_parser("prepare", help="here: fill .gpu-check/")
    prep.add_argument("--dist", default="dist", help="where `make wheel` put the wheel")
    go = which.add_parser("run", help="on the GPU machine: install, test, benchmark")
    go.add_argument("--out", default=os.environ.get("OUT", "gpu-check-out"), help="results")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(Path(args.dist))
    else:
        run(Path(args.out))


if __name__ == "__main__":
    main()
