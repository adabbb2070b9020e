"""README.md and docs/*.md are tested: every ```python block runs (with the real default
models), every `rf.NAME` they mention is exported by the package, and the cheap `rshape`
command lines they show (help, `models`, a short `generate`) run and succeed."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import rshape_fast

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Every page a reader copies from: the README and the docs.
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# A `generate` line of the README is cheap enough to run when it asks for at most this many.
CHEAP_TOKENS = 16


def _blocks(language: str, pages: list[Path] = PAGES) -> list[tuple[str, str]]:
    """`(page, code)` of every ```LANGUAGE block of `pages`."""
    return [
        (page.relative_to(ROOT).as_posix(), code)
        for page in pages
        for code in re.findall(rf"^```{language}\n(.*?)^```", page.read_text("utf-8"), re.M | re.S)
    ]


def _command_lines() -> list[list[str]]:
    """Every `rshape ...` command of the README's bash blocks, as argv after `rshape`."""
    commands = []
    for _, block in _blocks("bash"):
        for line in block.splitlines():
            for part in line.split("#")[0].split(";"):
                words = shlex.split(part)
                if words and words[0] == "rshape":
                    commands.append(words[1:])
    return commands


def _is_cheap(argv: list[str]) -> bool:
    if argv in (["--help"], ["models"]) or argv[-1:] == ["--help"]:
        return True
    if argv[:1] == ["generate"] and "--prompt" in argv and "--max-new-tokens" in argv:
        return int(argv[argv.index("--max-new-tokens") + 1]) <= CHEAP_TOKENS
    return False


def test_every_rf_name_is_exported() -> None:
    text = "".join(page.read_text("utf-8") for page in PAGES)
    names = set(re.findall(r"\brf\.([A-Za-z_]\w*)", text))
    assert names, "the pages show no rf.NAME; the pattern or the pages changed"
    missing = sorted(name for name in names if name not in rshape_fast.__all__)
    assert not missing, f"README uses names rshape_fast does not export: {missing}"


@pytest.mark.model
@pytest.mark.parametrize(
    ("page", "block"),
    _blocks("python"),
    ids=[f"{p} {i}" for i, (p, _) in enumerate(_blocks("python"))],
)
def test_python_block_runs(page: str, block: str) -> None:
    # A fresh namespace per block: each block must stand on its own, as a reader copies it.
    exec(compile(block, f"{page} python block", "exec"), {"__name__": "__readme__"})


def test_readme_has_python_blocks_and_cheap_commands() -> None:
    assert len(_blocks("python", [README])) >= 2
    assert len(README.read_bytes()) <= 16_000, "the README is an entry point: keep it short"
    cheap = [argv for argv in _command_lines() if _is_cheap(argv)]
    assert ["--help"] in cheap and ["models"] in cheap
    assert any(argv[0] == "generate" for argv in cheap)


@pytest.mark.parametrize(
    "argv",
    [
        # Only `generate` loads the models.
        pytest.param(argv, marks=[pytest.mark.model] if argv[0] == "generate" else [])
        for argv in _command_lines()
        if _is_cheap(argv)
    ],
    ids=lambda argv: " ".join(argv),
)
def test_cheap_command_runs(argv: list[str], tmp_path: Path) -> None:
    # The console script that `pip install` made beside this interpreter.
    rshape = Path(sys.executable).with_name("rshape")
    result = subprocess.run(
        [str(rshape), *argv], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    if argv[0] == "generate" and "-o" in argv:
        rows = (tmp_path / argv[argv.index("-o") + 1]).read_text("utf-8").splitlines()
        assert len(rows) == argv.count("--prompt")
        assert all(json.loads(row)["text"] for row in rows)
