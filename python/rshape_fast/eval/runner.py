"""`rshape eval`: a grid of decoding configurations over a prompt set, written as it runs.

A run is described by an :class:`EvalConfig`: base knobs shared by every configuration
(any field of :class:`~rshape_fast.decoding.DecodingOptions`) plus one or more *grid
blocks*, each a mapping from knob name to the values it takes; the grid points are the
union of the blocks' Cartesian products (so a reproduction can combine "every shaping at
λ = 0.5" with "raw and SRS under three perturbations" without the full product).

Every finished generation is appended to a JSON Lines *run file* at once (through
``generate``'s ``on_result``). The file starts with a header line holding the config
hash; on restart the runner reads the file, drops a truncated last line, skips the
``(point, prompt)`` pairs already written and generates only the rest. A file written for
another configuration is refused unless ``restart=True``.

The metrics phase (:func:`compute_metrics`) scores the finished responses with the
held-out judges, caching their scores in a sidecar (``RUN.judges.json``) so that
re-running a report does not re-run the judges.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rshape_fast.errors import InvalidInputError, ParameterError, RshapeError
from rshape_fast.eval.metrics import bootstrap_ci, diversity, win_tie_rate

__all__ = [
    "DEFAULT_BASELINES",
    "FORMAT_VERSION",
    "REWARD_KNOBS",
    "ConfigChangedError",
    "EvalConfig",
    "GridPoint",
    "RunFile",
    "RunFileError",
    "RunMetrics",
    "RunSummary",
    "compute_metrics",
    "config_hash",
    "expand_grid",
    "load_config",
    "parse_selector",
    "read_run",
    "run_eval",
]

FORMAT_VERSION = 1

# Knobs that do not change what `method="base"` produces; folding them to the base values
# keeps a grid like {method: [base, args]} × {shaping: [...]} from decoding base N times.
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


def _tomllib() -> Any:
    """The TOML reader: the standard library's from 3.11, `tomli` on 3.10."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:  # pragma: no cover - only on Python 3.10
        import tomli
    except ImportError as exc:  # pragma: no cover
        raise InvalidInputError("reading TOML on Python 3.10 needs `pip install tomli`") from exc
    return tomli  # pragma: no cover


class RunFileError(InvalidInputError):
    """A run file is malformed somewhere other than a truncated last line."""


class ConfigChangedError(RshapeError):
    """The run file was written for another configuration (and no restart was asked)."""


# --------------------------------------------------------------------------- config


def _knob_fields() -> dict[str, Any]:
    from rshape_fast.decoding.options import DecodingOptions

    return {name: f for name, f in DecodingOptions.__dataclass_fields__.items()}


def _normalise_value(name: str, value: Any) -> Any:
    # TOML and JSON give lists where DecodingOptions wants tuples (stop strings, ...).
    if isinstance(value, list):
        return tuple(value)
    return value


def _check_knobs(knobs: Mapping[str, Any], where: str) -> None:
    fields = _knob_fields()
    unknown = sorted(set(knobs) - set(fields))
    if unknown:
        raise ParameterError(f"{where}: unknown decoding knob {unknown[0]!r}")


@dataclass(frozen=True)
class GridPoint:
    """One configuration of the grid: an id and the full knobs passed to ``generate``."""

    id: str
    knobs: dict[str, Any]

    @property
    def method(self) -> str:
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
        limit: keep at most this many prompts.
        lm, rm: the language model and steering reward model (names or folders).
        baselines: selectors (``"method=args,shaping=raw"``) of the points every
            configuration is compared with; empty means :data:`DEFAULT_BASELINES`.
        judges: held-out judges of the metrics phase.
    """

    base: dict[str, Any] = field(default_factory=dict)
    grid: list[dict[str, list[Any]]] = field(default_factory=list)
    prompts_file: str | None = None
    split: str | None = "test"
    limit: int | None = None
    lm: str = "smollm2-135m-instruct"
    rm: str = "smollm2-sentiment"
    baselines: list[str] = field(default_factory=list)
    judges: list[str] = field(default_factory=lambda: list(DEFAULT_JUDGES))

    def __post_init__(self) -> None:
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (tuples as lists)."""
        return json.loads(json.dumps(asdict(self), default=list))

    def load_prompts(self) -> list[Any]:
        """The prompts of this run (``rshape_fast.prompts.Prompt`` objects, file order)."""
        from rshape_fast.prompts import load_prompts

        return load_prompts(self.prompts_file, split=self.split, limit=self.limit)


def load_config(path: str | Path) -> EvalConfig:
    """Read an :class:`EvalConfig` from a TOML file.

    Layout::

        prompts_file = "my_prompts.jsonl"   # optional; bundled prompts otherwise
        split = "test"                      # optional
        limit = 16                          # optional
        lm = "smollm2-135m-instruct"        # optional
        rm = "smollm2-sentiment"            # optional
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
    tomllib = _tomllib()
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


def _point_id(knobs: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    defaults = _effective_base(base)
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


def _format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "|".join(str(v) for v in value)
    return str(value)


def _effective_base(base: Mapping[str, Any]) -> dict[str, Any]:
    from rshape_fast.decoding.options import DecodingOptions

    merged = {**DecodingOptions().to_dict(), **base}
    return {k: _normalise_value(k, v) for k, v in merged.items()}


def expand_grid(config: EvalConfig) -> list[GridPoint]:
    """The grid's points in block order, deduplicated, each validated as ``DecodingOptions``.

    For ``method="base"`` the reward knobs (:data:`REWARD_KNOBS`) are reset to the base
    values, since they do not change what base decoding produces.
    """
    from rshape_fast.decoding.options import DecodingOptions

    base = _effective_base(config.base)
    blocks = config.grid or [{}]
    points: list[GridPoint] = []
    seen: set[str] = set()
    for block in blocks:
        names = list(block)
        for values in itertools.product(*(block[n] for n in names)):
            knobs = dict(base)
            knobs.update({n: _normalise_value(n, v) for n, v in zip(names, values, strict=True)})
            if knobs["method"] == "base":
                knobs.update({k: base[k] for k in REWARD_KNOBS})
            try:
                DecodingOptions(**knobs)
            except TypeError as exc:  # a wrong type the dataclass cannot even hold
                raise ParameterError(f"grid point {knobs}: {exc}") from None
            point_id = _point_id(knobs, config.base)
            if point_id in seen:
                continue
            seen.add(point_id)
            points.append(GridPoint(point_id, knobs))
    return points


def config_hash(config: EvalConfig, points: Sequence[GridPoint], prompts: Sequence[Any]) -> str:
    """SHA-256 (first 16 hex digits) of what determines the generations.

    Covers the points' full knobs, the prompt ids and texts and the two models; not the
    baselines or judges, which only change the metrics.
    """
    payload = {
        "format": FORMAT_VERSION,
        "points": [{"id": p.id, "knobs": p.knobs} for p in points],
        "prompts": [[p.id, p.text] for p in prompts],
        "lm": config.lm,
        "rm": config.rm,
    }
    text = json.dumps(payload, sort_keys=True, default=list, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- run file


@dataclass
class RunFile:
    """A run file as read: header, rows (first of any duplicate kept) and skip records."""

    header: dict[str, Any] | None
    rows: list[dict[str, Any]]
    skips: list[dict[str, Any]]
    good_bytes: int
    dropped_partial_line: bool

    def done(self) -> set[tuple[str, str]]:
        """The ``(point id, prompt id)`` pairs already generated."""
        return {(r["point_id"], r["prompt_id"]) for r in self.rows}


def read_run(path: str | Path) -> RunFile:
    """Read a run file, tolerating a truncated last line (an interrupted write).

    Raises:
        RunFileError: a line other than the last is not a JSON object, or the first line
            is not a header.
    """
    data = Path(path).read_bytes()
    header: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    skips: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    good = 0
    dropped = False
    lines = data.split(b"\n")
    # A file ending in "\n" splits into [..., b""]: the last element is the unterminated tail.
    for number, line in enumerate(lines, start=1):
        is_tail = number == len(lines)
        if not line.strip():
            if not is_tail:
                good += len(line) + 1
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if is_tail:
                dropped = True
                break
            raise RunFileError(f"{path}:{number}: not a JSON object; the file is damaged") from None
        if is_tail:
            # Complete JSON but no newline: the write was cut just before "\n". Keep it only
            # once the newline is there, so appending never glues two records together.
            dropped = True
            break
        kind = record.get("type")
        if number == 1 and kind != "header":
            raise RunFileError(f"{path}:1: the first line of a run file must be its header")
        if kind == "header":
            header = record
        elif kind == "row":
            key = (record["point_id"], record["prompt_id"])
            if key not in seen:
                seen.add(key)
                rows.append(record)
        elif kind == "skip":
            skips.append(record)
        good += len(line) + 1
    return RunFile(header, rows, skips, good, dropped)


def _append(handle: Any, record: Mapping[str, Any]) -> None:
    handle.write(json.dumps(record, ensure_ascii=False, default=list) + "\n")
    # Flushed per record so that a kill loses at most the record being written.
    handle.flush()


@dataclass
class RunSummary:
    """What one call of :func:`run_eval` did."""

    path: Path
    config_hash: str
    points: list[GridPoint]
    prompts: int
    reused: int
    generated: int
    skipped: dict[str, str]
    seconds: float


def _load_models(
    config: EvalConfig, lm: Any, rm: Any, need_rm: bool, device: str
) -> tuple[Any, Any]:
    from rshape_fast.models import load_lm, load_reward_model

    model = lm if lm is not None else load_lm(config.lm, device=device)
    reward = rm
    if reward is None and need_rm:
        reward = load_reward_model(config.rm, device=device)
    return model, reward


def run_eval(
    config: EvalConfig,
    path: str | Path,
    *,
    lm: Any = None,
    rm: Any = None,
    restart: bool = False,
    device: str = "cpu",
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    keep_going: bool = False,
) -> RunSummary:
    """Decode every (grid point, prompt) pair not yet in the run file, appending as it goes.

    Args:
        config: what to run.
        path: the JSONL run file (created with its header if missing or empty).
        lm, rm: model objects to use instead of loading ``config.lm`` / ``config.rm``
            (``rm`` may be anything ``generate`` accepts, a callable included). The steering
            reward scores every point's responses, base included.
        restart: discard a run file written for another configuration instead of refusing.
        device: where models named by the config are loaded.
        progress: show a progress bar over the grid's pending generations.
        on_row: called after each row is written (tests use it to simulate a crash).
        keep_going: record a point whose decoding raises (any ``Exception``) as skipped
            and go on with the next one, instead of stopping the run; for long unattended
            runs over methods that are still being written.

    Returns:
        A :class:`RunSummary`; points whose method is not implemented are listed in
        ``skipped`` (and recorded in the file) rather than failing the run.

    Raises:
        ConfigChangedError: the file holds another configuration and ``restart`` is false.
    """
    from rshape_fast.decoding import RUNNERS, generate

    started = time.perf_counter()
    file = Path(path)
    prompts = config.load_prompts()
    points = expand_grid(config)
    digest = config_hash(config, points, prompts)

    existing = read_run(file) if file.exists() and file.stat().st_size > 0 else None
    if existing is not None and (existing.header or {}).get("config_hash") != digest:
        if not restart:
            old = (existing.header or {}).get("config_hash")
            raise ConfigChangedError(
                f"{file} was written for config {old}, this config is {digest}; "
                "pass --restart (restart=True) to discard it, or write to another file"
            )
        existing = None
    file.parent.mkdir(parents=True, exist_ok=True)
    if existing is None:
        header = {
            "type": "header",
            "format": FORMAT_VERSION,
            "config_hash": digest,
            "config": config.to_dict(),
            "points": [{"id": p.id, "knobs": p.knobs} for p in points],
            "prompt_ids": [p.id for p in prompts],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with file.open("w", encoding="utf-8") as handle:
            _append(handle, header)
        done: set[tuple[str, str]] = set()
    else:
        if existing.dropped_partial_line:
            # Cut the interrupted tail off so that the next record starts on its own line.
            with file.open("r+b") as raw_handle:
                raw_handle.truncate(existing.good_bytes)
        done = existing.done()

    pending = {
        p.id: [i for i, prompt in enumerate(prompts) if (p.id, prompt.id) not in done]
        for p in points
    }
    total = sum(len(v) for v in pending.values())
    reused = len(points) * len(prompts) - total
    skipped: dict[str, str] = {}
    generated = 0
    if total == 0:
        return RunSummary(
            file, digest, points, len(prompts), reused, 0, skipped, time.perf_counter() - started
        )

    need_rm = True  # the steering reward scores every response, base included
    model, reward = _load_models(config, lm, rm, need_rm, device)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="eval", unit="gen")
    try:
        with file.open("a", encoding="utf-8") as handle:
            for point in points:
                todo = pending[point.id]
                if not todo:
                    continue
                if point.method not in RUNNERS:
                    reason = f"method {point.method!r} is not implemented (not in RUNNERS)"
                    skipped[point.id] = reason
                    _append(handle, {"type": "skip", "point_id": point.id, "reason": reason})
                    if bar is not None:
                        bar.update(len(todo))
                    continue
                if bar is not None:
                    bar.set_description(point.id[:60])

                def write(result: Any, point: GridPoint = point, todo: list[int] = todo) -> None:
                    nonlocal generated
                    prompt = prompts[todo[result.index]]
                    row = {
                        "type": "row",
                        "config_hash": digest,
                        "point_id": point.id,
                        "knobs": point.knobs,
                        "prompt_id": prompt.id,
                        "prompt": prompt.text,
                        "response": result.text,
                        "token_ids": [int(t) for t in result.token_ids],
                        "reward": None if result.reward is None else float(result.reward),
                        "cost": result.cost.to_dict(),
                        "seed": point.knobs.get("seed"),
                        "stop_reason": result.stop_reason,
                        "method": result.method,
                        "extras": result.extras,
                    }
                    _append(handle, row)
                    generated += 1
                    if bar is not None:
                        bar.update(1)
                    if on_row is not None:
                        on_row(row)

                try:
                    generate(
                        [prompts[i].text for i in todo],
                        lm=model,
                        rm=reward,
                        device=device,
                        on_result=write,
                        **point.knobs,
                    )
                except NotImplementedError as exc:
                    # Methods are being added in parallel; a run records what it could not do.
                    reason = f"not implemented: {exc}"
                    skipped[point.id] = reason
                    _append(handle, {"type": "skip", "point_id": point.id, "reason": reason})
                except Exception as exc:
                    if not keep_going:
                        raise
                    reason = f"failed: {type(exc).__name__}: {exc}"
                    skipped[point.id] = reason
                    _append(handle, {"type": "skip", "point_id": point.id, "reason": reason})
    finally:
        if bar is not None:
            bar.close()
    return RunSummary(
        file,
        digest,
        points,
        len(prompts),
        reused,
        generated,
        skipped,
        time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- metrics


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


def parse_value(text: str) -> Any:
    """A knob value from the command line: a TOML scalar if it is one, else the string."""
    tomllib = _tomllib()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def selector_name(selector: Mapping[str, Any]) -> str:
    """Short display name of a baseline: its values joined by ``+`` (``args+raw``)."""
    return "+".join(_format_value(v) for v in selector.values())


def _matches(knobs: Mapping[str, Any], selector: Mapping[str, Any]) -> bool:
    return all(knobs.get(k) == v for k, v in selector.items())


def _nearest(point: GridPoint, candidates: Iterable[GridPoint]) -> GridPoint | None:
    # The baseline point that differs from `point` in the fewest knobs: SRS at λ = 0.25
    # is compared with raw at λ = 0.25, SRS under noise with raw under noise.
    best: tuple[int, GridPoint] | None = None
    for candidate in candidates:
        if candidate.id == point.id:
            continue
        distance = sum(point.knobs.get(k) != v for k, v in candidate.knobs.items())
        if best is None or distance < best[0]:
            best = (distance, candidate)
    return None if best is None else best[1]


# Methods whose output does not depend on the `shaping` knob: base decoding, best-of-N and
# streaming best-of-N rank raw rewards (shaping is monotone), and cd's value head was
# trained on already-shaped targets. Their labels leave the scheme out.
UNSHAPED_METHODS = ("base", "bon", "streaming_bon", "cd")


def method_label(knobs: dict[str, Any]) -> str:
    """`method+shaping`, or the method alone where shaping has no effect."""
    method = str(knobs["method"])
    return method if method in UNSHAPED_METHODS else f"{method}+{knobs['shaping']}"


def point_label(point: GridPoint, points: Sequence[GridPoint]) -> str:
    """A short label: method (+ shaping), then the knobs that vary among that method's points."""
    same = [p for p in points if p.method == point.method]
    varying = [
        k
        for k in point.knobs
        if k not in ("method", "shaping") and len({repr(p.knobs[k]) for p in same}) > 1
    ]
    name = method_label(point.knobs)
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
    return " ".join([name, *extras])


@dataclass
class RunMetrics:
    """Everything the report shows, JSON-serialisable through :meth:`to_dict`.

    ``points``: one dict per grid point with rows (label, knobs, n, means and 95 %
    bootstrap intervals of each score, mean costs). ``win_tie``: one dict per
    (configuration, baseline, judge). ``values``: per point, per score, prompt id → value
    (for paired comparisons).
    """

    config_hash: str
    config: dict[str, Any]
    prompts: int
    points: list[dict[str, Any]]
    baselines: list[dict[str, Any]]
    win_tie: list[dict[str, Any]]
    skipped: dict[str, str]
    missing: list[str]
    values: dict[str, dict[str, dict[str, float]]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def point(self, point_id: str) -> dict[str, Any]:
        """The summary dict of one point."""
        for entry in self.points:
            if entry["id"] == point_id:
                return entry
        raise KeyError(point_id)


SCORES: tuple[str, ...] = ("reward", "vader", "minilm", "diversity", "coherence")
"""Per-response scores summarised for every point."""

JUDGE_SCORES: tuple[str, ...] = ("reward", "vader", "minilm")
"""Scores win-tie rates are computed by (the steering reward and the held-out judges)."""


def _text_key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:24]


def _judge_cache_path(path: Path) -> Path:
    return path.with_name(path.name + ".judges.json")


def _score_with_cache(
    rows: Sequence[Mapping[str, Any]], judges: Sequence[str], cache_file: Path, device: str
) -> dict[str, dict[str, float]]:
    """Judge and coherence scores of every row, from the sidecar or computed and saved."""
    cache: dict[str, dict[str, float]] = {}
    if cache_file.exists():
        try:
            cache = json.loads(cache_file.read_text(encoding="utf-8"))
        except ValueError:
            cache = {}  # a damaged cache only costs a re-score
    changed = False
    for name in [*judges, "coherence"]:
        table = cache.setdefault(name, {})
        if name == "coherence":
            keyed = {_text_key(r["prompt"], r["response"]): r for r in rows}
        else:
            keyed = {_text_key(r["response"]): r for r in rows}
        missing = [k for k in keyed if k not in table]
        if not missing:
            continue
        if name == "coherence":
            from rshape_fast.eval.judges import coherence

            scores = coherence(
                [keyed[k]["prompt"] for k in missing], [keyed[k]["response"] for k in missing]
            )
        else:
            from rshape_fast.eval.judges import load_judge

            judge = load_judge(name, device=device)
            scores = judge.score([keyed[k]["response"] for k in missing])
        table.update({k: float(s) for k, s in zip(missing, scores, strict=True)})
        changed = True
    if changed:
        tmp = cache_file.with_name(cache_file.name + ".tmp")
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        os.replace(tmp, cache_file)
    return cache


def _summary(values: Sequence[float]) -> dict[str, float]:
    mean, low, high = bootstrap_ci(np.asarray(values, dtype=np.float64))
    return {"mean": mean, "low": low, "high": high}


def compute_metrics(
    path: str | Path,
    *,
    baselines: Sequence[str] | None = None,
    judges: Sequence[str] | None = None,
    device: str = "cpu",
) -> RunMetrics:
    """Metrics of every grid point of a run file (judges scored here, cached in a sidecar).

    Args:
        path: the run file.
        baselines: selectors of the baseline points; default: the config's, else
            :data:`DEFAULT_BASELINES`, keeping those that match a point with rows.
        judges: held-out judges; default: the config's.
        device: where the MiniLM judge runs.
    """
    file = Path(path)
    run = read_run(file)
    if run.header is None:
        raise RunFileError(f"{file}: no header; not a run file")
    config = run.header["config"]
    points = [GridPoint(p["id"], p["knobs"]) for p in run.header["points"]]
    judge_names = list(judges if judges is not None else config.get("judges", DEFAULT_JUDGES))
    rows_by_point: dict[str, list[dict[str, Any]]] = {p.id: [] for p in points}
    for row in run.rows:
        rows_by_point.setdefault(row["point_id"], []).append(row)
    cache = _score_with_cache(run.rows, judge_names, _judge_cache_path(file), device)

    values: dict[str, dict[str, dict[str, float]]] = {}
    summaries: list[dict[str, Any]] = []
    for point in points:
        rows = rows_by_point[point.id]
        if not rows:
            continue
        per: dict[str, dict[str, float]] = {name: {} for name in ("reward", *judge_names)}
        per["diversity"] = {}
        per["coherence"] = {}
        for r in rows:
            pid = r["prompt_id"]
            if r["reward"] is not None:
                per["reward"][pid] = float(r["reward"])
            for name in judge_names:
                per[name][pid] = cache[name][_text_key(r["response"])]
            per["diversity"][pid] = diversity(r["response"])
            per["coherence"][pid] = cache["coherence"][_text_key(r["prompt"], r["response"])]
        values[point.id] = per
        cost_keys = ("generated_tokens", "lm_calls", "rm_calls", "lm_tokens", "rm_tokens")
        cost = {k: float(np.mean([r["cost"][k] for r in rows])) for k in cost_keys}
        cost["forward_calls"] = cost["lm_calls"] + cost["rm_calls"]
        cost["seconds"] = float(np.mean([r["cost"]["seconds_total"] for r in rows]))
        summaries.append(
            {
                "id": point.id,
                "label": point_label(point, points),
                "knobs": point.knobs,
                "n": len(rows),
                "scores": {name: _summary(list(v.values())) for name, v in per.items() if v},
                "cost": cost,
            }
        )

    with_rows = [p for p in points if p.id in values]
    selectors = list(baselines or config.get("baselines") or DEFAULT_BASELINES)
    baseline_info: list[dict[str, Any]] = []
    win_ties: list[dict[str, Any]] = []
    for text in selectors:
        selector = parse_selector(text)
        matching = [p for p in with_rows if _matches(p.knobs, selector)]
        baseline_info.append(
            {
                "selector": text,
                "name": selector_name(selector),
                "points": [p.id for p in matching],
            }
        )
        if not matching:
            continue
        for point in with_rows:
            if _matches(point.knobs, selector):
                continue
            other = _nearest(point, matching)
            if other is None:
                continue
            for judge in ("reward", *judge_names):
                a, b = values[point.id].get(judge, {}), values[other.id].get(judge, {})
                shared = sorted(set(a) & set(b))
                if not shared:
                    continue
                rate = win_tie_rate([a[k] for k in shared], [b[k] for k in shared])
                win_ties.append(
                    {
                        "point": point.id,
                        "baseline": selector_name(selector),
                        "baseline_point": other.id,
                        "judge": judge,
                        "n": len(shared),
                        **rate,
                    }
                )

    skipped = {s["point_id"]: s["reason"] for s in run.skips if s["point_id"] not in values}
    missing = [p.id for p in points if p.id not in values]
    return RunMetrics(
        config_hash=run.header["config_hash"],
        config=config,
        prompts=len(run.header.get("prompt_ids", [])),
        points=summaries,
        baselines=baseline_info,
        win_tie=win_ties,
        skipped=skipped,
        missing=missing,
        values=values,
    )
