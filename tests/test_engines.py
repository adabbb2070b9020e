"""The engine seam where vLLM is not installed (the vLLM engine's own tests are in
tests_vllm/, run in the vLLM environment by `make test-vllm`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from rshape_fast.decoding.registry import SPECS, method_spec
from rshape_fast.errors import EngineError, ParameterError
from rshape_fast.models import load_lm

no_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is not None, reason="vllm is installed in this environment"
)


@no_vllm
def test_vllm_engine_without_vllm_is_one_line_naming_the_extra():
    with pytest.raises(EngineError, match=r"rshape_fast\[vllm\].*make vllm-env"):
        load_lm(engine="vllm")


@no_vllm
@pytest.mark.parametrize(
    "argv",
    [["generate", "--engine", "vllm", "--prompt", "hi", "--method", "base"], ["serve"]],
    ids=["generate", "serve"],
)
def test_cli_without_vllm_is_one_line(argv):
    done = subprocess.run(
        [sys.executable, "-m", "rshape_fast.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("rshape: error: the vLLM engine needs vllm")
    assert "Traceback" not in done.stderr


def test_unknown_engine_and_vllm_arguments_on_transformers_are_refused():
    with pytest.raises(ParameterError, match="engine"):
        load_lm(engine="sglang")
    with pytest.raises(ParameterError, match="max_model_len"):
        load_lm(max_model_len=1024)


def test_every_method_but_genarm_and_cd_has_a_vllm_runner():
    assert [s.name for s in SPECS if s.vllm_run is None] == ["genarm", "cd"]
    with pytest.raises(ParameterError, match="transformers engine only"):
        method_spec("cd").runner("vllm")
    for spec in SPECS:
        assert spec.runner("transformers") is spec.run
