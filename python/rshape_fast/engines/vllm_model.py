"""A language model served by vLLM (`load_lm(..., engine="vllm")`).

The model's weights live in a `vllm.LLM` (its engine runs in a process of its own); this
package keeps the Hugging Face tokenizer of the same folder, so prompts are encoded, stop
rules applied and responses decoded exactly as on the transformers engine. The LLM is
built with `VllmArgsLogitsProcessor` registered, so ARGS runs on it too
(docs/scaling.md, "vLLM").

vLLM has two model runners. The logits processor implements the V1 runner's interface,
which is the one vLLM uses on CPU; on a GPU, where vLLM 0.32 prefers its V2 runner, the
loader asks for V1 (`VLLM_USE_V2_MODEL_RUNNER=0`) unless the caller set that variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from rshape_fast.errors import EngineError, ModelError
from rshape_fast.models.builtins import resolve_model
from rshape_fast.models.language_model import LanguageModelBase, eos_ids
from rshape_fast.models.loading import DTYPES, DtypeLike, ensure_pad_token, quiet_loading

__all__ = ["VLLM_INSTALL_HINT", "VllmLanguageModel", "import_vllm", "load_vllm_lm"]

VLLM_INSTALL_HINT = (
    "on a GPU machine: pip install 'rshape_fast[vllm]'; on a CPU one, in a checkout: "
    "make vllm-env (README, 'vLLM')"
)
#: The processor's import path, as vLLM takes it (`--logits-processors` of `vllm serve`).
PROCESSOR = "rshape_fast.engines.vllm_processor:VllmArgsLogitsProcessor"


def import_vllm() -> Any:
    """The vllm module, or a one-line EngineError naming how to install it."""
    try:
        import vllm
    except ImportError:
        raise EngineError(
            f"the vLLM engine needs vllm, which is not installed: {VLLM_INSTALL_HINT}"
        ) from None
    return vllm


@dataclass(eq=False)
class VllmLanguageModel(LanguageModelBase):
    """A causal LM whose forward passes run in vLLM: `llm` is the `vllm.LLM`, `config` the
    folder's Hugging Face config. Every sequence-level method draws through it
    (`VllmGenerator`); `base` and `args` run as vLLM requests, ARGS through the logits
    processor; `cd` needs the transformers engine."""

    llm: Any = field(repr=False)
    config: Any = field(repr=False)
    folder: str = ""

    engine: ClassVar[str] = "vllm"

    @property
    def max_positions(self) -> int | None:
        """The context vLLM was started with (`max_model_len`)."""
        return int(self.llm.llm_engine.model_config.max_model_len)

    @property
    def vocab_size(self) -> int:
        return int(self.config.vocab_size)


def load_vllm_lm(
    name_or_path: str | os.PathLike[str],
    *,
    device: str | torch.device,
    dtype: DtypeLike,
    **engine_args: Any,
) -> VllmLanguageModel:
    """Start vLLM on a built-in name (converted into the cache on first use) or a local
    causal-LM folder. `engine_args` go to `vllm.LLM` (e.g. `max_model_len`, `block_size`,
    `gpu_memory_utilization`); `enforce_eager=True` and `seed=0` are the defaults here.

    On CPU vLLM sizes its KV cache from `VLLM_CPU_KVCACHE_SPACE` (GiB); it is set to 4 and
    `VLLM_CPU_OMP_THREADS_BIND` to "nobind" when the caller has not set them, since vLLM's
    own defaults want most of the machine's memory and pin threads to every core. The
    engine runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, unless set).
    """
    vllm = import_vllm()
    folder = os.fspath(resolve_model(name_or_path, "lm"))
    target = torch.device(device)
    if isinstance(dtype, torch.dtype):
        dtype = next(name for name, value in DTYPES.items() if value == dtype)
    if dtype not in DTYPES:
        raise ModelError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if target.type == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0")
    # The engine in this process: no spawned engine process (so no `__main__` guard is
    # needed), and the logits processor's reward-model costs are readable here.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        try:
            generation = GenerationConfig.from_pretrained(folder, local_files_only=True)
            generation_eos = generation.eos_token_id
        except OSError:
            generation_eos = None
    pad_token_id = ensure_pad_token(tokenizer, config)
    args: dict[str, Any] = {"enforce_eager": True, "seed": 0, **engine_args}
    llm = vllm.LLM(model=folder, dtype=dtype, logits_processors=[PROCESSOR], **args)
    return VllmLanguageModel(
        name=os.fspath(name_or_path),
        tokenizer=tokenizer,
        device=target,
        eos_token_ids=eos_ids(tokenizer, generation_eos),
        pad_token_id=pad_token_id,
        llm=llm,
        config=config,
        folder=folder,
    )
