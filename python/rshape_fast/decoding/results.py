"""What a decoding run returns: one `GenerationResult` per prompt, with its `Cost`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Cost:
    """Work spent on one prompt.

    Token and call counts are exact per prompt. Seconds are the wall time of the batches
    the prompt was decoded in, split evenly over the prompts of each batch.
    """

    lm_calls: int = 0
    lm_tokens: int = 0
    rm_calls: int = 0
    rm_tokens: int = 0
    generated_tokens: int = 0
    seconds_lm: float = 0.0
    seconds_rm: float = 0.0
    seconds_select: float = 0.0
    seconds_total: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(**{k: v + getattr(other, k) for k, v in asdict(self).items()})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class RowOutput:
    """A finished row as a method returns it: tokens, text, why it stopped, its cost, and
    method-specific facts (`extras`: samples, rewards, segments, the reward path, ...).

    `reward` is the steering reward of the final text when the method already scored it
    (the best-of-N family, segment search), so that one response has one reward everywhere;
    `None` lets `generate` score it.
    """

    token_ids: list[int]
    text: str
    stop_reason: str
    reward: float | None = None
    cost: Cost = field(default_factory=Cost)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerationResult:
    """One prompt's final response.

    `index` is the prompt's position in the call and `key` the key its random draws were
    keyed by (the prompt id of a prompt file, a `keys=` entry, or the prompt text).
    `reward` is the steering reward model's score of the final (prompt, text) pair (None
    when the run had no reward model). `options` holds every knob of the run.
    `extras` holds method-specific facts (number of samples, accepted segments, ...).
    `engine` is the engine the language model ran on ("transformers" or "vllm").
    """

    index: int
    key: str
    prompt: str
    text: str
    token_ids: list[int]
    reward: float | None
    stop_reason: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    extras: dict[str, Any] = field(default_factory=dict)
    engine: str = "transformers"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost"] = self.cost.to_dict()
        return out
