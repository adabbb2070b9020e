"""Controlled decoding (CD / SRS-CD): top-k tokens scored by `log p_T(v) + λ·V(prefix ⊕ v)`.

`V` is a value head trained offline (`rshape cd-train`) on the LM's last-layer hidden
states. One step for the whole batch:

1. top-k of the current logits; base term `log softmax(logits / T)` of the k tokens;
2. ONE LM forward of `rows × k` single-token blocks: with a 4-D attention mask every
   candidate sees its row's cached prefix and itself only, all at the next position.
   This yields each candidate's hidden state (the input of `V`) *and* its next-token
   logits and KV entries;
3. the value head on the `rows × k` hidden states in one call;
4. one Rust `fuse_and_select(scheme="raw")` call (the head already learnt shaped
   targets, so its values are fused as they are);
5. the chosen candidate's KV column is kept and the other k − 1 dropped, so the chosen
   token never needs a forward of its own: one LM forward per step, as in base decoding.

When sampling (`greedy=False`) the draw is from `softmax(score)`: the base term already
carries the temperature, so it is not applied twice.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from rshape_fast.decoding.lm_state import LMState
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.results import Cost, PhaseTimer
from rshape_fast.decoding.sampling import row_seeds
from rshape_fast.decoding.token_level import RowOutput, stop_check, top_candidates
from rshape_fast.errors import NonFiniteError, ParameterError
from rshape_fast.models import LanguageModel, RewardModel, TextRewardModel
from rshape_fast.shaping import fuse_and_select


@torch.inference_mode()
def run_candidates(state: LMState, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run k candidate tokens per row as k one-token blocks on the row's KV cache.

    Returns next-token logits `[rows, k, V]` and last-layer hidden states `[rows, k, H]`
    of `prefix ⊕ candidate`. The k blocks are left in the cache (after the prefix) until
    `keep_candidate` or `drop_candidates`; `state.mask` still describes the prefix only.
    """
    rows, k = candidates.shape
    dev = state.device
    past = int(state.mask.shape[1])
    real = state.mask.bool()
    allowed = torch.zeros((rows, k, past + k), dtype=torch.bool, device=dev)
    allowed[:, :, :past] = real.unsqueeze(1)
    allowed[:, :, past:] = torch.eye(k, dtype=torch.bool, device=dev).unsqueeze(0)
    dtype = next(state.lm.model.parameters()).dtype
    bias = torch.zeros(allowed.shape, dtype=dtype, device=dev)
    bias.masked_fill_(~allowed, torch.finfo(dtype).min)
    # Every candidate takes the position the next token would have.
    positions = state.mask.sum(-1, keepdim=True).expand(rows, k)
    out = state.lm.model(
        input_ids=candidates.to(dev),
        attention_mask=bias.unsqueeze(1),
        position_ids=positions,
        cache=state.cache,
        use_cache=True,
        logits_to_keep=k,
        output_hidden_states=True,
    )
    state.calls += 1
    for row in range(rows):
        state.tokens[row] += k
    return out.logits.float(), out.hidden_states[-1].float()


def keep_candidate(state: LMState, chosen: torch.Tensor) -> None:
    """Keep the chosen block's KV column of each row as the next token; drop the others."""
    past = int(state.mask.shape[1])
    rows = torch.arange(state.rows, device=state.device)
    column = past + chosen.to(state.device)
    for layer in state.cache.layers:
        if (
            not isinstance(layer, DynamicLayer)
            or isinstance(layer, DynamicSlidingWindowLayer)
            or layer.keys is None
            or layer.values is None
        ):
            # Sliding-window, linear-attention or offloaded layers do not keep every
            # position as one column per token, so a column cannot simply be picked.
            raise TypeError(f"cd needs a plain dynamic KV cache, got {type(layer).__name__}")
        # [rows, heads, past + k, dim] -> [rows, heads, past + 1, dim]
        keys, values = layer.keys, layer.values
        layer.keys = torch.cat([keys[:, :, :past], keys[rows, :, column].unsqueeze(2)], 2)
        layer.values = torch.cat([values[:, :, :past], values[rows, :, column].unsqueeze(2)], 2)
    state.mask = torch.cat([state.mask, state.mask.new_ones((state.rows, 1))], dim=1)


def drop_candidates(state: LMState, k: int) -> None:
    """Remove the k candidate blocks from the cache (the prefix is unchanged)."""
    state.cache.crop(-k)


def _load_head(options: DecodingOptions, lm: LanguageModel) -> torch.nn.Module:
    from rshape_fast.cd.value_head import load_value_head

    if options.value_head is None:
        raise ParameterError(
            "value_head: method 'cd' needs a value head folder (train one with "
            "`rshape cd-data` then `rshape cd-train`, pass value_head=PATH)"
        )
    head = load_value_head(options.value_head, device=lm.device)
    hidden = int(lm.model.config.hidden_size)
    if head.hidden_size != hidden:
        raise ParameterError(
            f"value_head: {options.value_head} was trained on hidden size {head.hidden_size} "
            f"(LM {head.config.get('lm')!r}), but {lm.name!r} has {hidden}"
        )
    return head


def run_controlled(
    lm: LanguageModel,
    rm: RewardModel | TextRewardModel | None,
    prompts: list[str],
    indices: list[int],
    options: DecodingOptions,
) -> list[RowOutput]:
    """`cd`: decode one batch of prompts; one `RowOutput` per prompt, in order.

    `rm` is not used for steering (the value head is); `generate` scores the final
    responses with it.
    """
    del rm
    opts = options
    if opts.k > lm.vocab_size:
        raise ParameterError(f"k: {opts.k} is larger than the vocabulary ({lm.vocab_size})")
    head = _load_head(opts, lm)
    prompt_ids = [lm.encode(p, chat_template=opts.chat_template) for p in prompts]
    timer = PhaseTimer()
    with timer.phase("lm"):
        state = LMState(lm, prompt_ids)
        (logits,) = state.prefill()
    live = list(range(len(prompts)))
    responses: list[list[int]] = [[] for _ in prompts]
    costs = [Cost() for _ in prompts]
    value_calls = 0
    value_tokens = [0] * len(prompts)
    outputs: dict[int, RowOutput] = {}
    for step in range(opts.max_new_tokens):
        with timer.phase("select"):
            top_logits, ids = top_candidates(logits, opts.k)
            # log p_T of the candidates: tempered logits minus the row's log-normaliser.
            norm = torch.logsumexp(logits.float() / opts.temperature, dim=-1, keepdim=True)
            base = top_logits / np.float32(opts.temperature) - norm.cpu().numpy()
        with timer.phase("lm"):
            cand_logits, cand_hidden = run_candidates(state, ids)
        with timer.phase("rm"):
            with torch.inference_mode():
                values = head(cand_hidden).float().cpu().numpy()
            value_calls += 1
            if not np.isfinite(values).all():
                raise NonFiniteError("value head returned NaN or inf for a candidate")
        with timer.phase("select"):
            seeds = (
                None
                if opts.greedy
                else row_seeds(opts.seed, [(indices[pos], step) for pos in live])
            )
            chosen, _ = fuse_and_select(
                base,
                values,
                weight=opts.weight,
                scheme="raw",
                probs_from_base=True,
                greedy=opts.greedy,
                temperature=1.0,
                seed=seeds,
            )
            chosen_t = torch.from_numpy(np.asarray(chosen, dtype=np.int64))
            tokens = ids.cpu().gather(1, chosen_t.view(-1, 1)).view(-1)
        with timer.phase("lm"):
            keep_candidate(state, chosen_t)
            logits = cand_logits[torch.arange(len(live)), chosen_t.to(cand_logits.device)]
        keep: list[int] = []
        for row, (pos, token) in enumerate(zip(live, tokens.tolist(), strict=True)):
            responses[pos].append(token)
            value_tokens[pos] += opts.k
            reason, text = stop_check(
                lm, responses[pos], token, opts.stop, opts.max_new_tokens - step - 1
            )
            if reason is None:
                keep.append(row)
                continue
            ids_out = responses[pos][:-1] if reason == "eos" else responses[pos]
            costs[pos].lm_calls = state.calls
            costs[pos].lm_tokens = state.tokens[row]
            costs[pos].rm_calls = value_calls
            costs[pos].rm_tokens = value_tokens[pos]
            costs[pos].generated_tokens = len(responses[pos])
            outputs[pos] = RowOutput(
                index=indices[pos],
                token_ids=ids_out,
                text=text if text is not None else lm.decode(ids_out),
                stop_reason=reason,
                cost=costs[pos],
            )
        if not keep:
            break
        if len(keep) < len(live):
            state.select(keep)
            live = [live[row] for row in keep]
            logits = logits[keep]
    timer.charge(costs)
    return [outputs[pos] for pos in range(len(prompts))]
