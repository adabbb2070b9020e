"""Reward-scale calibration: with reward_scale="auto" an affine change of the reward changes
no token, for every scheme; without it the paper's semantics are untouched."""

from __future__ import annotations

import numpy as np
import pytest

from rshape_fast.decoding import SHAPINGS, generate
from rshape_fast.decoding.calibration import estimate_reward_scale
from rshape_fast.errors import ParameterError
from rshape_fast.models import TextRewardModel

PROMPTS = ["Tell me about your new phone.", "What do you think about rainy Mondays?"]
A, B = 2.0, 0.25  # powers of two: a·r + b is (nearly) exact in float32


@pytest.fixture(scope="module")
def rewards(tiny_rm):
    """The tiny reward through text, and the same reward times A plus B."""
    plain = TextRewardModel(tiny_rm.score, on="prompt+response", name="plain")

    def affine(prompts, responses):
        return A * tiny_rm.score(prompts, responses) + B

    return plain, TextRewardModel(affine, on="prompt+response", name="affine")


@pytest.mark.parametrize("shaping", SHAPINGS)
def test_auto_scale_makes_an_affine_reward_change_nothing(tiny_lm, rewards, shaping):
    plain, affine = rewards
    knobs = dict(
        lm=tiny_lm, method="args", shaping=shaping, k=5, max_new_tokens=8, reward_scale="auto"
    )
    a = generate(PROMPTS, rm=plain, **knobs)
    b = generate(PROMPTS, rm=affine, **knobs)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert b[0].extras["reward_scale"] == pytest.approx(A * a[0].extras["reward_scale"], rel=1e-5)


def test_auto_scale_at_sequence_level(tiny_lm, rewards):
    plain, affine = rewards
    knobs = dict(lm=tiny_lm, method="soft_bon", n=4, max_new_tokens=6, reward_scale="auto")
    a = generate(PROMPTS, rm=plain, **knobs)
    b = generate(PROMPTS, rm=affine, **knobs)
    assert [r.extras["chosen"] for r in a] == [r.extras["chosen"] for r in b]
    np.testing.assert_allclose(a[0].extras["shaped"], b[0].extras["shaped"], atol=1e-4)


def test_scale_is_the_median_spread_and_equivariant(tiny_lm, rewards):
    plain, affine = rewards
    s_plain = estimate_reward_scale(tiny_lm, plain, PROMPTS, k=5, steps=3)
    s_affine = estimate_reward_scale(tiny_lm, affine, PROMPTS, k=5, steps=3)
    assert s_plain > 0
    assert s_affine == pytest.approx(A * s_plain, rel=1e-5)


def test_a_fixed_scale_divides_and_none_is_the_paper(tiny_lm, rewards):
    plain, _ = rewards
    knobs = dict(lm=tiny_lm, rm=plain, method="args", shaping="raw", k=5, max_new_tokens=6)
    paper = generate(PROMPTS, **knobs)
    assert "reward_scale" not in paper[0].extras
    # Raw ARGS on r / 4 at λ equals raw ARGS on r at λ / 4.
    scaled = generate(PROMPTS, reward_scale=4.0, weight=0.5, **knobs)
    quarter = generate(PROMPTS, weight=0.125, **knobs)
    assert [r.token_ids for r in scaled] == [r.token_ids for r in quarter]
    assert scaled[0].extras["reward_scale"] == 4.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "median"])
def test_bad_scales(bad):
    with pytest.raises(ParameterError, match="reward_scale"):
        generate(PROMPTS, method="base", reward_scale=bad)
