"""Prompt-keyed randomness: a prompt's draws depend on its key, never on its position, its
batch or the other prompts of the call."""

from __future__ import annotations

import pytest

from rshape_fast.decoding import generate
from rshape_fast.errors import InvalidInputError

A = "Tell me about your new phone."
B = "What do you think about rainy Mondays?"
C = "Write a short review of the restaurant you visited last night."

SAMPLED = {
    "base": dict(greedy=False, temperature=1.0),
    "args": dict(greedy=False, temperature=1.0, k=4),
    "bon": dict(n=3),
    "soft_bon": dict(n=3),
    "streaming_bon": dict(n=4, checkpoint_tokens=2),
    "segment": dict(segment_samples=2, max_segment_tokens=3, min_segment_tokens=1),
    "segment_beam": dict(segment_samples=2, max_segment_tokens=3, min_segment_tokens=1),
}


@pytest.mark.parametrize("method", sorted(SAMPLED))
def test_a_prompt_draws_the_same_wherever_it_stands(tiny_lm, tiny_rm, method):
    knobs = dict(lm=tiny_lm, rm=tiny_rm, method=method, max_new_tokens=6, seed=3)
    knobs.update(SAMPLED[method])
    first = generate([A, B, C], **knobs)[2].token_ids
    assert generate([C], **knobs)[0].token_ids == first
    assert generate([C, A], batch_size=1, **knobs)[0].token_ids == first


def test_an_explicit_key_overrides_the_text(tiny_lm, tiny_rm):
    knobs = dict(lm=tiny_lm, rm=tiny_rm, method="bon", n=3, max_new_tokens=6)
    (alone,) = generate([C], keys=["c-1"], **knobs)
    both = generate([A, C], keys=["a-1", "c-1"], **knobs)
    assert both[1].token_ids == alone.token_ids
    assert both[1].key == "c-1"
    # A repeated prompt gets its occurrence number in its default key, so its draws differ.
    twice = generate([C, C], **knobs)
    assert twice[0].key == C and twice[1].key != C


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["only one"], "2 prompts"),
        (["same", "same"], "distinct"),
        (["a", ""], "non-empty"),
        ("ab", "list of strings"),
    ],
)
def test_bad_keys_are_refused(tiny_lm, keys, message):
    with pytest.raises(InvalidInputError, match=message):
        generate([A, B], lm=tiny_lm, method="base", keys=keys, max_new_tokens=2)
