"""What every model loader shares: quiet loading, the pad token, eval mode, the dtype."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from rshape_fast.errors import DeviceError, ModelError, ParameterError

__all__ = [
    "DTYPES",
    "DtypeLike",
    "check_model_device",
    "ensure_pad_token",
    "load_folder",
    "prepare",
    "quiet_loading",
    "resolve_device",
    "resolve_dtype",
]

# The floating-point dtypes a model may be loaded in, by name. The cache always holds
# float32 weights; a model is cast to one of these when it is loaded.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

DtypeLike = torch.dtype | str


def resolve_dtype(dtype: DtypeLike) -> torch.dtype:
    """``dtype`` as a torch dtype: one of :data:`DTYPES`, given by name or as the dtype."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    raise ParameterError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that this machine has.

    Raises:
        DeviceError: an unknown device string, or a CUDA (MPS) device where torch finds
            none, or a CUDA index beyond the devices present; torch would otherwise fail
            later with a driver error, or not at all until the first forward.
    """
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"device: {device!r} is not a torch device ({exc})") from None
    if target.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"device: {device!r} was asked for, but torch {torch.__version__} finds no "
                "CUDA device on this machine (torch.cuda.is_available() is False); use "
                "device='cpu'"
            )
        if target.index is not None and target.index >= count:
            raise DeviceError(
                f"device: {device!r} was asked for, but there are {count} CUDA devices"
            )
    if target.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device: {device!r} was asked for, but MPS is not available here")
    return target


def load_folder(
    folder: Any, model_class: Any, dtype: torch.dtype, what: str
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """The tokenizer and the `model_class` model of a local Hugging Face folder, in `dtype`,
    without touching the network; a `ModelError` naming `what` if either cannot load."""
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = model_class.from_pretrained(folder, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load {what} from {folder}: {exc}") from exc
    return tokenizer, model


def check_model_device(what: str, model_device: torch.device, device: torch.device) -> None:
    """Refuse a given model that sits on another device than ``device=`` asks for
    (``cuda`` without an index matches any CUDA device): the run would silently use the
    model where it is."""
    same = model_device.type == device.type and (
        device.index is None or model_device.index in (None, device.index)
    )
    if not same:
        raise DeviceError(
            f"device: {what} is on {model_device}, but device={str(device)!r} was asked for; "
            f"move the model (or load it by name with device=), or leave device= unset to "
            "run the given models where they are"
        )


@contextlib.contextmanager
def quiet_loading(*, progress: bool = False) -> Iterator[None]:
    """Hide transformers' per-load progress bars (unless ``progress``): a reload takes
    under a second and a bar per load is noise. The global setting is restored after.
    """
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, config: Any) -> int:
    """Give the tokenizer a pad token if it has none, mirror it into ``config``, return it.

    Padding is always masked out (and scores are read at explicit positions), so any valid
    id works; eos (or unk) keeps the vocabulary unchanged, unlike adding a new token.
    """
    if tokenizer.pad_token_id is None:
        for candidate in (tokenizer.eos_token, tokenizer.unk_token, tokenizer.bos_token):
            if candidate is not None:
                tokenizer.pad_token = candidate
                break
        else:
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(0)
    pad_token_id = int(tokenizer.pad_token_id)
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = pad_token_id
    return pad_token_id


def prepare(model: PreTrainedModel, device: torch.device) -> PreTrainedModel:
    """``model`` on ``device``, in eval mode, with autograd off for its parameters."""
    # Typed as a plain Module: transformers' decorated .to() confuses type checkers.
    module: torch.nn.Module = model
    module.to(device)
    model.eval()
    # Inference only: no autograd bookkeeping even outside torch.inference_mode.
    model.requires_grad_(False)
    return model
