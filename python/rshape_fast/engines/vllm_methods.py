"""`base` and `args` on a vLLM language model: one vLLM request per prompt.

`base` is vLLM's own decoding (greedy, or drawn with the seed of `(seed, prompt key)`).
`args` sends each prompt with the `rshape_*` extra arguments that make
`VllmArgsLogitsProcessor` choose every token (vllm_processor.py); greedy ARGS and
sampled ARGS draw what the transformers engine draws wherever the two engines' logits
agree. The reward model is loaded again in vLLM's worker by its name or folder, so it must
have one; a reward given as an object or a function cannot cross into the worker.
The stop rule is applied to the returned tokens (`accept_tokens`), as for the samplers;
vLLM stops at the LM's EOS ids and `max_new_tokens` only, so a stop string costs the tokens
drawn after it (the processor's reward-model work on them included).

The processor's reward-model calls and tokens reach the results' costs because the engine
runs in this process (`load_vllm_lm` sets `VLLM_ENABLE_V1_MULTIPROCESSING=0`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

from rshape_fast.decoding.ensemble import Reward, RewardEnsemble
from rshape_fast.decoding.lm_state import encode_prompts
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.phase_timer import PhaseTimer
from rshape_fast.decoding.results import Cost, RowOutput
from rshape_fast.decoding.rows import StopRule, strip_eos
from rshape_fast.engines.vllm_generator import accept_tokens, prompt_seed, sampling_params
from rshape_fast.engines.vllm_model import VllmLanguageModel
from rshape_fast.engines.vllm_processor import PREFIX, VllmArgsLogitsProcessor, xargs_for
from rshape_fast.errors import EngineError
from rshape_fast.models import RewardModel

__all__ = ["reward_names", "run_vllm_token_level"]

_TAGS = itertools.count()


def reward_names(rm: Reward) -> str | list[str]:
    """The name or folder of each reward model, as vLLM's worker loads them again."""
    members = rm.members if isinstance(rm, RewardEnsemble) else [rm]
    names = []
    for member in members:
        if not isinstance(member, RewardModel) or member.name == "custom":
            raise EngineError(
                f"rm: ARGS on vLLM loads the reward model in vLLM's worker by its name or "
                f"folder; {member!r} has neither (name a built-in model or a folder)"
            )
        names.append(os.fspath(member.name))
    return names if isinstance(rm, RewardEnsemble) else names[0]


def run_vllm_token_level(
    lm: VllmLanguageModel,
    rm: Reward | None,
    prompts: list[str],
    keys: list[int],
    options: DecodingOptions,
    progress: Callable[[int], None],
) -> list[RowOutput]:
    """`base` or `args` for a batch of prompts in one vLLM call."""
    from vllm.inputs import TokensPrompt

    timer = PhaseTimer.for_device(lm.device)
    prompt_ids = encode_prompts(lm, prompts, options)
    guided = options.method == "args"
    tags = [f"{os.getpid()}-{next(_TAGS)}" for _ in prompts]
    params = []
    for prompt, key, tag in zip(prompts, keys, tags, strict=True):
        extra = None
        if guided:
            assert rm is not None  # the method record requires it
            extra = {**xargs_for(prompt, key, reward_names(rm), options), f"{PREFIX}tag": tag}
        params.append(
            sampling_params(
                lm,
                options,
                max_tokens=options.max_new_tokens,
                # ARGS draws with the row seeds of (seed, key, step) inside the processor.
                seed=options.seed if guided else prompt_seed(options.seed, (key,)),
                greedy=options.greedy,
                extra_args=extra,
            )
        )
    with timer.phase("lm"):
        outputs = lm.llm.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids], params, use_tqdm=False
        )
    stop = StopRule(lm, options)
    results = []
    for ids, out, tag in zip(prompt_ids, outputs, tags, strict=True):
        tokens: list[int] = []
        reason, text = accept_tokens(stop, [], tokens, out.outputs[0].token_ids)
        if reason is None:
            # vLLM stops at the LM's EOS ids and at max_new_tokens, as the rule does: only
            # a context cut short (max_model_len) gets here.
            raise EngineError(
                f"vLLM ended a response after {len(tokens)} tokens "
                f"({out.outputs[0].finish_reason}) before max_new_tokens="
                f"{options.max_new_tokens}; raise max_model_len"
            )
        response = strip_eos(tokens, reason)
        cost = Cost(
            lm_calls=len(tokens),
            lm_tokens=len(ids) - int(out.num_cached_tokens or 0) + len(tokens),
            generated_tokens=len(tokens),
        )
        if guided:
            cost.rm_calls, cost.rm_tokens = VllmArgsLogitsProcessor.costs.pop(tag, (0, 0))
        progress(len(tokens))
        results.append(
            RowOutput(
                token_ids=response,
                text=text if text is not None else lm.decode(response),
                stop_reason=reason,
                cost=cost,
            )
        )
    timer.charge([r.cost for r in results])
    return results
