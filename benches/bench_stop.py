"""The stop-string check's cost per token: decoding the whole response after every token
(the rule before) against the window of the newest tokens (StopRule now), in one run.

    python benches/bench_stop.py

For a response of n tokens (64 and 1,024), the median time of one check, that is, the cost
the n-th token pays, with three stop strings that never occur (the common case: the check
runs on every token of every row). SmolLM2's tokenizer, real text. Prints, never asserts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial

from common import print_load
from rshape_fast.bench.report import median_seconds
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.rows import StopRule
from rshape_fast.models import load_lm

TEXT = "The weather was lovely today, and we walked along the river for hours. " * 200
STOPS = ("\n\nUser:", "###", "<stop>")


def whole_text_check(rule: StopRule, tokens: Sequence[int]) -> bool:
    """The rule before: decode every token of the response, then look for the strings."""
    text = rule.lm.decode(tokens)
    return any(s in text for s in rule.options.stop)


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    print_load()
    lm = load_lm()
    rule = StopRule(lm, DecodingOptions(method="base", stop=STOPS, max_new_tokens=100_000))
    ids = [int(i) for i in lm.tokenizer(TEXT, add_special_tokens=False)["input_ids"]]
    print(f"{'tokens':>7} {'before µs':>10} {'after µs':>9} {'before/after':>13}")
    for n in (64, 1024):
        response = ids[:n]
        assert rule.check((), response) == (None, None)
        repeats = args.repeats
        before = median_seconds(partial(whole_text_check, rule, response), min_repeats=repeats)
        after = median_seconds(partial(rule.check, (), response), min_repeats=repeats)
        print(f"{n:>7} {before * 1e6:>10.1f} {after * 1e6:>9.1f} {before / after:>12.1f}x")


if __name__ == "__main__":
    main()
