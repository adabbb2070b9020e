"""Rows of token sequences on one model's KV cache: padding, positions, masks, row surgery.

Every model forward in the package goes through this module (docs/architecture.md, "KV
batches"). Rows are left-padded so every row's next token sits in the same column, and
positions are passed explicitly, counting real tokens only, so padding never shifts a row's
rotary positions. A `KVBatch` keeps the cache, the mask of what is in it, and tokens that are
appended but not yet run (`pending`): a forward runs the pending tokens, optionally followed
by scratch *blocks* (candidate continuations) that each see the real prefix and themselves
only, through a 4-D attention mask. Blocks are then cropped, or one column of them kept.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from rshape_fast.errors import InvalidInputError, ModelError

__all__ = ["KVBatch", "block_mask", "cache_keyword", "left_pad", "positions"]


def left_pad(
    rows: Sequence[Sequence[int]], pad_id: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(input_ids, attention_mask)`, both long `[len(rows), longest]`, rows right-aligned."""
    if not rows:
        raise InvalidInputError("no rows to pad")
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if len(row):
            input_ids[i, width - len(row) :] = torch.as_tensor(list(row), dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return input_ids.to(device), mask.to(device)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of every column of a left-padded mask: real tokens counted from 0."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def cache_keyword(model: torch.nn.Module) -> str:
    """The forward keyword that takes the KV cache: `cache` (transformers >= 5.24) or
    `past_key_values` (earlier 5.x). Read from the signature, because a forward with
    `**kwargs` silently swallows the wrong name and then runs without a cache."""
    params = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    raise ModelError(f"{type(model).__name__}.forward takes no KV cache argument")


def _plain_layers(cache: DynamicCache) -> list[DynamicLayer]:
    """The cache's layers, each a plain dynamic layer holding every position's column."""
    layers = []
    for layer in cache.layers:
        if (
            not isinstance(layer, DynamicLayer)
            or isinstance(layer, DynamicSlidingWindowLayer)
            or layer.keys is None
            or layer.values is None
        ):
            # Sliding-window, linear-attention or offloaded layers do not keep every position
            # as one column per token, so a column cannot simply be picked.
            raise ModelError(
                f"keeping one candidate column needs a plain dynamic KV cache, got "
                f"{type(layer).__name__}"
            )
        layers.append(layer)
    return layers


def block_mask(full: torch.Tensor, pend: int, n_blocks: int, block: int) -> torch.Tensor:
    """Boolean `[rows, q, kv]`: who may attend to whom in one block forward.

    `full` is the mask of the cached columns followed by `pend` pending ones; the queries are
    the pending tokens and then `n_blocks` blocks of `block` tokens each.
    """
    rows, kv_prev = full.shape  # kv_prev = past + pend
    past = kv_prev - pend
    q = pend + n_blocks * block
    dev = full.device
    allowed = torch.zeros((rows, q, kv_prev + n_blocks * block), dtype=torch.bool, device=dev)
    real = full.bool()
    # Everyone sees the real cached prefix.
    allowed[:, :, :past] = real[:, :past].unsqueeze(1)
    # Pending tokens: causal among themselves (and only real ones).
    causal = torch.ones((pend, pend), dtype=torch.bool, device=dev).tril()
    allowed[:, :pend, past:kv_prev] = causal.unsqueeze(0) & real[:, past:].unsqueeze(1)
    # Blocks see all real pending tokens, and their own block causally.
    allowed[:, pend:, past:kv_prev] = real[:, past:].unsqueeze(1)
    own = torch.block_diag(*[torch.ones((block, block), dtype=torch.bool)] * n_blocks).tril()
    allowed[:, pend:, kv_prev:] = own.to(dev).unsqueeze(0)
    # A padding query row must see something, or softmax turns it into NaN.
    diag = torch.arange(pend, device=dev)
    allowed[:, diag, past + diag] = True
    return allowed


class KVBatch:
    """A batch of rows advancing through `model` with a KV cache.

    `append` queues tokens; `forward` runs what is queued (and optional scratch blocks) in
    one model call; `select` keeps or repeats rows; `crop` drops the last columns; and
    `keep_column` turns one column of the last blocks into each row's next token.
    `calls` counts forwards and `tokens[row]` the tokens each row ran, for cost accounting.
    """

    def __init__(self, model: PreTrainedModel, rows: Sequence[Sequence[int]], pad_id: int) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self._cache_kw = cache_keyword(model)
        ids, mask = left_pad(rows, pad_id, self.device)
        self.config = model.config
        self.cache = DynamicCache(config=self.config)
        self.mask = mask[:, :0]  # the columns held in the cache
        self.pending_ids = ids
        self.pending_mask = mask
        self.calls = 0
        self.tokens = [0] * len(rows)

    @property
    def rows(self) -> int:
        return int(self.pending_ids.shape[0])

    @property
    def full_mask(self) -> torch.Tensor:
        """The mask of the cached columns followed by the pending ones."""
        return torch.cat([self.mask, self.pending_mask], dim=1)

    def append(self, tokens: torch.Tensor) -> None:
        """Queue one token per row (`[rows]`), run by the next `forward`."""
        column = tokens.to(self.device).view(-1, 1)
        self.pending_ids = torch.cat([self.pending_ids, column], dim=1)
        self.pending_mask = torch.cat([self.pending_mask, torch.ones_like(column)], dim=1)

    def _commit_pending(self) -> torch.Tensor:
        full = self.full_mask
        ran = self.pending_mask.sum(-1).tolist()
        self.tokens = [t + int(r) for t, r in zip(self.tokens, ran, strict=True)]
        self.mask = full
        self.pending_ids = self.pending_ids[:, :0]
        self.pending_mask = self.pending_mask[:, :0]
        self.calls += 1
        return full

    @torch.inference_mode()
    def forward(self, **kwargs: Any) -> Any:
        """Run the pending tokens into the cache (2-D mask); return the model's output."""
        full = self.full_mask
        pend = int(self.pending_ids.shape[1])
        out = self.model(
            input_ids=self.pending_ids,
            attention_mask=full,
            position_ids=positions(full)[:, full.shape[1] - pend :],
            use_cache=True,
            **{self._cache_kw: self.cache},
            **kwargs,
        )
        self._commit_pending()
        return out

    @torch.inference_mode()
    def forward_blocks(
        self, blocks: torch.Tensor, block_len: int, *, same_position: bool = False, **kwargs: Any
    ) -> Any:
        """Run the pending tokens, then `blocks` (`[rows, n·block_len]`: n scratch blocks).

        Each block sees the real cached and pending tokens and itself causally, never another
        block. Block positions continue the row's positions (`same_position`: every one-token
        block takes the position the next token would have). The blocks stay in the cache
        after the pending tokens until `crop` or `keep_column`; `mask` covers the pending
        tokens only.
        """
        rows = self.rows
        pend = int(self.pending_ids.shape[1])
        past = int(self.mask.shape[1])
        full = self.full_mask  # [rows, past + pend]
        n_blocks = blocks.shape[1] // block_len
        seen = full.sum(-1, keepdim=True)  # real tokens before the blocks
        if same_position:
            block_pos = seen.expand(rows, blocks.shape[1])
        else:
            offsets = torch.arange(block_len, device=self.device).repeat(n_blocks)
            block_pos = seen + offsets.unsqueeze(0)
        pos = torch.cat([positions(full)[:, past:], block_pos], dim=1)
        allowed = block_mask(full, pend, n_blocks, block_len)
        dtype = next(self.model.parameters()).dtype
        bias = torch.zeros(allowed.shape, dtype=dtype, device=self.device)
        bias.masked_fill_(~allowed, torch.finfo(dtype).min)
        out = self.model(
            input_ids=torch.cat([self.pending_ids, blocks.to(self.device)], dim=1),
            attention_mask=bias.unsqueeze(1),
            position_ids=pos,
            use_cache=True,
            **{self._cache_kw: self.cache},
            **kwargs,
        )
        self._commit_pending()
        self.tokens = [t + int(blocks.shape[1]) for t in self.tokens]
        return out

    def crop(self, columns: int) -> None:
        """Drop the last `columns` cache columns (scratch blocks)."""
        self.cache.crop(-columns)

    def keep_column(self, columns: int, chosen: torch.Tensor) -> None:
        """Of the last `columns` cache columns, keep column `chosen[row]` of each row as that
        row's next real token and drop the rest."""
        layers = _plain_layers(self.cache)
        past = int(self.mask.shape[1])
        if int(self.cache.get_seq_length()) != past + columns:
            raise ModelError("keep_column: the cache does not end with the given columns")
        index = torch.arange(self.rows, device=self.device)
        column = past + chosen.to(self.device)
        for layer in layers:
            # [rows, heads, past + columns, dim] -> [rows, heads, past + 1, dim]
            keys, values = layer.keys, layer.values
            assert keys is not None and values is not None  # checked by _plain_layers
            layer.keys = torch.cat([keys[:, :, :past], keys[index, :, column].unsqueeze(2)], 2)
            layer.values = torch.cat(
                [values[:, :, :past], values[index, :, column].unsqueeze(2)], 2
            )
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)

    def select(self, rows: torch.Tensor | Sequence[int]) -> None:
        """Keep the given rows, in that order (an index may repeat to fork a row)."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        if int(self.cache.get_seq_length()) > 0:
            self.cache.batch_select_indices(index)
        else:
            # transformers skips an empty cache, which would keep the old row count; an
            # empty cache holds nothing worth keeping, so start a fresh one.
            self.cache = DynamicCache(config=self.config)
        self.mask = self.mask[index]
        self.pending_ids = self.pending_ids[index]
        self.pending_mask = self.pending_mask[index]
        self.tokens = [self.tokens[int(i)] for i in index.tolist()]
