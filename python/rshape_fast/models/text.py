"""Text checks and chat-template rendering shared by the language model and the reward
formats."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from rshape_fast.errors import InvalidInputError, ModelError

__all__ = [
    "PROMPT_PLACEHOLDER",
    "RESPONSE_PLACEHOLDER",
    "check_text",
    "encode_pieces",
    "has_chat_template",
    "has_special_text",
    "render_chat",
    "rendered_pieces",
]

Message = dict[str, str]
# Private-use characters: they never occur in real text and no chat template rewrites them.
PROMPT_PLACEHOLDER = "\ue000rshape-prompt\ue001"
RESPONSE_PLACEHOLDER = "\ue000rshape-response\ue001"
#: A stretch of rendered text and whether it is the caller's (a prompt or a response)
#: rather than the template's own.
Piece = tuple[str, bool]


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


def has_special_text(tokenizer: PreTrainedTokenizerBase, text: str) -> bool:
    """Whether ``text`` spells one of the tokenizer's special tokens (``<|im_end|>``, ...),
    which tokenising it inside a rendered template would turn into that control token."""
    return any(
        token.special and token.content in text for token in tokenizer.added_tokens_decoder.values()
    )


def rendered_pieces(
    rendered: str, placeholders: dict[str, str], *, expected: str, what: str
) -> list[Piece]:
    """Split ``rendered`` (a template rendered with private-use ``placeholders`` in place
    of the caller's texts) into the template's text and the caller's, the placeholders
    replaced by their values. ``expected`` is the template rendered with the values
    themselves: a template that rewrites them (trims, escapes) cannot be split and is
    refused."""
    pieces: list[Piece] = [(rendered, False)]
    for placeholder, value in placeholders.items():
        split: list[Piece] = []
        for text, is_caller in pieces:
            if is_caller:
                split.append((text, True))
                continue
            parts = text.split(placeholder)
            for i, part in enumerate(parts):
                if i:
                    split.append((value, True))
                split.append((part, False))
        pieces = split
    if "".join(text for text, _ in pieces) != expected:
        raise ModelError(
            f"the {what} rewrites the prompt or response it renders, so special-token "
            "strings in them cannot be kept as text; pass special_tokens_in_prompts=True "
            "to let them act as control tokens, or remove them"
        )
    return [(text, is_caller) for text, is_caller in pieces if text]


def encode_pieces(tokenizer: PreTrainedTokenizerBase, pieces: list[Piece]) -> list[int]:
    """Token ids of rendered text, the caller's pieces with special-token strings encoded as
    the text they are (tokenizers' ``split_special_tokens``), the template's as usual."""
    ids: list[int] = []
    for text, is_caller in pieces:
        encoded = tokenizer(text, add_special_tokens=False, split_special_tokens=is_caller)
        ids.extend(int(i) for i in encoded["input_ids"])
    return ids
