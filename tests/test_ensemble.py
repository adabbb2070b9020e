"""Reward ensembles: the combination rules, and ensembles steering every kind of method."""

from __future__ import annotations

import numpy as np
import pytest

from rshape_fast.decoding import generate
from rshape_fast.decoding.ensemble import RewardEnsemble, combine
from rshape_fast.errors import InvalidInputError, ParameterError
from rshape_fast.models import TextRewardModel

PROMPTS = ["Tell me about your new phone.", "What do you think about rainy Mondays?"]


def _length(responses):
    return [float(len(r)) for r in responses]


def test_combination_rules():
    rng = np.random.default_rng(0)
    members = rng.normal(size=(3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(combine(members, "mean"), members.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(combine(members, "min"), members.min(0))
    uwo = members.mean(0) - 0.5 * members.var(0)
    np.testing.assert_allclose(combine(members, "uwo", uwo_weight=0.5), uwo, rtol=1e-5)
    probs = rng.random((4, 5))
    ref = (members * (probs / probs.sum(-1, keepdims=True))).sum(-1, keepdims=True)
    expected = np.log(1 / (1 + np.exp(-(members - ref)))).sum(0)
    np.testing.assert_allclose(combine(members, "logsigmoid", probs=probs), expected, rtol=1e-5)
    # Sequence level: the median of each set (owner) of samples scored together.
    flat = members[:, 0, :]
    sets = np.array([0, 0, 1, 1, 1])
    ref = np.concatenate(
        [np.median(flat[:, :2], -1, keepdims=True).repeat(2, 1),
         np.median(flat[:, 2:], -1, keepdims=True).repeat(3, 1)], axis=1
    )  # fmt: skip
    expected = np.log(1 / (1 + np.exp(-(flat - ref)))).sum(0)
    np.testing.assert_allclose(combine(flat, "logsigmoid", sets=sets), expected, rtol=1e-5)


@pytest.mark.parametrize("mode", ["mean", "min", "uwo"])
def test_an_ensemble_of_one_is_its_member(mode):
    members = np.random.default_rng(1).normal(size=(1, 3, 4))
    np.testing.assert_allclose(combine(members, mode), members[0], rtol=1e-6)


def test_bad_ensembles():
    with pytest.raises(InvalidInputError, match="at least one"):
        RewardEnsemble([])
    with pytest.raises(ParameterError, match="ensemble"):
        RewardEnsemble([TextRewardModel(_length)], mode="max")
    with pytest.raises(ParameterError, match="uwo_weight"):
        RewardEnsemble([TextRewardModel(_length)], uwo_weight=-1.0)
    with pytest.raises(ParameterError, match="ensemble"):
        generate(PROMPTS, rm=[_length], ensemble="median")


@pytest.mark.parametrize("method", ["args", "bon"])
@pytest.mark.parametrize("mode", ["mean", "min", "uwo"])
def test_one_member_ensemble_decodes_like_the_member(tiny_lm, tiny_rm, method, mode):
    knobs = dict(lm=tiny_lm, method=method, max_new_tokens=6, k=4, n=3, greedy=method == "args")
    alone = generate(PROMPTS, rm=tiny_rm, **knobs)
    ensemble = generate(PROMPTS, rm=[tiny_rm], ensemble=mode, **knobs)
    assert [r.token_ids for r in ensemble] == [r.token_ids for r in alone]
    for a, e in zip(alone, ensemble, strict=True):
        assert e.reward == pytest.approx(a.reward, abs=1e-5)
        assert e.extras["member_rewards"] == pytest.approx([a.reward], abs=1e-5)


def test_min_ensemble_steers_by_the_per_candidate_minimum(tiny_lm, tiny_rm):
    """ARGS with `min` of two members equals ARGS with one callable taking their minimum
    (both through text, so the two runs see the same floats)."""
    members = [TextRewardModel(tiny_rm.score, on="prompt+response"), TextRewardModel(_length)]

    def minimum(prompts, responses):
        scores = np.stack([m.score(prompts, responses) for m in members])
        return scores.min(0)

    knobs = dict(lm=tiny_lm, method="args", shaping="raw", max_new_tokens=6, k=4, weight=0.1)
    ours = generate(PROMPTS, rm=members, ensemble="min", **knobs)
    direct = generate(PROMPTS, rm=TextRewardModel(minimum, on="prompt+response"), **knobs)
    assert [r.token_ids for r in ours] == [r.token_ids for r in direct]
    assert ours[0].extras["reward_path"] == "text+text"


@pytest.mark.parametrize("method", ["args", "bon", "soft_bon", "streaming_bon", "segment"])
def test_every_mode_runs_every_kind_of_method(tiny_lm, tiny_rm, method):
    for mode in ("mean", "min", "uwo", "logsigmoid"):
        (result,) = generate(
            PROMPTS[:1],
            lm=tiny_lm,
            rm=[tiny_rm, _length],
            ensemble=mode,
            method=method,
            max_new_tokens=6,
            k=3,
            n=3,
            checkpoint_tokens=2,
            segment_samples=2,
            max_segment_tokens=3,
            min_segment_tokens=1,
        )
        assert np.isfinite(result.reward)
        assert len(result.extras["member_rewards"]) == 2
        if method == "args":  # each member keeps its own scorer: the decoder one its cache
            assert result.extras["reward_path"] == "cached+text"
