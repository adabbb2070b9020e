"""The decoding methods: one `MethodSpec` record each, importable without torch.

A record says everything the rest of the package asks about a method: whether it chooses
one token per step (a `chooser`, run by the one token loop) or draws whole responses (a
`runner`), whether it consults the reward model or needs a value head, whether the shaping
scheme changes its result, and how many rows one prompt decodes at once. `generate` looks
the record up (`method_spec`) and calls `spec.run`; the token loop calls `spec.chooser`.

The functions a record points at import their module when called, so the command line can
list and check methods (and print its help) without loading torch, while a reader can still
follow every call. Adding a method is one record here plus its chooser or runner
(docs/architecture.md, "Adding a method").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rshape_fast.errors import ParameterError

if TYPE_CHECKING:
    from rshape_fast.decoding.choosers import Chooser
    from rshape_fast.decoding.ensemble import Reward
    from rshape_fast.decoding.lm_state import LMState
    from rshape_fast.decoding.options import DecodingOptions
    from rshape_fast.decoding.results import RowOutput
    from rshape_fast.models import LanguageModel

#: A batch runner: `run(lm, rm, prompts, keys, options, progress) -> list[RowOutput]`, one
#: output per prompt in order; `keys` are the prompts' integer keys (every random draw
#: derives from them) and `progress(n)` is called with the tokens generated in each step.
Runner = Callable[..., "list[RowOutput]"]
#: Builds a token-level method's chooser: `(lm, rm, prompts, lm_state, options) -> Chooser`.
ChooserFactory = Callable[..., "Chooser"]


# ---- token-level: a chooser in the one token loop --------------------------------------


def _run_token_level(*batch: Any) -> list[RowOutput]:
    from rshape_fast.decoding.token_loop import run_token_level

    return run_token_level(*batch)


def _run_vllm_token_level(*batch: Any) -> list[RowOutput]:
    from rshape_fast.engines.vllm_methods import run_vllm_token_level

    return run_vllm_token_level(*batch)


def _base_chooser(
    lm: LanguageModel, rm: Reward | None, prompts: list[str], state: LMState, options: Any
) -> Chooser:
    from rshape_fast.decoding.choosers import BaseChooser

    return BaseChooser(options)


def _args_chooser(
    lm: LanguageModel, rm: Reward | None, prompts: list[str], state: LMState, options: Any
) -> Chooser:
    from rshape_fast.decoding.choosers import ArgsChooser

    return ArgsChooser(lm, require_reward_model(rm, "args"), prompts, options)


def _genarm_chooser(
    lm: LanguageModel, rm: Reward | None, prompts: list[str], state: LMState, options: Any
) -> Chooser:
    from rshape_fast.decoding.choosers import GenArmChooser

    return GenArmChooser(lm, prompts, options)


def _value_head_chooser(
    lm: LanguageModel, rm: Reward | None, prompts: list[str], state: LMState, options: Any
) -> Chooser:
    from rshape_fast.decoding.choosers import ValueHeadChooser

    return ValueHeadChooser(lm, state, options)


# ---- sequence-level: a runner that draws through a ResponseGenerator -------------------


def _run_bon(*batch: Any) -> list[RowOutput]:
    from rshape_fast.decoding.best_of_n import run_bon

    return run_bon(*batch)


def _run_soft_bon(*batch: Any) -> list[RowOutput]:
    from rshape_fast.decoding.best_of_n import run_soft_bon

    return run_soft_bon(*batch)


def _run_streaming_bon(*batch: Any) -> list[RowOutput]:
    from rshape_fast.decoding.best_of_n import run_streaming_bon

    return run_streaming_bon(*batch)


def _run_segment(*batch: Any) -> list[RowOutput]:
    from rshape_fast.decoding.segments import run_segment

    return run_segment(*batch)


def _run_segment_beam(*batch: Any) -> list[RowOutput]:
    from rshape_fast.decoding.segments import run_segment_beam

    return run_segment_beam(*batch)


def _one_row(options: DecodingOptions) -> int:
    return 1


def _n_rows(options: DecodingOptions) -> int:
    return options.n


def _segment_rows(options: DecodingOptions) -> int:
    return options.segment_samples


def _beam_rows(options: DecodingOptions) -> int:
    return options.segment_samples * options.beam_width


@dataclass(frozen=True)
class MethodSpec:
    """What a decoding method is.

    Attributes:
        name: the `method=` value.
        run: the batch runner `generate` calls (token-level methods share the token loop's).
        chooser: token-level methods only: builds the step's chooser (see `ChooserFactory`).
        needs_reward_model: whether decoding consults the steering reward (every method's
            results are scored by it when there is one).
        needs_value_head: whether `value_head=` must be given.
        needs_arm: whether `arm=` (an autoregressive reward model) must be given.
        shaped: whether the shaping scheme changes the result.
        rows: how many rows one prompt decodes at once (samples, segment candidates).
        vllm_run: the batch runner on a vLLM language model, None where the method needs
            the transformers engine (the sequence-level methods' `run` draws through the
            LM's own generator, so it is their `vllm_run` too).
    """

    name: str
    run: Runner
    chooser: ChooserFactory | None = None
    needs_reward_model: bool = True
    needs_value_head: bool = False
    needs_arm: bool = False
    shaped: bool = True
    rows: Callable[[DecodingOptions], int] = _one_row
    vllm_run: Runner | None = None

    @property
    def token_level(self) -> bool:
        """Whether it chooses one token per step in the token loop (`stream()` runs it)."""
        return self.chooser is not None

    def token_budget(self, options: DecodingOptions) -> int:
        """Tokens one prompt may generate at most, the progress bar's unit of work. Segment
        search may retry, so for it this is the budget without retries: the bar can then
        finish early, never run past the end."""
        return self.rows(options) * options.max_new_tokens

    def runner(self, engine: str) -> Runner:
        """The batch runner on a language model of `engine` ("transformers" or "vllm")."""
        if engine == "transformers":
            return self.run
        if self.vllm_run is None:
            raise ParameterError(
                f"method: {self.name!r} runs on the transformers engine only (it runs a second "
                f"model beside the LM at every step); load the LM without engine='vllm'"
            )
        return self.vllm_run


SPECS: tuple[MethodSpec, ...] = (
    MethodSpec(
        "base",
        _run_token_level,
        chooser=_base_chooser,
        needs_reward_model=False,
        shaped=False,
        vllm_run=_run_vllm_token_level,
    ),
    MethodSpec("args", _run_token_level, chooser=_args_chooser, vllm_run=_run_vllm_token_level),
    MethodSpec("bon", _run_bon, shaped=False, rows=_n_rows, vllm_run=_run_bon),
    MethodSpec("soft_bon", _run_soft_bon, rows=_n_rows, vllm_run=_run_soft_bon),
    MethodSpec(
        "streaming_bon", _run_streaming_bon, shaped=False, rows=_n_rows, vllm_run=_run_streaming_bon
    ),
    MethodSpec("segment", _run_segment, rows=_segment_rows, vllm_run=_run_segment),
    MethodSpec("segment_beam", _run_segment_beam, rows=_beam_rows, vllm_run=_run_segment_beam),
    # The ARM steers decoding; a reward model, if any, only scores the results.
    MethodSpec(
        "genarm",
        _run_token_level,
        chooser=_genarm_chooser,
        needs_reward_model=False,
        needs_arm=True,
    ),
    # The value head learnt shaped targets already; the scheme does not apply at decoding.
    MethodSpec(
        "cd",
        _run_token_level,
        chooser=_value_head_chooser,
        needs_reward_model=False,
        needs_value_head=True,
        shaped=False,
    ),
)
_BY_NAME = {spec.name: spec for spec in SPECS}

METHODS: tuple[str, ...] = tuple(_BY_NAME)
#: Methods that choose one token per step through the token loop (`stream()` supports these).
TOKEN_LEVEL: tuple[str, ...] = tuple(s.name for s in SPECS if s.token_level)
#: Methods that draw whole responses or segments.
SEQUENCE_LEVEL: tuple[str, ...] = tuple(s.name for s in SPECS if not s.token_level)
#: Methods whose result does not depend on the shaping scheme.
UNSHAPED: tuple[str, ...] = tuple(s.name for s in SPECS if not s.shaped)


def method_spec(method: str) -> MethodSpec:
    """The record of `method` (a `ParameterError` naming the methods if there is none)."""
    spec = _BY_NAME.get(method)
    if spec is None:
        raise ParameterError(f"method: unknown method {method!r}; one of {METHODS}")
    return spec


def require_reward_model(rm: Reward | None, method: str) -> Reward:
    """The steering reward, or a clear error when the method is run without one."""
    if rm is None:
        raise ParameterError(f"rm: method {method!r} needs a reward model")
    return rm
