"""The one token-level decoding loop: `base`, `args` and `cd` (and `stream()`) run through it.

One step for the whole batch (docs/architecture.md, "A step"):
1. the LM's next-token logits of every live row (from its KV cache);
2. the method's chooser picks one token per row (`choosers.py`);
3. `Rows.push` appends them, applies the stop rule and builds finished rows' outputs;
4. finished rows leave the LM cache and the chooser's state;
5. the LM runs the chosen tokens of the rows that go on (unless the chooser already did).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from rshape_fast.decoding.choosers import StepMetadata
from rshape_fast.decoding.ensemble import Reward
from rshape_fast.decoding.lm_state import LMState, encode_prompts
from rshape_fast.decoding.options import DecodingOptions
from rshape_fast.decoding.phase_timer import PhaseTimer
from rshape_fast.decoding.registry import method_spec, require_reward_model
from rshape_fast.decoding.results import RowOutput
from rshape_fast.decoding.rows import Rows, StopRule
from rshape_fast.decoding.token_draws import row_seeds
from rshape_fast.errors import ParameterError
from rshape_fast.models import LanguageModel


class TokenLoop:
    """Decodes one batch of prompts with a token-level method ("base", "args", "cd").

    Iterate `steps()` to advance; each item lists the `(position, token id)` chosen in that
    step. After it is exhausted, `outputs` holds one `RowOutput` per prompt, in order.
    """

    def __init__(
        self,
        lm: LanguageModel,
        rm: Reward | None,
        prompts: Sequence[str],
        keys: Sequence[int],
        options: DecodingOptions,
    ) -> None:
        spec = method_spec(options.method)
        if spec.chooser is None:
            raise ParameterError(f"method: {options.method!r} is not a token-level method")
        if spec.needs_reward_model:
            require_reward_model(rm, options.method)
        self.build_chooser = spec.chooser
        if options.k > lm.vocab_size:
            raise ParameterError(f"k: {options.k} is larger than the vocabulary ({lm.vocab_size})")
        self.lm = lm
        self.rm = rm
        self.options = options
        self.prompts = list(prompts)
        self.keys = list(keys)
        self.prompt_ids = encode_prompts(lm, self.prompts, options)
        self.outputs: list[RowOutput] = []

    def steps(self) -> Iterator[list[tuple[int, int]]]:
        opts = self.options
        timer = PhaseTimer.for_device(self.lm.device)
        with timer.phase("lm"):
            state = LMState(self.lm, self.prompt_ids)
            (logits,) = state.prefill()
        with timer.phase("rm"):  # building ARGS' chooser runs the reward model's heads
            chooser = self.build_chooser(self.lm, self.rm, self.prompts, state, opts)
        rows = Rows(len(self.prompts), StopRule(self.lm, opts))
        for step in range(opts.max_new_tokens):
            row_keys = [(self.keys[pos], step) for pos in rows.live]
            meta = StepMetadata(
                step=step,
                row_keys=row_keys,
                seeds=None if opts.greedy else row_seeds(opts.seed, row_keys),
                timer=timer,
            )
            tokens, next_logits = chooser.choose(meta, logits)
            keep, emitted = rows.push(tokens.tolist(), state, chooser.counters)
            yield emitted
            if not keep:
                break
            if len(keep) < state.rows:
                state.select(keep)
                chooser.select(keep)
                tokens = tokens[keep]
                if next_logits is not None:
                    next_logits = next_logits[keep]
            if next_logits is not None:
                logits = next_logits
            else:
                with timer.phase("lm"):
                    (logits,) = state.advance(tokens)
        timer.charge(rows.costs)
        self.outputs = [rows.outputs[pos] for pos in range(len(self.prompts))]
        if chooser.path is not None:
            for output in self.outputs:
                output.extras["reward_path"] = chooser.path


def run_token_level(
    lm: LanguageModel,
    rm: Reward | None,
    prompts: list[str],
    keys: list[int],
    options: DecodingOptions,
    progress: Callable[[int], None],
) -> list[RowOutput]:
    """`base`, `args` and `cd`: one `TokenLoop` over the batch."""
    loop = TokenLoop(lm, rm, prompts, keys, options)
    for emitted in loop.steps():
        progress(len(emitted))
    return loop.outputs
