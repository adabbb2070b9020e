"""`rshape bench decoding --synthetic SIZE`: reward-guided decoding at real model sizes
without their weights.

A randomly initialised Llama causal LM and a Llama sequence-classification reward model
with the shapes of SIZE (`llama-8b`: Llama-3-8B; `tiny`: two small layers, for tests), in
`--dtype` (bf16 for the real size) on `--device`, with the bundled SmolLM2 tokenizer, EOS
ignored so every row runs the full length. Random weights change no speed, only the text.

Reported, for batch 1, 8 and 32: base decoding with transformers' `generate` on the same LM,
SRS-ARGS (k = 10, λ = 0.5, greedy), their ratio, SRS-ARGS's phase split, and each phase
against its floor: the larger of the model's weight bytes over the measured copy bandwidth
and its matmul FLOPs over the measured matmul throughput, per step.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Any

from rshape_fast.bench.report import BenchReport, Column, median_seconds, synced

#: Llama configurations by name: the real 8B shapes, and a tiny one the test suite runs.
SIZES: dict[str, dict[str, Any]] = {
    "llama-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=8192,
        rope_theta=500000.0,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=49152,
        max_position_embeddings=2048,
    ),
}
BATCHES = (1, 8, 32)
TEMPLATE = "{prompt}\n{response}\nGood answer? Yes"
K = 10


def synthetic_models(
    size: str, *, device: str, dtype: str, tokenizer: str | None = None
) -> tuple[Any, Any]:
    """The LM and reward model of `size`, randomly initialised (seeded) on `device`, with
    the tokenizer of the folder `tokenizer` (default: the bundled LM's, SmolLM2's)."""
    import torch
    from transformers import (
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
    )

    from rshape_fast.cache import DEFAULT_LM
    from rshape_fast.models import LanguageModel, RewardModel
    from rshape_fast.models.builtins import ensure_builtin
    from rshape_fast.models.loading import resolve_device, resolve_dtype

    target, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    folder = tokenizer or ensure_builtin(DEFAULT_LM)
    words = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    config = LlamaConfig(
        **SIZES[size],
        bos_token_id=words.bos_token_id,
        eos_token_id=words.eos_token_id,
        pad_token_id=words.pad_token_id,
    )
    config.num_labels = 1  # the reward model's one score; the LM ignores it
    torch.manual_seed(0)
    # Built on the device in the target dtype: an 8B model never passes through float32.
    with torch.device(target):
        lm_model = LlamaForCausalLM._from_config(config, dtype=torch_dtype)
        rm_model = LlamaForSequenceClassification._from_config(config, dtype=torch_dtype)
    lm = LanguageModel.from_model(lm_model, words, name=f"synthetic-{size}", device=target)
    lm.eos_token_ids = frozenset()  # every row runs the full length
    # A judging tail after the response, as reward-model templates have: every candidate
    # block carries it (5 tokens with the bundled tokenizer).
    rm = RewardModel(rm_model, words, template=TEMPLATE, name=f"synthetic-{size}-rm")
    return lm, rm


def _matmul_params(model: Any) -> int:
    """Weights the forward multiplies every token by (every Linear, the LM head included)."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def _weight_bytes(model: Any) -> int:
    """Bytes a forward reads: every weight but the embedding table, of which it reads rows."""
    embed = model.get_input_embeddings().weight
    return sum(p.numel() * p.element_size() for p in model.parameters() if p is not embed)


def copy_bandwidth(device: str) -> float:
    """Bytes per second read and written by a copy of a 1 GiB tensor (256 MiB on CPU)."""
    import torch

    size = (1 << 30) if device.startswith("cuda") else (1 << 28)
    src = torch.ones(size // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    return 2 * size / median_seconds(synced(partial(dst.copy_, src), device), min_repeats=7)


def matmul_throughput(device: str, dtype: Any) -> float:
    """FLOP/s of a large square matmul in `dtype` (8192 on a GPU, 1024 on a CPU)."""
    import torch

    n = 8192 if device.startswith("cuda") else 1024
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    return 2 * n**3 / median_seconds(synced(partial(torch.matmul, a, b), device), warmup=2)


def run(report: BenchReport, args: argparse.Namespace) -> None:
    import torch

    from rshape_fast.decoding import generate
    from rshape_fast.kv_batch import left_pad
    from rshape_fast.prompts import load_prompts

    tokens = args.tokens if not args.quick else 8
    batches = (1, 2) if args.quick else BATCHES
    lm, rm = synthetic_models(
        args.synthetic, device=args.device, dtype=args.dtype, tokenizer=args.tokenizer
    )
    bandwidth = copy_bandwidth(args.device)
    flops = matmul_throughput(args.device, lm.model.dtype)
    tail = len(rm.template_ids("p")[1])
    report.note(
        f"synthetic {args.synthetic} in {args.dtype}: random weights change no speed, only "
        f"the text. Copy bandwidth {bandwidth / 1e9:.1f} GB/s, {args.dtype} matmul "
        f"{flops / 1e12:.2f} TFLOP/s.",
        size=args.synthetic,
        copy_gb_s=bandwidth / 1e9,
        matmul_tflop_s=flops / 1e12,
        lm_params=sum(p.numel() for p in lm.model.parameters()),
        rm_params=sum(p.numel() for p in rm.model.parameters()),
        rm_tail_tokens=tail,
    )
    prompts = [p.text for p in load_prompts(split="test", limit=max(batches))]
    knobs: dict[str, Any] = {"k": K, "weight": 0.5, "max_new_tokens": tokens}

    def floor(model: Any, rows: int) -> float:
        """Seconds of one forward over `rows` tokens at the hardware's floor."""
        return max(_weight_bytes(model) / bandwidth, 2 * _matmul_params(model) * rows / flops)

    table = report.table(
        f"SRS-ARGS (k = {K}, λ = 0.5, greedy) against base decoding, {tokens} new tokens, "
        f"ms per step",
        [
            Column("batch", "batch"),
            Column("base_tokens_per_s", "base tokens/s", ".1f"),
            Column("args_tokens_per_s", "SRS-ARGS tokens/s", ".1f"),
            Column("args_over_base", "step / base step", ".2f"),
            Column("base_ms", "base ms", ".2f"),
            Column("args_ms", "SRS-ARGS ms", ".2f"),
            Column("lm_ms", "LM ms", ".2f"),
            Column("lm_floor_ms", "LM floor", ".2f"),
            Column("rm_ms", "RM ms", ".2f"),
            Column("rm_floor_ms", "RM floor", ".2f"),
            Column("select_ms", "select ms", ".2f"),
            Column("floor_ms", "SRS-ARGS floor", ".2f"),
            Column("over_floor", "× floor", ".2f"),
            Column("floor_over_base", "floor / base", ".2f"),
        ],
    )
    for batch in batches:
        rows = prompts[:batch]
        ids, mask = left_pad([lm.encode(p) for p in rows], lm.pad_token_id, lm.device)
        generate_kwargs: dict[str, Any] = dict(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=lm.pad_token_id,
        )
        warm = {**generate_kwargs, "max_new_tokens": 2, "min_new_tokens": 2}
        with torch.inference_mode():
            synced(partial(lm.model.generate, **warm), args.device)()
            t0 = time.perf_counter()
            synced(partial(lm.model.generate, **generate_kwargs), args.device)()
            base_s = time.perf_counter() - t0
        generate(rows[:1], lm=lm, rm=rm, **{**knobs, "max_new_tokens": 2})  # warm-up
        t0 = time.perf_counter()
        results = generate(rows, lm=lm, rm=rm, batch_size=batch, **knobs)
        args_s = time.perf_counter() - t0
        steps = tokens
        lm_floor = floor(lm.model, batch)
        rm_floor = floor(rm.model, batch * (1 + K * (1 + tail)))
        share = 1.0 / steps
        table.add(
            batch=batch,
            base_tokens_per_s=batch * tokens / base_s,
            args_tokens_per_s=batch * tokens / args_s,
            args_over_base=args_s / base_s,
            base_ms=base_s * share * 1e3,
            args_ms=args_s * share * 1e3,
            lm_ms=sum(r.cost.seconds_lm for r in results) * share * 1e3,
            lm_floor_ms=lm_floor * 1e3,
            rm_ms=sum(r.cost.seconds_rm for r in results) * share * 1e3,
            rm_floor_ms=rm_floor * 1e3,
            select_ms=sum(r.cost.seconds_select for r in results) * share * 1e3,
            floor_ms=(lm_floor + rm_floor) * 1e3,
            over_floor=args_s * share / (lm_floor + rm_floor),
            floor_over_base=(lm_floor + rm_floor) / (base_s * share),
        )
