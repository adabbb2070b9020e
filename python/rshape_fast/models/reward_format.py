"""How a reward model reads a (prompt, response) pair: rendering, tokenisation, and the
token ids before and after the response.

Three formats (docs/architecture.md, "Reward models"):

- a plain *template*: ``template`` with ``{prompt}`` and ``{response}`` substituted,
  tokenised with the tokenizer's usual special tokens (e.g. BOS, or [CLS] ... [SEP]);
- a *judge* (``chat_template=True``): the filled template wrapped as a user chat turn plus
  the generation prompt, as a chat model is asked a question;
- a *conversation* (``conversation=True``): ``[user: prompt, assistant: response]``
  rendered by the reward model's own chat template, as the reward models of the alignment
  literature (Skywork-Reward, ArmoRM, the RewardBench models) read it.

The cached candidate scorer feeds ``head + response_ids + tail`` (see
:meth:`RewardFormat.template_ids`); :meth:`RewardFormat.split_refusal` says when a format
makes that differ from scoring the rendered text.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from rshape_fast.errors import InvalidInputError, ModelError
from rshape_fast.models.text import (
    PROMPT_PLACEHOLDER,
    RESPONSE_PLACEHOLDER,
    Message,
    Piece,
    check_text,
    encode_pieces,
    has_chat_template,
    has_special_text,
    render_chat,
    rendered_pieces,
)

__all__ = ["DEFAULT_REWARD_TEMPLATE", "REWARD_SETTINGS_FILE", "RewardFormat"]

DEFAULT_REWARD_TEMPLATE = "{prompt}\n{response}"
# Written next to a reward model's weights: the format it is meant to be used with
# ("template", "chat_template", "conversation"), so RewardModel.from_pretrained(folder)
# scores what the builder intended.
REWARD_SETTINGS_FILE = "rshape_reward.json"
# A second response, with whitespace at both ends: a format that trims or strips the
# response, or whose text after the response depends on it, renders it differently from
# head + response + tail.
_PROBE_RESPONSE = "\n \ue000rshape-probe\ue001 \n"
# Two prompts: the text after the response must not depend on the prompt either, so that
# every row's candidate blocks have one length.
_PROBE_PROMPTS = ("Hello", "A longer question, with {braces} and punctuation?")
# Responses as a language model starts and ends them (a word, punctuation): their tokens
# must not merge with the text around them, as "\n\n" + "Ok" does in a GPT-2 style
# tokenizer ("\n", "\n", "Ok" together, "\n\n" alone).
_PROBE_WORDS = ("Ok", "Hello, world.", "Yes!")


def _conversation(prompt: str, response: str) -> list[Message]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


class RewardFormat:
    """The text and token ids a reward model scores for a (prompt, response) pair.

    ``template`` (plain or judge formats) holds ``{response}`` exactly once and
    ``{prompt}`` any number of times, including none; it defaults to
    ``"{prompt}\\n{response}"`` and must be left out with ``conversation=True``. A
    tokenizer without a chat template is refused at construction for the judge and
    conversation formats.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        template: str | None = None,
        chat_template: bool = False,
        conversation: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.conversation = bool(conversation)
        self.chat_template = bool(chat_template)
        if self.conversation:
            if template is not None or self.chat_template:
                raise InvalidInputError(
                    "conversation=True renders the pair with the chat template itself; "
                    "template= and chat_template= belong to the judge format"
                )
            if not has_chat_template(tokenizer):
                raise ModelError(
                    "conversation=True needs the reward model's chat template, but its "
                    "tokenizer has none"
                )
            self.template: str | None = None
        else:
            template = DEFAULT_REWARD_TEMPLATE if template is None else template
            check_text(template, "template")
            if template.count("{response}") != 1:
                raise InvalidInputError("template must contain '{response}' exactly once")
            if self.chat_template and not has_chat_template(tokenizer):
                raise ModelError("this tokenizer has no chat template; use chat_template=False")
            self.template = template
        self.render("probe prompt", "probe response")  # a template that fails, fails now
        self._special_affixes: tuple[list[int], list[int]] | None = None
        self._split_refusal: str | None = None
        self._split_checked = False

    def __repr__(self) -> str:
        if self.conversation:
            return "RewardFormat(conversation=True)"
        return f"RewardFormat(template={self.template!r}, chat_template={self.chat_template})"

    @property
    def rendered_by_template(self) -> bool:
        """Whether a chat template renders the text (it then holds its special tokens)."""
        return self.conversation or self.chat_template

    # ---- text ----------------------------------------------------------------------

    def _fill(self, prompt: str, response: str) -> str:
        assert self.template is not None
        # Plain splitting, not str.format: prompts and templates may hold braces, and a
        # prompt containing "{response}" must not be substituted again.
        head, tail = self.template.split("{response}")
        return head.replace("{prompt}", prompt) + response + tail.replace("{prompt}", prompt)

    def render(self, prompt: str, response: str) -> str:
        """The exact text that is tokenised and scored for this prompt and response."""
        prompt = check_text(prompt, "prompt")
        response = check_text(response, "response")
        if self.conversation:
            return render_chat(
                self.tokenizer, _conversation(prompt, response), add_generation_prompt=False
            )
        text = self._fill(prompt, response)
        if not self.chat_template:
            return text
        return render_chat(
            self.tokenizer, [{"role": "user", "content": text}], add_generation_prompt=True
        )

    def encode_text(self, text: str) -> list[int]:
        """Token ids of a rendered text: as ``apply_chat_template(tokenize=True)`` would give
        for template-rendered text, with the tokenizer's usual special tokens otherwise."""
        add_special = not self.rendered_by_template
        return [int(i) for i in self.tokenizer(text, add_special_tokens=add_special)["input_ids"]]

    def encode(self, prompt: str, response: str, *, special_tokens: bool = False) -> list[int]:
        """Token ids of the rendered pair: what the reward model scores. Special-token
        strings in the prompt or the response are encoded as the text they spell unless
        ``special_tokens`` is true (see :meth:`_caller_pieces`)."""
        text = self.render(prompt, response)
        if special_tokens or not self._spells_special(prompt, response):
            return self.encode_text(text)
        prefix, suffix = self._affixes()
        return (
            prefix + encode_pieces(self.tokenizer, self._caller_pieces(prompt, response)) + suffix
        )

    def _spells_special(self, *texts: str) -> bool:
        return any(has_special_text(self.tokenizer, t) for t in texts)

    def _caller_pieces(self, prompt: str, response: str) -> list[Piece]:
        """The rendered pair as the template's text and the caller's (prompt, response):
        tokenised piece by piece, the caller's with special-token strings kept as text, so
        a prompt cannot write the assistant turn the reward model scores. Only texts that
        spell a special token take this path; the others tokenise the whole rendering."""
        return rendered_pieces(
            self.render(PROMPT_PLACEHOLDER, RESPONSE_PLACEHOLDER),
            {PROMPT_PLACEHOLDER: prompt, RESPONSE_PLACEHOLDER: response},
            expected=self.render(prompt, response),
            what=repr(self),
        )

    # ---- head and tail -------------------------------------------------------------

    def _split_text(self, prompt: str) -> tuple[str, str]:
        text = self.render(prompt, RESPONSE_PLACEHOLDER)
        if text.count(RESPONSE_PLACEHOLDER) != 1:
            raise ModelError("the reward format altered the response placeholder")
        head, tail = text.split(RESPONSE_PLACEHOLDER)
        return head, tail

    def _affixes(self) -> tuple[list[int], list[int]]:
        """Special tokens the tokenizer adds before and after plain text (e.g. BOS / EOS,
        [CLS] / [SEP]); none when a chat template renders the text."""
        if self.rendered_by_template:
            return [], []
        if self._special_affixes is None:
            bare = self.tokenizer("a", add_special_tokens=False)["input_ids"]
            full = self.tokenizer("a", add_special_tokens=True)["input_ids"]
            prefix: list[int] = []
            suffix: list[int] = []
            for start in range(len(full) - len(bare) + 1):
                if full[start : start + len(bare)] == bare:
                    prefix = [int(i) for i in full[:start]]
                    suffix = [int(i) for i in full[start + len(bare) :]]
                    break
            self._special_affixes = (prefix, suffix)
        return self._special_affixes

    def _bare_ids(self, text: str) -> list[int]:
        return [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def template_ids(
        self, prompt: str, *, special_tokens: bool = False
    ) -> tuple[list[int], list[int]]:
        """Token ids before the response (``head``, with the leading special tokens the full
        text gets) and after it (``tail``, with the trailing ones).

        ``head + response_ids + tail`` equals :meth:`encode` (with the same
        ``special_tokens``) whenever the response's tokens do not merge with the text
        around it (true for the built-in formats: the response follows a newline and
        precedes a special token) and :meth:`split_refusal` is None.
        """
        prefix, suffix = self._affixes()
        if not special_tokens and self._spells_special(prompt):
            pieces = self._caller_pieces(prompt, RESPONSE_PLACEHOLDER)
            at = pieces.index((RESPONSE_PLACEHOLDER, True))
            head = encode_pieces(self.tokenizer, pieces[:at])
            return prefix + head, encode_pieces(self.tokenizer, pieces[at + 1 :]) + suffix
        head_text, tail_text = self._split_text(prompt)
        return prefix + self._bare_ids(head_text), self._bare_ids(tail_text) + suffix

    def split_refusal(self) -> str | None:
        """None when every pair renders as ``head + response + tail`` with a head that
        depends on the prompt only and a tail that depends on neither, and tokenises as
        ``head ids + response ids + tail ids``; else why not, in one line. Checked once, on
        probe prompts and responses."""
        if not self._split_checked:
            self._split_refusal = self._find_split_refusal()
            self._split_checked = True
        return self._split_refusal

    def _find_split_refusal(self) -> str | None:
        what = "chat template" if self.rendered_by_template else "template"
        tails: set[str] = set()
        for prompt in _PROBE_PROMPTS:
            try:
                head, tail = self._split_text(prompt)
            except ModelError as exc:
                return f"{exc}, so it cannot be split into a head and a tail"
            if self.render(prompt, _PROBE_RESPONSE) != head + _PROBE_RESPONSE + tail:
                return (
                    f"the {what} rewrites the response (e.g. trims its whitespace) or what "
                    "follows it, so the response's token ids cannot be scored between a fixed "
                    "head and tail"
                )
            head_ids, tail_ids = self.template_ids(prompt)
            for response in _PROBE_WORDS:
                if head_ids + self._bare_ids(response) + tail_ids != self.encode(prompt, response):
                    return (
                        f"the {what}'s text around the response merges with the response's "
                        "tokens when tokenised, so head + response ids + tail is not what the "
                        "reward model scores"
                    )
            tails.add(tail)
        if len(tails) != 1:
            return (
                f"the {what}'s text after the response depends on the prompt, so candidate "
                "blocks differ in length between rows"
            )
        return None
