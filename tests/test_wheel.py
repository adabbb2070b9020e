"""The published artefact works: `make wheel` builds a manylinux abi3 wheel and an sdist
that twine accepts, and the wheel installs into a fresh virtual environment with no Rust
toolchain on PATH, where the README's kernel block and `rshape --help` run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _kernel_block() -> str:
    blocks = re.findall(
        r"^```python\n(.*?)^```", (ROOT / "README.md").read_text("utf-8"), re.M | re.S
    )
    (block,) = [b for b in blocks if "rf.topk(" in b]
    return block


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not on PATH: the wheel is built by `make wheel`")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        ["make", "-C", str(ROOT), "wheel", f"PY={sys.executable}", f"DIST={out}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return out


def test_wheel_is_manylinux_abi3_with_its_data_and_one_version(dist: Path) -> None:
    import rshape_fast

    (wheel,) = dist.glob("*.whl")
    assert re.fullmatch(
        rf"rshape_fast-{re.escape(rshape_fast.__version__)}-cp310-abi3-manylinux2014_x86_64"
        r"\.manylinux_2_17_x86_64\.whl",
        wheel.name,
    ), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert "rshape_fast/data/prompts.jsonl" in names
    assert any(re.fullmatch(r"rshape_fast/_core\.abi3\.so", n) for n in names)
    (sdist,) = dist.glob("*.tar.gz")
    assert sdist.name == f"rshape_fast-{rshape_fast.__version__}.tar.gz"


def test_wheel_installs_and_runs_without_rust(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    # No cargo, no rustc: only the new environment and the system's own directories.
    path = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    env = {"PATH": path, "HOME": str(tmp_path), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]
    python = str(bin_dir / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    block = subprocess.run(
        [python, "-c", _kernel_block()], env=env, capture_output=True, text=True, timeout=120
    )
    assert block.returncode == 0, block.stderr
    assert re.fullmatch(r"\[\s*\d+(\s+\d+){3}\s*\]\n", block.stdout), block.stdout
    helped = subprocess.run(
        [str(bin_dir / "rshape"), "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    assert "usage: rshape" in helped.stdout and "generate" in helped.stdout
