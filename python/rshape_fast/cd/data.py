"""Training data of controlled decoding: sampled responses, their rewards, hidden states.

`collect` samples M base responses per prompt (the M rows of one prompt share the
prompt's KV cache: prefill once, then fork), scores them with the steering reward model
and stores the LM's last-layer hidden state after every response token.

On-disk layout of a data directory (it streams and resumes)::

    manifest.json        format, version and the sampling config (refused if it differs)
    index.jsonl          append-only, one line per sample: prompt_id, prompt, sample,
                         tokens, text, reward, stop_reason, shard, offset, length
    shards/NNNNN.npy     float16 [tokens of all M samples of one prompt, hidden size]

A prompt's shard is written (atomically, by rename) before its M index lines, and the M
lines go out in one write followed by fsync. A crash therefore loses at most the prompt in
flight: on reopening, a torn last line or an incomplete prompt is cut off the index and an
orphan shard is overwritten. Finished prompts are skipped on rerun, never recomputed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rshape_fast.cache import DEFAULT_LM, DEFAULT_REWARD_MODEL
from rshape_fast.errors import (
    DataConfigError,
    InvalidInputError,
    ParameterError,
)

FORMAT = "rshape-cd-data"
# 2: samples keyed by the BLAKE2b prompt key every decoding method uses (1: CRC-32).
VERSION = 2
MANIFEST = "manifest.json"
INDEX = "index.jsonl"
SHARDS = "shards"


@dataclass(frozen=True)
class CDDataConfig:
    """How the base responses are sampled (docs/algorithms.md §2.4: M = 10, T = 0.7, top-p 0.9).

    Everything here changes the stored data, so a resumed run must use the same values.
    """

    lm: str = DEFAULT_LM
    rm: str = DEFAULT_REWARD_MODEL
    samples: int = 10
    temperature: float = 0.7
    top_p: float | None = 0.9
    top_k: int | None = None
    max_new_tokens: int = 64
    seed: int = 0
    chat_template: bool = True
    dtype: str = "float16"

    def __post_init__(self) -> None:
        if not isinstance(self.samples, int) or self.samples < 2:
            # SRS thresholds need at least two samples of a prompt to mean anything.
            raise ParameterError(f"samples: must be an integer >= 2, got {self.samples!r}")
        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise ParameterError(f"temperature: must be finite and > 0, got {self.temperature!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ParameterError(f"top_p: must be None or in (0, 1], got {self.top_p!r}")
        if self.top_k is not None and self.top_k < 1:
            raise ParameterError(f"top_k: must be None or >= 1, got {self.top_k!r}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ParameterError(
                f"max_new_tokens: must be an integer >= 1, got {self.max_new_tokens!r}"
            )
        if self.dtype not in ("float16", "float32"):
            raise ParameterError(f"dtype: float16 or float32, got {self.dtype!r}")


@dataclass
class Sample:
    """One stored response: its tokens (eos included when it ended there) and reward."""

    prompt_id: str
    prompt: str
    sample: int
    tokens: list[int]
    text: str
    reward: float
    stop_reason: str
    shard: str
    offset: int
    length: int


@dataclass
class CollectReport:
    """What one `collect` call did."""

    prompts_done: int = 0
    prompts_skipped: int = 0
    samples: int = 0
    tokens: int = 0
    lm_calls: int = 0
    seconds: float = 0.0
    done_ids: list[str] = field(default_factory=list)


class CDDataset:
    """A data directory opened for reading (and, through `collect`, appending).

    `hidden=False` reads the samples without their hidden states: a prompt counts when its
    index lines are complete, shards or not (GenARM's training needs only tokens and
    rewards, so it can train from an index committed without its shards).
    """

    def __init__(self, path: str | os.PathLike[str], *, hidden: bool = True) -> None:
        self.path = Path(path)
        self.has_hidden = hidden
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise InvalidInputError(f"{self.path}: not a cd-data directory (no {MANIFEST})")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise InvalidInputError(
                f"{manifest_path}: format {manifest.get('format')!r} v{manifest.get('version')}, "
                f"expected {FORMAT!r} v{VERSION}"
            )
        self.config = CDDataConfig(**manifest["config"])
        self.hidden_size: int | None = manifest.get("hidden_size")
        self.samples, good_bytes = _read_index(self.path / INDEX, self.config.samples, hidden)
        self._good_bytes = good_bytes

    def by_prompt(self) -> dict[str, list[Sample]]:
        """Samples grouped by prompt id, in the order the prompts were written."""
        out: dict[str, list[Sample]] = {}
        for s in self.samples:
            out.setdefault(s.prompt_id, []).append(s)
        return out

    def hidden(self, sample: Sample) -> np.ndarray:
        """Hidden states `[length, hidden size]` of one sample (memory-mapped, read-only)."""
        if not self.has_hidden:
            raise InvalidInputError(f"{self.path}: opened with hidden=False")
        shard = np.load(self.path / sample.shard, mmap_mode="r")
        return shard[sample.offset : sample.offset + sample.length]


def _read_index(path: Path, per_prompt: int, hidden: bool) -> tuple[list[Sample], int]:
    """Complete prompts of the index and the byte length that holds exactly them.

    A prompt is complete when its M lines are there and (with `hidden`) so is its shard: an
    index kept without its shards (results/reproduce commits the index, not the 70 MB of
    hidden states) resumes by sampling those prompts again, with the same keyed draws.
    """
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    samples: list[Sample] = []
    good = 0
    pending: list[Sample] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break  # torn last line: the prompt it belongs to is incomplete
        try:
            record = Sample(**json.loads(data[pos:end]))
        except (ValueError, TypeError):
            break
        pos = end + 1
        if pending and pending[0].prompt_id != record.prompt_id:
            break  # an earlier prompt stopped short of M lines; nothing after it is trusted
        pending.append(record)
        if len(pending) == per_prompt:
            if hidden and not (path.parent / record.shard).is_file():
                break
            samples.extend(pending)
            pending = []
            good = pos
    return samples, good


def _prompt_key(prompt_id: str) -> int:
    # Seeds are keyed by the prompt id (as every decoding method keys them), so a prompt's
    # samples do not depend on which other prompts were collected before it or whether the
    # run was resumed.
    from rshape_fast.decoding.token_draws import prompt_key

    return prompt_key(prompt_id)


def _refuse_other_config(out_dir: Path, theirs_config: CDDataConfig, config: CDDataConfig) -> None:
    theirs, ours = asdict(theirs_config), asdict(config)
    diff = sorted(k for k in ours if theirs[k] != ours[k])
    if diff:
        changes = ", ".join(f"{k}: {theirs[k]!r} -> {ours[k]!r}" for k in diff)
        raise DataConfigError(
            f"{out_dir} holds data collected with another config ({changes}); "
            "use the same settings to resume, another directory, or --overwrite"
        )


def check_resumable(
    out_dir: str | os.PathLike[str], config: CDDataConfig, *, overwrite: bool = False
) -> None:
    """Raise `DataConfigError` now if `collect` would refuse `out_dir` (before loading models)."""
    path = Path(out_dir)
    if overwrite:
        return
    if (path / MANIFEST).exists():
        _refuse_other_config(path, CDDataset(path).config, config)
    elif path.exists() and any(path.iterdir()):
        raise DataConfigError(f"{path} exists, is not empty and holds no {MANIFEST}")


def _open_for_writing(
    out_dir: Path, config: CDDataConfig, *, overwrite: bool
) -> tuple[CDDataset | None, dict[str, Any]]:
    manifest = {"format": FORMAT, "version": VERSION, "config": asdict(config)}
    manifest_path = out_dir / MANIFEST
    if manifest_path.exists() and overwrite:
        for name in (MANIFEST, INDEX):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / SHARDS, ignore_errors=True)
    elif manifest_path.exists():
        existing = CDDataset(out_dir)
        _refuse_other_config(out_dir, existing.config, config)
        # Cut a torn tail left by a crash so that appends continue after whole prompts.
        with open(out_dir / INDEX, "ab") as f:
            f.truncate(existing._good_bytes)
        (out_dir / SHARDS).mkdir(exist_ok=True)  # absent in a clone: git keeps no shards
        return existing, manifest
    elif out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise DataConfigError(f"{out_dir} exists, is not empty and holds no {MANIFEST}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SHARDS).mkdir(exist_ok=True)
    _write_json(manifest_path, manifest)
    return None, manifest


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def sample_responses(
    lm: Any, prompt: str, config: CDDataConfig, key: int
) -> tuple[list[list[int]], list[str], list[np.ndarray], int]:
    """M sampled responses to one prompt, batched over one forked KV cache.

    Drawn by the sequence-level `Sampler` (the same stop rule and keyed draws as `bon`):
    sample s is keyed `(key, s)`. Returns token lists (eos kept when a row ended there), stop
    reasons, per-sample hidden states `[len, H]` (the state after each response token, the
    input `V` sees), and the number of LM forward calls.
    """
    import torch

    from rshape_fast.decoding.options import DecodingOptions
    from rshape_fast.decoding.phase_timer import PhaseTimer
    from rshape_fast.decoding.response_sampler import Sample, Sampler
    from rshape_fast.decoding.results import Cost

    options = DecodingOptions(
        method="base",
        greedy=False,
        temperature=config.temperature,
        top_k=config.top_k,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
        chat_template=config.chat_template,
    )
    cost = Cost()
    sampler = Sampler(lm, options, [cost], PhaseTimer.for_device(lm.device), hidden_states=True)
    samples = [Sample(owner=0, key=(key, s)) for s in range(config.samples)]
    sampler.start(
        [lm.encode(prompt, chat_template=config.chat_template)], samples, [0] * len(samples)
    )
    sampler.run()
    dtype = np.float16 if config.dtype == "float16" else np.float32
    arrays = [torch.stack(s.hidden).numpy().astype(dtype) for s in samples]
    return [s.tokens for s in samples], [str(s.reason) for s in samples], arrays, cost.lm_calls


def collect(
    out_dir: str | os.PathLike[str],
    prompts: Sequence[tuple[str, str]],
    *,
    lm: Any,
    rm: Any,
    config: CDDataConfig,
    overwrite: bool = False,
    progress: bool = True,
    on_prompt: Callable[[str], None] | None = None,
) -> CollectReport:
    """Sample, score and store M responses for each `(prompt id, prompt text)` not yet done.

    Args:
        out_dir: the data directory (created; resumed when it holds the same config).
        prompts: `(id, text)` pairs; ids must be unique.
        lm: a `LanguageModel` (its `name` should equal `config.lm`).
        rm: the steering `RewardModel` / `TextRewardModel` (`score(prompts, texts)`).
        config: the sampling config, stored in the manifest.
        overwrite: delete existing data in `out_dir` instead of refusing a config change.
        progress: show a tqdm bar over prompts.
        on_prompt: called with each prompt id after it is stored (tests, logging).

    Raises:
        DataConfigError: `out_dir` holds data of another config and `overwrite` is false.
        InvalidInputError: duplicate prompt ids, or a stored prompt id with other text.
    """
    ids = [pid for pid, _ in prompts]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("prompts: prompt ids must be unique")
    path = Path(out_dir)
    existing, manifest = _open_for_writing(path, config, overwrite=overwrite)
    done = existing.by_prompt() if existing is not None else {}
    for pid, text in prompts:
        if pid in done and done[pid][0].prompt != text:
            raise InvalidInputError(
                f"prompt {pid!r}: stored with different text in {path}; use --overwrite"
            )
    todo = [(pid, text) for pid, text in prompts if pid not in done]
    report = CollectReport(prompts_skipped=len(prompts) - len(todo))
    ordinal = len(done)
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(prompts), initial=report.prompts_skipped, desc="cd-data", unit="prompt"
        )
    try:
        for pid, text in todo:
            tokens, reasons, arrays, calls = sample_responses(lm, text, config, _prompt_key(pid))
            responses = [
                lm.decode([t for t in toks if t not in lm.eos_token_ids]) for toks in tokens
            ]
            rewards = np.asarray(rm.score([text] * len(responses), responses), dtype=np.float64)
            if manifest.get("hidden_size") is None:
                manifest["hidden_size"] = int(arrays[0].shape[1])
                _write_json(path / MANIFEST, manifest)
            shard = f"{SHARDS}/{ordinal:05d}.npy"
            tmp = path / f"{shard}.tmp.npy"
            np.save(tmp, np.concatenate(arrays, axis=0))
            os.replace(tmp, path / shard)
            lines, offset = [], 0
            for s, (toks, reason, arr) in enumerate(zip(tokens, reasons, arrays, strict=True)):
                record = Sample(
                    pid,
                    text,
                    s,
                    toks,
                    responses[s],
                    float(rewards[s]),
                    reason,
                    shard,
                    offset,
                    int(arr.shape[0]),
                )
                lines.append(json.dumps(asdict(record), ensure_ascii=False) + "\n")
                offset += int(arr.shape[0])
            with open(path / INDEX, "a", encoding="utf-8") as f:
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
            ordinal += 1
            report.prompts_done += 1
            report.samples += len(tokens)
            report.tokens += offset
            report.lm_calls += calls
            report.done_ids.append(pid)
            if on_prompt is not None:
                on_prompt(pid)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        report.seconds = time.perf_counter() - start
    return report
