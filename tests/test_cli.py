"""The `rshape` command line: light commands import no torch, missing extras fail in one
line, help texts print only the defaults that apply, and `generate` passes prompt ids,
dtypes and reward models through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rshape_fast.cli import DTYPES, _extra_providing, _reward, build_parser, main

HEAVY_MODULES = ("torch", "transformers", "matplotlib")


def _subcommands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)  # type: ignore[arg-type]


def _run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _imported_by(argv: list[str]) -> set[str]:
    """Top-level modules imported by `rshape ARGV` in a fresh interpreter."""
    result = _run(
        "import sys\n"
        "from rshape_fast.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('MODULES', *sorted({m.partition('.')[0] for m in sys.modules}))\n"
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("MODULES "))
    return set(line.split()[1:])


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["models"]] + [[name, "--help"] for name in _subcommands()],
    ids=lambda argv: " ".join(argv),
)
def test_light_commands_import_no_torch(argv: list[str]) -> None:
    heavy = _imported_by(argv) & set(HEAVY_MODULES)
    assert not heavy, f"rshape {' '.join(argv)} imported {sorted(heavy)}"


def test_every_subcommand_is_checked() -> None:
    # The parametrisation above reads the parser; make sure it found the real commands.
    assert {"generate", "models", "demo", "eval", "report", "reproduce", "cd-data", "bench"} <= set(
        _subcommands()
    )


def test_missing_models_extra_is_one_line_without_traceback() -> None:
    # `None` in sys.modules makes `import torch` fail as it does where torch is absent.
    result = _run(
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from rshape_fast.cli import main\n"
        "sys.exit(main(['generate', '--prompt', 'Hi', '--max-new-tokens', '1']))\n"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "needs torch" in lines[0] and "rshape_fast[models]" in lines[0]


def test_extra_of_a_module_comes_from_the_package_metadata() -> None:
    assert _extra_providing("torch") == "models"
    assert _extra_providing("transformers") == "models"
    assert _extra_providing("matplotlib") == "eval"
    assert _extra_providing("no_such_module_anywhere") is None


def _help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    # argparse wraps lines; join them so that a phrase is found whatever the width.
    return " ".join(capsys.readouterr().out.split())


def _option_help(text: str, flag: str, next_flag: str) -> str:
    """The help of `flag`: the listing from it to `next_flag`, the option after it."""
    start = text.index(f" {flag} ")
    return text[start : text.index(f" {next_flag} ", start)]


def test_generate_help_prints_only_defaults_that_apply(capsys: pytest.CaptureFixture[str]) -> None:
    from rshape_fast.decoding.options import DecodingOptions

    text = _help_of(["generate"], capsys)
    beta = _option_help(text, "--beta BETA", "--spread-ratio")
    assert beta.count("default") == 1 and "(default: 1/λ)" in beta
    temperature = _option_help(text, "--temperature TEMPERATURE", "--top-k")
    assert f"(default: {DecodingOptions().temperature} where sampling applies)" in temperature
    assert "(default: None)" not in text
    assert "(default: args)" in _option_help(text, "--method", "--shaping")


def test_rm_is_repeatable_and_dtypes_are_checked() -> None:
    parser = build_parser()
    args = parser.parse_args(["generate", "--prompt", "x", "--rm", "a", "--rm", "b"])
    assert _reward(args) == ["a", "b"]
    assert _reward(parser.parse_args(["generate", "--prompt", "x", "--rm", "a"])) == "a"
    assert _reward(parser.parse_args(["generate", "--prompt", "x"])) is None
    base = parser.parse_args(["generate", "--prompt", "x", "--rm", "a", "--method", "base"])
    assert _reward(base) is None
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "--prompt", "x", "--dtype", "float64"])


def test_dtype_choices_are_the_loaders() -> None:
    from rshape_fast.models.loading import DTYPES as LOADER_DTYPES

    assert tuple(LOADER_DTYPES) == DTYPES


def test_prompt_and_prompts_file_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--prompt", "x", "--prompts-file", "p.txt"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate"])


def test_every_decoding_option_has_a_flag() -> None:
    from rshape_fast.cli import KNOBS
    from rshape_fast.decoding.options import DecodingOptions

    flags = {knob.name for knob in KNOBS} | {
        "greedy",
        "chat_template",
        "special_tokens_in_prompts",
        "stop",
    }
    assert set(DecodingOptions.__dataclass_fields__) == flags


@pytest.mark.model
def test_generate_rows_carry_prompt_ids_and_dtype_reaches_the_loader(
    lm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rshape_fast.decoding.api

    calls: list[dict[str, Any]] = []

    def load_lm(name: str, **kwargs: Any) -> Any:
        calls.append({"name": name, **kwargs})
        return lm

    monkeypatch.setattr(rshape_fast.decoding.api, "load_lm", load_lm)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '{"id": "first", "prompt": "Say hello."}\n{"id": 7, "prompt": "Say goodbye."}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    argv = ["generate", "--prompts-file", str(prompts), "--method", "base"]
    argv += ["--max-new-tokens", "2", "--dtype", "bfloat16", "--quiet", "-o", str(out)]
    assert main(argv) == 0
    loaded = [{**call, "device": str(call["device"])} for call in calls]
    assert loaded == [{"name": "smollm2-135m-instruct", "device": "cpu", "dtype": "bfloat16"}]
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["key"] for row in rows] == ["first", "7"]
    assert all(row["options"]["max_new_tokens"] == 2 for row in rows)
