"""Random draws that depend on the prompt, never on where it sits in a batch or a list.

Every draw is keyed by (run seed, prompt key, step, ...). A prompt key is a stable 63-bit
integer hashed from the prompt's *key string*: by default the prompt text plus its occurrence
number among equal prompts of the call, or an explicit key (a prompt file's id, `keys=`).
So order, subsets, batch size, resumption and sharding never change a prompt's result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from rshape_fast import _core


def default_keys(prompts: Sequence[str]) -> list[str]:
    """The key string of each prompt: its text, and for its n-th repeat (n >= 1) text NUL n."""
    seen: dict[str, int] = {}
    keys = []
    for prompt in prompts:
        count = seen.get(prompt, 0)
        seen[prompt] = count + 1
        keys.append(prompt if count == 0 else f"{prompt}\u0000{count}")
    return keys


def prompt_key(key: str) -> int:
    """The 63-bit integer of a key string (BLAKE2b: the same in every process and version)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def row_seeds(seed: int, keys: Sequence[Sequence[int]]) -> np.ndarray:
    """One uint64 seed per row from `(seed, *key)`; keys are e.g. `(prompt key, step)`."""
    return np.array(
        [np.random.SeedSequence([seed, *key]).generate_state(1, np.uint64)[0] for key in keys],
        dtype=np.uint64,
    )


def row_uniforms(seeds: np.ndarray) -> np.ndarray:
    """One uniform draw in [0, 1) per seed."""
    return np.array([np.random.default_rng(int(s)).random() for s in seeds], dtype=np.float64)


@torch.inference_mode()
def sample_tokens(
    logits: torch.Tensor,
    uniforms: np.ndarray | None,
    *,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
) -> torch.Tensor:
    """Next token per row: argmax when `uniforms` is None, else inverse-CDF sampling.

    Sampling is from softmax(logits / temperature) restricted to the top-k tokens (all
    tokens tied with the k-th stay) and then to the smallest set of the most likely tokens
    whose probability reaches top-p (always at least one); the draw walks that set in
    vocabulary order. On CPU this is one Rust call (`_core.sample_tokens`, which sorts
    only the nucleus); on other devices the same rule runs in torch
    (`sample_tokens_torch`), so the logits never leave the device.
    """
    if uniforms is None:
        return logits.argmax(dim=-1)
    if logits.device.type != "cpu":
        return sample_tokens_torch(
            logits, uniforms, temperature=temperature, top_k=top_k, top_p=top_p
        )
    chosen = _core.sample_tokens(
        np.ascontiguousarray(logits.float().numpy()),
        np.ascontiguousarray(uniforms, dtype=np.float64),
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
    )
    return torch.from_numpy(chosen)


@torch.inference_mode()
def sample_tokens_torch(
    logits: torch.Tensor,
    uniforms: np.ndarray,
    *,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
) -> torch.Tensor:
    """`sample_tokens`'s rule in torch, for logits on an accelerator (a full sort per row)."""
    scaled = logits.float() / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if top_p is not None and top_p < 1.0:
        # A stable sort puts equal probabilities in vocabulary order, as the Rust kernel does.
        sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass strictly above each token
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    cdf = probs.double().cumsum(dim=-1)
    u = torch.as_tensor(uniforms, dtype=torch.float64, device=cdf.device).unsqueeze(-1)
    picked = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)
    # u·total can round onto the last edge; stay on a token with mass.
    return picked.clamp(max=cdf.shape[-1] - 1)
