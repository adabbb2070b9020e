"""The paper's toy example (docs/algorithms.md §2.1) computed with the package kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rshape_fast.errors import ParameterError
from rshape_fast.eval.toy import policy_utility, soft_utility_curve, toy_example


def test_toy_numbers_match_the_paper() -> None:
    toy = toy_example()
    gamma = math.exp(3.0)
    closed_form = (0.9 * 1 + 0.1 * gamma * 2) / (0.9 + 0.1 * gamma)
    assert toy.base_utility == pytest.approx(1.1, abs=1e-12)
    assert toy.raw_utility == pytest.approx(1.2320, abs=1e-3)
    # Closed form of the raw utility: (0.9·e·1 + 0.1·e²·2) / (0.9·e + 0.1·e²).
    e = math.e
    assert toy.raw_utility == pytest.approx(
        (0.9 * e + 0.2 * e**2) / (0.9 * e + 0.1 * e**2), abs=1e-9
    )
    assert toy.threshold == pytest.approx(1.6906, abs=1e-4)
    assert toy.threshold == pytest.approx(closed_form, abs=1e-6)
    assert toy.hard_shaped == pytest.approx((0.0, 3.0))
    assert toy.shaped_utility == pytest.approx(1.69, abs=1e-3)
    # The fixed point of §2.1: the shaped policy's utility equals the threshold.
    assert toy.shaped_utility == pytest.approx(toy.threshold, abs=1e-6)


def test_soft_curve_limits_and_monotonicity() -> None:
    toy = toy_example(alphas=(1e-4, 0.1, 1.0, 3.0, 10.0, 1e3))
    utilities = np.asarray(toy.soft_utilities)
    # α → 0: every answer gets B/2, the policy is the base policy.
    assert utilities[0] == pytest.approx(toy.base_utility, abs=1e-3)
    # α → ∞: the step function, i.e. the hard threshold reward's utility.
    assert utilities[-1] == pytest.approx(toy.shaped_utility, abs=1e-4)
    # Between, sharpening the sigmoid only helps here (r=2 is above m*, r=1 below).
    assert np.all(np.diff(utilities) > 0)
    assert utilities.max() <= toy.shaped_utility + 1e-9


def test_soft_curve_beats_raw_only_when_sharp_enough() -> None:
    raw = toy_example().raw_utility
    low, high = soft_utility_curve((1.0, 2.0), (0.9, 0.1), (0.5, 20.0))
    assert low < raw < high


def test_policy_utility_rejects_bad_input() -> None:
    with pytest.raises(ParameterError):
        policy_utility([1.0, 2.0], [0.5, 0.5], [0.0, 1.0], beta=0.0)
    with pytest.raises(ParameterError):
        policy_utility([1.0, 2.0], [0.5, 0.5], [0.0], beta=1.0)


def test_other_toy_instances_follow_the_fixed_point() -> None:
    toy = toy_example((0.0, 1.0, 3.0), (0.5, 0.3, 0.2), beta=0.5, bound=2.0)
    # m* ∈ [min r, max r] and the hard-shaped policy delivers exactly m* (a fixed point).
    assert 0.0 <= toy.threshold <= 3.0
    assert toy.shaped_utility == pytest.approx(toy.threshold, abs=1e-5)
