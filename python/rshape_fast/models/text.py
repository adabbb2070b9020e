"""Text checks and chat-template rendering shared by the language model and the reward
formats."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from rshape_fast.errors import InvalidInputError, ModelError

__all__ = ["check_text", "has_chat_template", "render_chat"]

Message = dict[str, str]


def check_text(value: object, argument: str) -> str:
    """``value`` if it is a string, else an :class:`InvalidInputError` naming ``argument``."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{argument} must be a string, got {type(value).__name__}")
    return value


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message], *, add_generation_prompt: bool
) -> str:
    """``messages`` rendered as text by the tokenizer's chat template (special tokens as
    text, so tokenise the result with ``add_special_tokens=False``)."""
    if not has_chat_template(tokenizer):
        raise ModelError("this tokenizer has no chat template")
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    if not isinstance(text, str):
        raise ModelError(f"the chat template rendered {type(text).__name__}, not text")
    return text
