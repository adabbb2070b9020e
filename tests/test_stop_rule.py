"""The incremental stop-string check against the rule it replaced (decode the whole response
after every token): the same reason and the same cut at every step, on real text with
multi-byte characters and on random token ids (partial characters everywhere)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.rows import StopRule

TEXT = (
    "Hello world! Café déjà vu, naïve façade.\n\nThe 中文 text and an emoji 🙂 follow.\n"
    "Testing testing, one two three. Ending tokens: ...\n\n" * 24
)
STOPS = ("\n\n", "é", "world", "🙂", "ing t", " three.", "中")


def _whole_text_rule(
    rule: StopRule, prefix: Sequence[int], tokens: Sequence[int]
) -> tuple[str | None, str | None]:
    """The previous stop rule: decode the whole response after every token."""
    opts = rule.options
    if tokens[-1] in rule.lm.eos_token_ids:
        return "eos", None
    text = rule.lm.decode([*prefix, *tokens])
    hits = [text.find(s) for s in opts.stop if s in text]
    if hits:
        return "stop_string", text[: min(hits)]
    if len(prefix) + len(tokens) >= opts.max_new_tokens:
        return "length", None
    return None, None


def _sequences(tokenizer) -> list[list[int]]:
    text_ids = [int(i) for i in tokenizer(TEXT, add_special_tokens=False)["input_ids"]]
    rng = np.random.default_rng(0)
    random_ids = [int(i) for i in rng.integers(17, len(tokenizer), size=600)]
    return [text_ids, random_ids]


@pytest.mark.parametrize("stop", [(s,) for s in STOPS] + [STOPS])
def test_same_stops_as_decoding_everything(tiny_lm, stop):
    rule = StopRule(tiny_lm, DecodingOptions(method="base", stop=stop, max_new_tokens=4096))
    for ids in _sequences(tiny_lm.tokenizer):
        # The response is checked after every token, as a decoder does, until it stops.
        for t in range(1, len(ids) + 1):
            expected = _whole_text_rule(rule, (), ids[:t])
            assert rule.check((), ids[:t]) == expected, (stop, t)
            if expected[0] is not None:
                break


def test_a_segments_prefix_counts_as_response(tiny_lm):
    options = DecodingOptions(method="segment", stop=("\n\n", "🙂"), max_new_tokens=4096)
    rule = StopRule(tiny_lm, options)
    ids = _sequences(tiny_lm.tokenizer)[0]
    for cut in (0, 3, 17):
        for t in range(cut + 1, len(ids) + 1):
            expected = _whole_text_rule(rule, ids[:cut], ids[cut:t])
            assert rule.check(ids[:cut], ids[cut:t]) == expected
            if expected[0] is not None:
                break
