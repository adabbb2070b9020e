"""When a response ends, and the live rows of a token-level batch.

`StopRule` is the one stop rule of every method. Checked after every token, in this order:
EOS (`eos`), a stop string in the response (`stop_string`, the text cut before it), the
response budget `max_new_tokens` (`length`). In segment mode a segment also ends when its text
contains a delimiter (`delimiter`) or at `max_segment_tokens` (`segment_length`); the
sequence-level sampler adds `entropy` before a token is drawn. Only `FINAL_REASONS` end a
whole response.

`Rows` holds the live rows of one token-level batch: their responses, costs and the finished
outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.results import Cost, RowOutput
from rshape_fast.models import LanguageModelBase

FINAL_REASONS = ("eos", "stop_string", "length")
SEGMENT_REASONS = ("delimiter", "entropy", "segment_length")


# Characters a window's decoding may get wrong at its start (a token cut inside a
# multi-byte character, a SentencePiece leading space), so a window is that much longer.
_WINDOW_SLACK = 8


class StopRule:
    """The stop rule of a run (see the module docstring).

    Stop strings are looked for in the text of the newest tokens only, not in the whole
    response: a stop string that was not in the text after the previous token must end in
    the text the newest token added, so a window covering that token's text plus the
    longest stop string (and `_WINDOW_SLACK`) sees it at the same step the whole text
    would. Only then is the whole response decoded, once, to cut it at the first stop
    string. The check's cost per token is independent of the response's length (as vLLM's
    detokenizer scans only new characters), where decoding everything was O(n²) per row.
    """

    def __init__(self, lm: LanguageModelBase, options: DecodingOptions, *, segments: bool = False):
        self.lm = lm
        self.options = options
        self.segments = segments
        self.longest_stop = max((len(s) for s in options.stop), default=0)

    def check(self, prefix: Sequence[int], tokens: Sequence[int]) -> tuple[str | None, str | None]:
        """(reason or None, text cut at a stop string or None) after the last of `tokens`.

        `prefix` is the part of the response decided before this segment (empty at token
        level), `tokens` what was drawn since; the last token is the one just appended.
        """
        opts = self.options
        if tokens[-1] in self.lm.eos_token_ids:
            return "eos", None
        if opts.stop and self._stop_in_newest_text(prefix, tokens):
            text = self.lm.decode([*prefix, *tokens])
            hits = [text.find(s) for s in opts.stop if s in text]
            if hits:
                return "stop_string", text[: min(hits)]
        if len(prefix) + len(tokens) >= opts.max_new_tokens:
            return "length", None
        if self.segments:
            # A segment is at most `max_segment_tokens` long, so this decode is bounded.
            if any(d in self.lm.decode(tokens) for d in opts.segment_delimiters):
                return "delimiter", None
            if len(tokens) >= opts.max_segment_tokens:
                return "segment_length", None
        return None, None

    def _stop_in_newest_text(self, prefix: Sequence[int], tokens: Sequence[int]) -> bool:
        """Whether a stop string occurs in a window of the response's newest tokens long
        enough to hold any stop string that the newest token completed."""
        total = len(prefix) + len(tokens)
        need = len(self.lm.decode(tokens[-1:])) + self.longest_stop + _WINDOW_SLACK
        size = 1
        while True:
            size = min(2 * size, total)
            window = _tail(prefix, tokens, size)
            text = self.lm.decode(window)
            if len(text) >= need or size == total:
                return any(s in text for s in self.options.stop)


def _tail(prefix: Sequence[int], tokens: Sequence[int], size: int) -> list[int]:
    """The last `size` ids of `prefix + tokens`, without building the whole response."""
    if size <= len(tokens):
        return list(tokens[len(tokens) - size :])
    return [*prefix[len(prefix) - (size - len(tokens)) :], *tokens]


def strip_eos(ids: list[int], reason: str | None) -> list[int]:
    """The response without the closing EOS token (the one way every method returns ids)."""
    return ids[:-1] if reason == "eos" else ids


class Counted(Protocol):
    """Forward calls and per-row tokens of one model in a batch (rows follow `select`)."""

    @property
    def calls(self) -> int: ...

    @property
    def tokens(self) -> list[int]: ...


class Rows:
    """The live rows of a token-level batch: positions into the prompts, responses, costs.

    `push(tokens, lm, rm)` appends one token per live row, applies the stop rule, builds the
    output of every row that finished (its cost from the LM's and the reward side's
    counters, `rm=None` when nothing scores candidates) and returns the rows (0..live-1)
    that go on.
    """

    def __init__(self, n: int, stop: StopRule) -> None:
        self.stop = stop
        self.live = list(range(n))
        self.responses: list[list[int]] = [[] for _ in range(n)]
        self.costs = [Cost() for _ in range(n)]
        self.outputs: dict[int, RowOutput] = {}

    def push(
        self, tokens: Sequence[int], lm: Counted, rm: Counted | None
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """Append `tokens` (one per live row); return (rows kept, (position, token) emitted)."""
        keep: list[int] = []
        emitted: list[tuple[int, int]] = []
        for row, (pos, token) in enumerate(zip(self.live, tokens, strict=True)):
            response = self.responses[pos]
            response.append(int(token))
            emitted.append((pos, int(token)))
            reason, text = self.stop.check((), response)
            if reason is None:
                keep.append(row)
                continue
            ids = strip_eos(response, reason)
            cost = self.costs[pos]
            cost.lm_calls, cost.lm_tokens = lm.calls, lm.tokens[row]
            if rm is not None:
                cost.rm_calls, cost.rm_tokens = rm.calls, rm.tokens[row]
            cost.generated_tokens = len(response)
            self.outputs[pos] = RowOutput(
                token_ids=ids,
                text=text if text is not None else self.stop.lm.decode(ids),
                stop_reason=reason,
                cost=cost,
            )
        if len(keep) < len(self.live):
            self.live = [self.live[row] for row in keep]
        return keep, emitted
