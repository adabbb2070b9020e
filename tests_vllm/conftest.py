"""The vLLM engine's tests, run in the vLLM environment (`make test-vllm`, part of
`make test`). One vLLM engine on the default LM serves the whole session."""

from __future__ import annotations

import pytest

from rshape_fast.models import load_lm, load_reward_model
from rshape_fast.prompts import load_prompts

#: What every test starts vLLM with: a context that fits the bundled prompts, small blocks.
ENGINE_ARGS = {"max_model_len": 1024, "block_size": 32}


@pytest.fixture(scope="session")
def vllm_lm():
    return load_lm(engine="vllm", **ENGINE_ARGS)


@pytest.fixture(scope="session")
def hf_lm():
    return load_lm()


@pytest.fixture(scope="session")
def rm():
    return load_reward_model()


@pytest.fixture(scope="session")
def prompts() -> list[str]:
    """Three bundled test prompts."""
    return [p.text for p in load_prompts(split="test", limit=3)]
