"""The grid of an `rshape eval` run: its config, its points, their hash, selectors and labels.

A run is described by an :class:`EvalConfig`: base knobs shared by every configuration
(any field of :class:`~rshape_fast.decoding.options.DecodingOptions`) plus one or more
*grid blocks*, each a mapping from knob name to the values it takes; the grid points are
the union of the blocks' Cartesian products (so a reproduction can combine "every shaping
at λ = 0.5" with "raw and SRS under three perturbations" without the full product).

The decoding modules are imported inside the functions that need them, so that importing
``rshape_fast.eval`` stays free of torch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rshape_fast.cache import DEFAULT_LM, DEFAULT_REWARD_MODEL
from rshape_fast.errors import InvalidInputError, ParameterError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - only on Python 3.10, where the package depends on tomli
    import tomli as tomllib

__all__ = [
    "DEFAULT_BASELINES",
    "DEFAULT_JUDGES",
    "FORMAT_VERSION",
    "EvalConfig",
    "GridPoint",
    "config_hash",
    "expand_grid",
    "load_config",
    "matches",
    "method_label",
    "parse_selector",
    "parse_value",
    "point_label",
    "selector_name",
]

# 2: draws keyed by prompt id, and the models' dtypes in the config hash.
FORMAT_VERSION = 2
"""Version of the run file's layout; part of the config hash, so that a file of another
layout is never resumed."""

# The reward knobs do not change what `method="base"` produces; folding them to the base
# values keeps a grid like {method: [base, args]} × {shaping: [...]} from decoding base N
# times.

# Knobs that lead a point's id, in this order; the rest follow alphabetically.
_ID_ORDER = ("method", "shaping", "weight", "perturbation")

DEFAULT_BASELINES: tuple[str, ...] = (
    "method=base",
    "method=args,shaping=raw",
    "method=args,shaping=minmax",
    "method=args,shaping=meanstd",
)
"""Baselines every configuration is compared with when the user names none (those
present in the grid)."""

DEFAULT_JUDGES: tuple[str, ...] = ("vader", "minilm")
"""Held-out judges of the metrics phase when the config names none."""


def _knob_names() -> set[str]:
    from rshape_fast.decoding.options import DecodingOptions

    return set(DecodingOptions.__dataclass_fields__)


def _normalise_value(value: Any) -> Any:
    # TOML and JSON give lists where DecodingOptions wants tuples (stop strings, ...).
    if isinstance(value, list):
        return tuple(value)
    return value


def _check_knobs(knobs: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(knobs) - _knob_names())
    if unknown:
        raise ParameterError(f"{where}: unknown decoding knob {unknown[0]!r}")


@dataclass(frozen=True)
class GridPoint:
    """One configuration of the grid: an id and the full knobs passed to ``generate``."""

    id: str
    knobs: dict[str, Any]

    @property
    def method(self) -> str:
        """The decoding method of this point."""
        return str(self.knobs["method"])


@dataclass
class EvalConfig:
    """What a run decodes: base knobs, grid blocks and the prompt set.

    Attributes:
        base: knobs shared by every point (fields of ``DecodingOptions``).
        grid: grid blocks; each maps knob names to the list of values they take. The
            points are the union of the blocks' Cartesian products, deduplicated.
        prompts_file: a prompt file (see ``rshape_fast.prompts``); ``None`` for the
            bundled prompts.
        split: keep only this split (``"test"`` by default; ``None`` for both).
        prompt_ids: keep only the prompts with these ids (file order; every id must exist
            in the split); ``None`` keeps all.
        limit: keep at most this many prompts.
        lm, rm: the language model and steering reward model (built-in names or local
            Hugging Face folders); `rm` may list several, an ensemble combined by the
            `ensemble` knob ("mean", "min", "uwo", "logsigmoid"; a grid axis like any).
        dtype, rm_dtype: the dtypes the models are loaded in ("float32", "bfloat16",
            "float16"; `rm_dtype` None follows `dtype`).
        baselines: selectors (``"method=args,shaping=raw"``) of the points every
            configuration is compared with; empty means :data:`DEFAULT_BASELINES`.
        judges: held-out judges of the metrics phase.
    """

    base: dict[str, Any] = field(default_factory=dict)
    grid: list[dict[str, list[Any]]] = field(default_factory=list)
    prompts_file: str | None = None
    split: str | None = "test"
    prompt_ids: list[str] | None = None
    limit: int | None = None
    lm: str = DEFAULT_LM
    rm: str | list[str] = DEFAULT_REWARD_MODEL
    dtype: str = "float32"
    rm_dtype: str | None = None
    baselines: list[str] = field(default_factory=list)
    judges: list[str] = field(default_factory=lambda: list(DEFAULT_JUDGES))

    def __post_init__(self) -> None:
        if isinstance(self.rm, list) and not self.rm:
            raise ParameterError("rm: an ensemble needs at least one reward model")
        _check_knobs(self.base, "base")
        for i, block in enumerate(self.grid):
            if not isinstance(block, Mapping) or not block:
                raise ParameterError(f"grid[{i}]: must be a non-empty table of knob -> values")
            _check_knobs(block, f"grid[{i}]")
            for name, values in block.items():
                if not isinstance(values, (list, tuple)) or not values:
                    raise ParameterError(f"grid[{i}].{name}: must be a non-empty list of values")
        for selector in self.baselines:
            parse_selector(selector)
        if self.prompt_ids is not None and not self.prompt_ids:
            raise ParameterError("prompt_ids: must name at least one prompt (or be None)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (tuples as lists)."""
        result: dict[str, Any] = json.loads(json.dumps(asdict(self), default=list))
        return result

    def load_prompts(self) -> list[Any]:
        """The prompts of this run (``rshape_fast.prompts.Prompt`` objects, file order)."""
        from rshape_fast.prompts import load_prompts

        if self.prompt_ids is None:
            return load_prompts(self.prompts_file, split=self.split, limit=self.limit)
        prompts = load_prompts(self.prompts_file, split=self.split)
        known = {p.id for p in prompts}
        missing = [i for i in self.prompt_ids if i not in known]
        if missing:
            raise ParameterError(
                f"prompt_ids: {missing[0]!r} is not a prompt of split {self.split!r}"
            )
        wanted = set(self.prompt_ids)
        return [p for p in prompts if p.id in wanted][: self.limit]


def load_config(path: str | Path) -> EvalConfig:
    """Read an :class:`EvalConfig` from a TOML file.

    Layout::

        prompts_file = "my_prompts.jsonl"   # optional; bundled prompts otherwise
        split = "test"                      # optional
        prompt_ids = ["review-003"]         # optional: only these prompts
        limit = 16                          # optional
        lm = "smollm2-135m-instruct"        # optional
        rm = "smollm2-sentiment"            # optional; a list is an ensemble
        dtype = "float32"                   # optional; rm_dtype too
        baselines = ["method=base", "method=args,shaping=raw"]
        judges = ["vader", "minilm"]

        [base]                              # knobs shared by every point
        max_new_tokens = 48
        k = 10

        [[grid]]                            # one block; add more [[grid]] for a union
        method = ["args"]
        shaping = ["raw", "srs"]
        weight = [0.25, 0.5, 1.0]

    A single ``[grid]`` table (not an array) is accepted as one block.
    """
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"{file}: config file does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"{file}: invalid TOML: {exc}") from None
    known = set(EvalConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ParameterError(f"{file}: unknown key {unknown[0]!r}; keys: {sorted(known)}")
    grid = data.get("grid", [])
    if isinstance(grid, dict):
        grid = [grid]
    data["grid"] = grid
    return EvalConfig(**data)


def _format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "|".join(str(v) for v in value)
    return str(value)


def _effective_base(base: Mapping[str, Any]) -> dict[str, Any]:
    from rshape_fast.decoding.options import DecodingOptions

    merged = {**DecodingOptions().to_dict(), **base}
    return {k: _normalise_value(v) for k, v in merged.items()}


def _point_id(knobs: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    keys = [k for k in _ID_ORDER if k in knobs]
    keys += sorted(k for k in knobs if k not in _ID_ORDER and knobs[k] != defaults.get(k))
    parts = []
    for key in keys:
        if key == "shaping" and knobs["method"] == "base":
            continue
        if key in ("weight", "perturbation") and knobs[key] == defaults.get(key):
            continue
        parts.append(f"{key}={_format_value(knobs[key])}")
    return ",".join(parts)


def expand_grid(config: EvalConfig) -> list[GridPoint]:
    """The grid's points in block order, deduplicated, each validated as ``DecodingOptions``.

    For ``method="base"`` the reward knobs (``decoding.options.REWARD_KNOBS``) are reset to
    the base values, since they do not change what base decoding produces.
    """
    from rshape_fast.decoding.options import REWARD_KNOBS, DecodingOptions

    base = _effective_base(config.base)
    points: list[GridPoint] = []
    seen: set[str] = set()
    for block in config.grid or [{}]:
        names = list(block)
        for values in itertools.product(*(block[n] for n in names)):
            knobs = dict(base)
            knobs.update({n: _normalise_value(v) for n, v in zip(names, values, strict=True)})
            if knobs["method"] == "base":
                knobs.update({k: base[k] for k in REWARD_KNOBS})
            try:
                DecodingOptions(**knobs)
            except TypeError as exc:  # a wrong type the dataclass cannot even hold
                raise ParameterError(f"grid point {knobs}: {exc}") from None
            point_id = _point_id(knobs, base)
            if point_id in seen:
                continue
            seen.add(point_id)
            points.append(GridPoint(point_id, knobs))
    return points


def config_hash(config: EvalConfig, points: Sequence[GridPoint], prompts: Sequence[Any]) -> str:
    """SHA-256 (first 16 hex digits) of what determines the generations.

    Covers the points' full knobs, the prompt ids and texts, the models and their dtypes;
    not the baselines or judges, which only change the metrics.
    """
    payload = {
        "format": FORMAT_VERSION,
        "points": [{"id": p.id, "knobs": p.knobs} for p in points],
        "prompts": [[p.id, p.text] for p in prompts],
        "lm": config.lm,
        "rm": config.rm,
        "dtype": [config.dtype, config.rm_dtype or config.dtype],
    }
    text = json.dumps(payload, sort_keys=True, default=list, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- selectors


def parse_value(text: str) -> Any:
    """A knob value from the command line: a TOML scalar if it is one, else the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_selector(text: str) -> dict[str, Any]:
    """``"method=args,shaping=raw"`` → ``{"method": "args", "shaping": "raw"}``.

    Values are read as TOML scalars when they parse as one (``0.5``, ``true``), else kept
    as strings.
    """
    if not isinstance(text, str) or not text.strip():
        raise ParameterError(f"baseline selector must be a non-empty string, got {text!r}")
    out: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"baseline selector {text!r}: expected key=value[,key=value]")
        out[key.strip()] = parse_value(value.strip())
    _check_knobs(out, f"baseline selector {text!r}")
    return out


def matches(knobs: Mapping[str, Any], selector: Mapping[str, Any]) -> bool:
    """Whether a point's knobs hold every value the selector names."""
    return all(knobs.get(k) == v for k, v in selector.items())


def selector_name(selector: Mapping[str, Any]) -> str:
    """Short display name of a baseline: its values joined by ``+`` (``args+raw``)."""
    return "+".join(_format_value(v) for v in selector.values())


# --------------------------------------------------------------------------- labels


def method_label(knobs: Mapping[str, Any]) -> str:
    """`method+shaping`, or the method alone where shaping has no effect."""
    from rshape_fast.decoding.registry import UNSHAPED

    method = str(knobs["method"])
    return method if method in UNSHAPED else f"{method}+{knobs['shaping']}"


def point_label(point: GridPoint, points: Sequence[GridPoint]) -> str:
    """A short label: method (+ shaping), then the knobs that vary among that method's points."""
    same = [p for p in points if p.method == point.method]
    varying = [
        k
        for k in point.knobs
        if k not in ("method", "shaping") and len({repr(p.knobs[k]) for p in same}) > 1
    ]
    extras = []
    for key in varying:
        value = point.knobs[key]
        if key == "weight":
            extras.append(f"λ={value:g}")
        elif key == "perturbation":
            if value != "none":
                extras.append(str(value))
        else:
            extras.append(f"{key}={_format_value(value)}")
    return " ".join([method_label(point.knobs), *extras])
