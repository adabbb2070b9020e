"""Every knob of a decoding run, validated once before any model work starts."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from rshape_fast._core import SCHEMES, ShapeParams
from rshape_fast.decoding.registry import METHODS, method_spec
from rshape_fast.errors import ParameterError

SHAPINGS: tuple[str, ...] = tuple(SCHEMES)
PERTURBATIONS = ("none", "noise", "random", "reversed")
#: How several reward models combine into one steering reward (decoding/ensemble.py).
ENSEMBLE_MODES = ("mean", "min", "uwo", "logsigmoid")

#: The knobs that say how a reward is shaped and fused (and perturbed), as opposed to how
#: tokens are drawn or how long a run is: the base model's output never depends on them.
REWARD_KNOBS: tuple[str, ...] = (
    "shaping",
    "k",
    "weight",
    "bound",
    "alpha",
    "beta",
    "spread_ratio",
    "max_weight",
    "max_exponent",
    "cap",
    "perturbation",
    "noise_variance",
)

# The shaping knobs' defaults are the core's (docs/algorithms.md §2.3); read them once.
_SHAPE = ShapeParams()


def parse_reward_scale(text: str) -> float | str:
    """`reward_scale` from text (`--reward-scale` of `generate`, `eval` and `cd-train`): a
    number, or "auto"."""
    return text if text == "auto" else float(text)


def _check(condition: bool, arg: str, message: str) -> None:
    if not condition:
        raise ParameterError(f"{arg}: {message}")


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _positive(value: float) -> bool:
    return _finite(value) and value > 0


@dataclass(frozen=True)
class DecodingOptions:
    """The knobs of `rshape_fast.generate`; see its docstring for their meaning.

    `beta=None` means β = 1/weight (λ = 1/β, docs/algorithms.md §1).
    """

    method: str = "args"
    shaping: str = "srs"
    k: int = 10
    weight: float = 0.5
    bound: float = _SHAPE.bound
    alpha: float = _SHAPE.alpha
    beta: float | None = None
    spread_ratio: float = _SHAPE.spread_ratio
    max_weight: float | None = _SHAPE.max_weight
    max_exponent: float | None = _SHAPE.max_exponent
    cap: float = _SHAPE.cap
    perturbation: str = "none"
    noise_variance: float = 1.0
    greedy: bool = True
    temperature: float = 0.7
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 128
    batch_size: int = 8
    seed: int = 0
    chat_template: bool = True
    # Whether special-token strings in a prompt (e.g. "<|im_end|>") act as control tokens
    # in the LM's and the reward models' templates; off, they are encoded as text.
    special_tokens_in_prompts: bool = False
    stop: tuple[str, ...] = field(default_factory=tuple)
    # Best-of-N family (bon, soft_bon, streaming_bon).
    n: int = 8
    checkpoint_tokens: int = 16
    reject_fraction: float = 0.5
    # Segment search (segment, segment_beam).
    segment_delimiters: tuple[str, ...] = ("\n", ".", "!", "?")
    entropy_threshold: float | None = None
    min_segment_tokens: int = 4
    max_segment_tokens: int = 32
    segment_samples: int = 4
    retries: int = 4
    accept_threshold: float | None = None
    beam_width: int = 2
    # Controlled decoding (cd): a value head saved by `rshape cd-train`.
    value_head: str | None = None
    # genarm: the autoregressive reward model (a causal-LM name or folder, the LM's tokenizer)
    # and the weight of its log-probabilities (the paper's α; `alpha` is SRS's sharpness).
    arm: str | None = None
    arm_weight: float = 1.0
    # Several reward models (`rm=[...]`): how they combine, and uwo's variance weight.
    ensemble: str = "mean"
    uwo_weight: float = 1.0
    # Rewards are divided by this before shaping (decoding/calibration.py): None (the
    # paper's semantics), a number, or "auto" (estimated from base decoding).
    reward_scale: float | str | None = None

    def __post_init__(self) -> None:
        _check(
            self.method in METHODS, "method", f"unknown method {self.method!r}; one of {METHODS}"
        )
        _check(
            self.shaping in SHAPINGS,
            "shaping",
            f"unknown scheme {self.shaping!r}; one of {SHAPINGS}",
        )
        _check(
            self.perturbation in PERTURBATIONS,
            "perturbation",
            f"unknown perturbation {self.perturbation!r}; one of {PERTURBATIONS}",
        )
        _check(
            isinstance(self.k, int) and self.k >= 1, "k", f"must be an integer >= 1, got {self.k!r}"
        )
        _check(
            self.ensemble in ENSEMBLE_MODES,
            "ensemble",
            f"unknown mode {self.ensemble!r}; one of {ENSEMBLE_MODES}",
        )
        scale = self.reward_scale
        _check(
            scale is None
            or scale == "auto"
            or (isinstance(scale, float | int) and _positive(scale)),
            "reward_scale",
            f"must be None, 'auto' or a finite number > 0, got {scale!r}",
        )
        for name in ("weight", "noise_variance", "uwo_weight", "arm_weight"):
            value = getattr(self, name)
            _check(_finite(value) and value >= 0, name, f"must be finite and >= 0, got {value!r}")
        for name in ("bound", "alpha", "beta", "spread_ratio", "max_weight", "max_exponent", "cap"):
            value = getattr(self, name)
            optional = name in ("beta", "max_weight", "max_exponent")
            _check(
                _finite(value) or (optional and value is None),
                name,
                f"must be a finite number{' or None' if optional else ''}, got {value!r}",
            )
        # The core checks the shaping knobs' ranges (one rule for kernels and decoders).
        self.shape_params  # noqa: B018
        _check(
            _finite(self.temperature) and self.temperature > 0,
            "temperature",
            f"must be finite and > 0, got {self.temperature!r}",
        )
        _check(
            self.top_k is None or (isinstance(self.top_k, int) and self.top_k >= 1),
            "top_k",
            f"must be None or an integer >= 1, got {self.top_k!r}",
        )
        _check(
            self.top_p is None or (_finite(self.top_p) and 0 < self.top_p <= 1),
            "top_p",
            f"must be None or in (0, 1], got {self.top_p!r}",
        )
        _check(
            isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1,
            "max_new_tokens",
            f"must be an integer >= 1, got {self.max_new_tokens!r}",
        )
        _check(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            "batch_size",
            f"must be an integer >= 1, got {self.batch_size!r}",
        )
        _check(
            isinstance(self.seed, int) and 0 <= self.seed < 2**63,
            "seed",
            f"must be an integer in [0, 2**63), got {self.seed!r}",
        )
        for name in ("greedy", "chat_template", "special_tokens_in_prompts"):
            value = getattr(self, name)
            _check(isinstance(value, bool), name, f"must be True or False, got {value!r}")
        _check(
            all(isinstance(s, str) and s for s in self.stop),
            "stop",
            "stop strings must be non-empty",
        )
        for name in (
            "n",
            "checkpoint_tokens",
            "min_segment_tokens",
            "max_segment_tokens",
            "segment_samples",
            "beam_width",
        ):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and value >= 1,
                name,
                f"must be an integer >= 1, got {value!r}",
            )
        _check(
            not method_spec(self.method).needs_value_head or self.value_head is not None,
            "value_head",
            f"method {self.method!r} needs a value head folder (train one with `rshape "
            "cd-data` then `rshape cd-train`, pass value_head=PATH)",
        )
        genarm = method_spec(self.method).needs_arm
        _check(
            not genarm or self.arm is not None,
            "arm",
            f"method {self.method!r} needs an autoregressive reward model (train one with "
            "`rshape arm-train`, pass arm=PATH)",
        )
        _check(
            genarm or (self.arm is None and self.arm_weight == 1.0),
            "arm" if self.arm is not None else "arm_weight",
            f"only method 'genarm' reads an autoregressive reward model, not {self.method!r}",
        )
        _check(
            not genarm or self.weight == DecodingOptions.weight,
            "weight",
            "genarm weighs the ARM's log-probabilities by arm_weight; weight (λ) is the "
            "reward model's weight in args",
        )
        _check(
            isinstance(self.retries, int) and self.retries >= 0,
            "retries",
            f"must be an integer >= 0, got {self.retries!r}",
        )
        _check(
            _finite(self.reject_fraction) and 0 <= self.reject_fraction < 1,
            "reject_fraction",
            f"must be in [0, 1), got {self.reject_fraction!r}",
        )
        _check(
            self.min_segment_tokens <= self.max_segment_tokens,
            "min_segment_tokens",
            f"must be <= max_segment_tokens ({self.max_segment_tokens}), "
            f"got {self.min_segment_tokens}",
        )
        _check(
            self.entropy_threshold is None
            or (_finite(self.entropy_threshold) and self.entropy_threshold > 0),
            "entropy_threshold",
            f"must be None or finite and > 0, got {self.entropy_threshold!r}",
        )
        _check(
            self.accept_threshold is None or _finite(self.accept_threshold),
            "accept_threshold",
            f"must be None or finite, got {self.accept_threshold!r}",
        )
        _check(
            all(isinstance(s, str) and s for s in self.segment_delimiters),
            "segment_delimiters",
            "delimiters must be non-empty strings",
        )

    @property
    def fusion_weight(self) -> float:
        """The weight of the (shaped) reward in a token-level fusion: `arm_weight` for
        genarm, λ (`weight`) for every other method."""
        return self.arm_weight if method_spec(self.method).needs_arm else self.weight

    @property
    def shaping_beta(self) -> float:
        """β of the shaping weight γ = e^{B/β}: given, or 1/(the fusion weight)."""
        if self.beta is not None:
            return self.beta
        # With a zero weight the shaped reward is multiplied by 0, so any finite β gives the
        # same run.
        weight = self.fusion_weight
        return 1.0 / weight if weight > 0 else 1.0

    @property
    def shape_params(self) -> ShapeParams:
        """The shaping knobs of a token-level candidate set (validated by the core)."""
        return ShapeParams(
            bound=self.bound,
            beta=self.shaping_beta,
            alpha=self.alpha,
            spread_ratio=self.spread_ratio,
            max_weight=self.max_weight,
            max_exponent=self.max_exponent,
            cap=self.cap,
        )

    @property
    def sequence_shape_params(self) -> ShapeParams:
        """The run's B, β, α and cap with the core's sequence-level caps, for sets of sampled
        responses or segments (the token-level `spread_ratio`/`max_weight` do not apply)."""
        return self.shape_params.sequence_level()

    @property
    def sequence_gamma(self) -> float:
        """γ of the sequence-level SRS threshold: e^{min(B/β, 2)} (docs/algorithms.md §2.3)."""
        return self.sequence_shape_params.gamma()

    @property
    def sequence_weight(self) -> float:
        """`sequence_gamma`'s old name (`weight` is λ everywhere else); deprecated."""
        warnings.warn(
            "DecodingOptions.sequence_weight is now sequence_gamma; sequence_weight will be "
            "removed in a later release",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.sequence_gamma

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stop"] = list(self.stop)
        out["segment_delimiters"] = list(self.segment_delimiters)
        return out
