"""Reward formats: conversation-format reward models of three decoder families, the judge
and plain formats' head/tail split, and when the cached candidate scorer is refused.

Each family is a small randomly initialised sequence classifier whose tokenizer is the
offline SmolLM2 tokenizer carrying that family's real chat template (and its turn markers
as special tokens, as in the family's own tokenizer).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoTokenizer,
    Gemma2Config,
    Gemma2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    Qwen2Config,
    Qwen2ForSequenceClassification,
)

from rshape_fast.cache import DEFAULT_LM
from rshape_fast.errors import InvalidInputError, ModelError
from rshape_fast.models import RewardModel, TextRewardModel
from rshape_fast.models.builtins import ensure_builtin
from rshape_fast.models.reward_format import REWARD_SETTINGS_FILE

# The families' real chat templates, verbatim: Meta-Llama-3-8B-Instruct's (it trims each
# message), Qwen2.5-Instruct's (a default system turn; nothing stripped) and Gemma 2's (no
# system role, "assistant" is "model", messages trimmed).
TEMPLATES = Path(__file__).parent / "data" / "chat_templates"
LLAMA3_TEMPLATE = (TEMPLATES / "llama3.jinja").read_text(encoding="utf-8")
QWEN25_TEMPLATE = (TEMPLATES / "qwen2.5.jinja").read_text(encoding="utf-8")
GEMMA2_TEMPLATE = (TEMPLATES / "gemma2.jinja").read_text(encoding="utf-8")

SMALL = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    num_labels=1,
)
# family -> (config class, model class, chat template, special tokens of its turns,
# whether the template rewrites the response: Llama 3 and Gemma 2 trim every message)
FAMILIES = {
    "llama3": (
        LlamaConfig,
        LlamaForSequenceClassification,
        LLAMA3_TEMPLATE,
        {
            "bos_token": "<|begin_of_text|>",
            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        },
        True,
    ),
    "qwen2": (Qwen2Config, Qwen2ForSequenceClassification, QWEN25_TEMPLATE, {}, False),
    "gemma2": (
        Gemma2Config,
        Gemma2ForSequenceClassification,
        GEMMA2_TEMPLATE,
        {"bos_token": "<bos>", "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]},
        True,
    ),
}

PAIRS = [
    ("Tell me about your day.", "It was wonderful, thank you!"),
    ("", "Ok"),
    ("What is 2+2?", "4"),
    (
        "Describe a film you hated.",
        "A dull, lifeless film.\nThe plot dragged on and on, and I left before the end.",
    ),
    ("Say something with braces {prompt} {response}.", "Here: {response} {x}"),
    ("Trailing space?", "  padded on both sides \n"),
]
# Responses whose tokens cannot merge with the turn markers around them, so head +
# response ids + tail is exactly the tokenised rendering.
SPLIT_RESPONSES = ["It was wonderful, thank you!", "Ok", "Two\nlines", "I hated it."]


def _family_tokenizer(family: str):
    _, _, template, specials, _ = FAMILIES[family]
    tokenizer = AutoTokenizer.from_pretrained(ensure_builtin(DEFAULT_LM), local_files_only=True)
    if specials:
        tokenizer.add_special_tokens(specials)
    tokenizer.chat_template = template
    return tokenizer


def _family_model(family: str, tokenizer, seed: int = 0):
    config_class, model_class, _, _, _ = FAMILIES[family]
    extra = {"head_dim": 16} if family == "gemma2" else {}
    config = config_class(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **SMALL,
        **extra,
    )
    torch.manual_seed(seed)
    return model_class(config)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    return request.param


@pytest.fixture(scope="module")
def conversation_rm(family) -> RewardModel:
    tokenizer = _family_tokenizer(family)
    return RewardModel(
        _family_model(family, tokenizer), tokenizer, conversation=True, name=f"tiny-{family}"
    )


def _hand_rendered(tokenizer, prompt: str, response: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
        tokenize=False,
    )


def _hand_scored(reward: RewardModel, prompt: str, response: str) -> float:
    """The model's own forward on the hand-rendered conversation, one unpadded row: HF's
    pooling reads the last token, which is never the pad token in these templates."""
    text = _hand_rendered(reward.tokenizer, prompt, response)
    ids = reward.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[-1] != reward.pad_token_id
    with torch.inference_mode():
        return float(reward.model(input_ids=torch.tensor([ids])).logits[0, 0])


def test_conversation_score_is_the_hand_rendered_forward(conversation_rm):
    prompts, responses = zip(*PAIRS, strict=True)
    batched = conversation_rm.score(list(prompts), list(responses), batch_size=4)
    expected = [_hand_scored(conversation_rm, p, r) for p, r in PAIRS]
    np.testing.assert_allclose(batched, expected, atol=1e-5)
    # Different responses get different scores: the score is read after the response.
    assert len({round(float(s), 5) for s in batched}) == len(PAIRS)


def test_conversation_text_and_ids_are_the_chat_template(conversation_rm, family):
    tokenizer = conversation_rm.tokenizer
    for prompt, response in PAIRS:
        text = _hand_rendered(tokenizer, prompt, response)
        assert conversation_rm.format(prompt, response) == text
        assert (
            conversation_rm.encode_pair(prompt, response)
            == (tokenizer(text, add_special_tokens=False)["input_ids"])
        )
    rendered = conversation_rm.format("Hi", "Hello")
    if family == "gemma2":
        assert rendered == (
            "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
        )
    elif family == "llama3":
        assert rendered.endswith("<|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>")
    else:
        assert rendered.endswith("<|im_start|>assistant\nHello<|im_end|>\n")


def test_conversation_head_and_tail_reproduce_the_tokenisation(conversation_rm, family):
    tokenizer = conversation_rm.tokenizer
    for prompt in ["Tell me about your day.", ""]:
        head, tail = conversation_rm.template_ids(prompt)
        # The tail is what the template appends after the assistant's reply.
        end_of_turn = tokenizer.decode(tail)
        assert end_of_turn in {"<|eot_id|>", "<|im_end|>\n", "<end_of_turn>\n"}
        pieces = [
            (head + tokenizer(r, add_special_tokens=False)["input_ids"] + tail, r)
            for r in SPLIT_RESPONSES
        ]
        exact = [ids == conversation_rm.encode_pair(prompt, r) for ids, r in pieces]
        if family == "llama3":
            # Llama 3's head ends in "\n\n"; SmolLM2's GPT-2 style pre-tokenizer reads
            # "\n\nOk" as "\n", "\n", "Ok", so the pieces are not the tokenised text (the
            # family's own tokenizer keeps "\n\n" whole). cache_refusal must not say None.
            assert not any(exact)
            assert conversation_rm.cache_refusal(tokenizer) is not None
            continue
        assert all(exact)
        pieced = [
            head + tokenizer(r, add_special_tokens=False)["input_ids"] + tail
            for r in SPLIT_RESPONSES
        ]
        np.testing.assert_allclose(
            conversation_rm.score_ids(pieced),
            [_hand_scored(conversation_rm, prompt, r) for r in SPLIT_RESPONSES],
            atol=1e-5,
        )


def test_cache_refusal_of_conversation_families(conversation_rm, family):
    rewrites = FAMILIES[family][4]
    tokenizer = conversation_rm.tokenizer
    reason = conversation_rm.cache_refusal(tokenizer)
    if rewrites:
        # "Hi \n" is scored as "Hi": the response's own ids would not be what is scored.
        assert conversation_rm.format("p", "Hi \n") == conversation_rm.format("p", "Hi")
        assert reason is not None
        assert "rewrites the response" in reason and f"tiny-{family}" in reason
    else:
        assert reason is None


def test_cache_refusal_names_structure_and_vocabulary(conversation_rm, tiny_lm, family):
    if family == "qwen2":
        # The Qwen family adds no tokens: the same vocabulary as the LM's tokenizer.
        assert conversation_rm.cache_refusal(tiny_lm.tokenizer) is None
    else:
        assert "different vocabulary" in conversation_rm.cache_refusal(tiny_lm.tokenizer)


def test_a_tokenizer_without_a_chat_template_is_refused(smollm2_tokenizer, tiny_rm):
    tokenizer = AutoTokenizer.from_pretrained(ensure_builtin(DEFAULT_LM), local_files_only=True)
    tokenizer.chat_template = None
    with pytest.raises(ModelError, match="conversation=True needs the reward model's chat"):
        RewardModel(tiny_rm.model, tokenizer, conversation=True)
    with pytest.raises(ModelError, match="no chat template"):
        RewardModel(tiny_rm.model, tokenizer, chat_template=True)


def test_conversation_excludes_the_judge_template(tiny_rm, smollm2_tokenizer):
    for kwargs in ({"template": "{response}"}, {"chat_template": True}):
        with pytest.raises(InvalidInputError, match="conversation=True"):
            RewardModel(tiny_rm.model, smollm2_tokenizer, conversation=True, **kwargs)


def test_settings_file_records_the_conversation_format(tmp_path):
    tokenizer = _family_tokenizer("qwen2")
    reward = RewardModel(_family_model("qwen2", tokenizer), tokenizer, conversation=True)
    reward.model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / REWARD_SETTINGS_FILE).write_text(json.dumps({"conversation": True}))
    loaded = RewardModel.from_pretrained(tmp_path)
    assert loaded.conversation and loaded.template is None
    prompts, responses = ["Hi", "What is 2+2?"], ["Hello there.", "4"]
    np.testing.assert_allclose(
        loaded.score(prompts, responses), reward.score(prompts, responses), atol=1e-5
    )
    # An explicit template overrides the folder's conversation format ...
    judged = RewardModel.from_pretrained(tmp_path, template="{response}")
    assert not judged.conversation and judged.template == "{response}"
    # ... and conversation=True overrides a folder's template format.
    (tmp_path / REWARD_SETTINGS_FILE).write_text(
        json.dumps({"template": "Q {prompt} A {response}"})
    )
    assert RewardModel.from_pretrained(tmp_path).template == "Q {prompt} A {response}"
    assert RewardModel.from_pretrained(tmp_path, conversation=True).conversation


# A template whose text after the reply depends on the reply (a marker after replies of
# several words): refused.
RESPONSE_DEPENDENT_TAIL = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>\n' }}{% if ' ' in message['content'] %}"
    "{{ '(several words)' }}{% endif %}{% endfor %}"
)


def test_a_response_dependent_tail_is_refused(tiny_rm):
    tokenizer = AutoTokenizer.from_pretrained(ensure_builtin(DEFAULT_LM), local_files_only=True)
    tokenizer.chat_template = RESPONSE_DEPENDENT_TAIL
    reward = RewardModel(tiny_rm.model, tokenizer, conversation=True, name="long-tail")
    reason = reward.cache_refusal(tokenizer)
    assert reason is not None and "long-tail" in reason and "what follows it" in reason


@pytest.mark.parametrize(
    ("template", "chat_template", "refusal"),
    [
        ("{prompt}\n{response}", False, None),
        ("{response}", True, None),
        ("{response}\nQuestion: {prompt}", False, "depends on the prompt"),
    ],
)
def test_template_format_refusals(tiny_rm, smollm2_tokenizer, template, chat_template, refusal):
    reward = RewardModel(
        tiny_rm.model, smollm2_tokenizer, template=template, chat_template=chat_template
    )
    reason = reward.cache_refusal(smollm2_tokenizer)
    if refusal is None:
        assert reason is None
    else:
        assert reason is not None and refusal in reason


def test_encoder_reward_is_refused_the_cache(tiny_lm):
    """A reward model without a decoder body and score head cannot reuse a prefix cache."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tiny_lm.tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    bert = RewardModel(BertForSequenceClassification(config), tiny_lm.tokenizer, name="bert")
    assert "not a decoder with a score head" in bert.cache_refusal(tiny_lm.tokenizer)


ARGS_PROMPTS = ["Tell me about your day.", "Write one sentence about the sea.", "Hi!"]


@pytest.fixture(scope="module")
def words_lm():
    r"""A tiny random causal LM (SmolLM2 tokenizer) that only ever proposes space-prefixed
    lowercase words, so its token ids are always the tokenisation of its own text.

    A random LM otherwise repeats tokens ("\n" after "\n", "." after "."), and text such
    as "\n\n" or "......" tokenises into fewer, merged tokens: the text path would then
    score other ids than the cached path, for a reason that has nothing to do with either.
    """
    from transformers import LlamaForCausalLM

    from rshape_fast.models import LanguageModel

    tokenizer = AutoTokenizer.from_pretrained(ensure_builtin(DEFAULT_LM), local_files_only=True)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **{k: v for k, v in SMALL.items() if k != "num_labels"},
    )
    torch.manual_seed(5)
    model = LlamaForCausalLM(config)
    # "\u0120" (Ġ) marks a leading space in the byte-level vocabulary.
    words = [i for t, i in tokenizer.get_vocab().items() if re.fullmatch("\u0120[a-z]{3,}", t)]
    head = torch.nn.Linear(config.hidden_size, len(tokenizer), bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.fill_(-1e4)
        head.bias[words] = 0.0
    model.lm_head = head
    return LanguageModel.from_model(model, tokenizer, name="tiny-words", device="cpu")


@pytest.mark.parametrize("shaping", ["raw", "srs"])
def test_args_cached_path_equals_text_path(words_lm, shaping):
    """ARGS with a conversation reward model: scoring candidates from the reward model's KV
    cache (head + response ids + tail) picks the same tokens as scoring their text."""
    from rshape_fast.decoding import generate

    tokenizer = _family_tokenizer("qwen2")
    reward = RewardModel(
        _family_model("qwen2", tokenizer, seed=3), tokenizer, conversation=True, name="qwen2"
    )
    assert reward.cache_refusal(words_lm.tokenizer) is None
    as_text = TextRewardModel(
        lambda prompts, responses: reward.score(prompts, responses),
        name="qwen2-text",
        on="prompt+response",
    )
    knobs = dict(method="args", shaping=shaping, k=5, weight=5.0, max_new_tokens=12, batch_size=3)
    cached = generate(ARGS_PROMPTS, lm=words_lm, rm=reward, **knobs)
    text = generate(ARGS_PROMPTS, lm=words_lm, rm=as_text, **knobs)
    assert [r.extras["reward_path"] for r in cached] == ["cached"] * 3
    assert [r.extras["reward_path"] for r in text] == ["text"] * 3
    assert [r.token_ids for r in cached] == [r.token_ids for r in text]
    assert all(len(r.token_ids) == 12 for r in cached)
    # The reward steers: without it (base greedy) the rows come out differently.
    base = generate(ARGS_PROMPTS, lm=words_lm, method="base", max_new_tokens=12, batch_size=3)
    assert [r.token_ids for r in base] != [r.token_ids for r in cached]


# --------------------------------------------------------------------------------------
# The built-in conversation-format judge (real SmolLM2 weights)
# --------------------------------------------------------------------------------------

# (prompt, positive reply, negative reply): hand-written, one topic per prompt.
JUDGED_REPLIES = [
    (
        "How was your weekend?",
        "It was wonderful! I went hiking with friends and the weather was perfect.",
        "Terrible. It rained the whole time and I was sick in bed.",
    ),
    (
        "What do you think of the new cafe downtown?",
        "I love it, the coffee is delicious and the staff are so friendly.",
        "It's awful: cold coffee, rude staff and dirty tables.",
    ),
    (
        "Tell me about the movie you saw.",
        "A charming, funny and heartfelt film. I'd watch it again.",
        "A dull, lifeless and tedious film. I walked out halfway.",
    ),
    (
        "How is your new job going?",
        "Really well, my team is supportive and I'm learning a lot.",
        "Badly. My boss yells at me and I dread every morning.",
    ),
    (
        "Describe your holiday.",
        "Relaxing and beautiful, the beach was stunning.",
        "A disaster: lost luggage, a filthy hotel and food poisoning.",
    ),
]


@pytest.fixture(scope="module")
def chat_judge() -> RewardModel:
    from rshape_fast.cache import SMOLLM2_CHAT_JUDGE
    from rshape_fast.models import load_reward_model

    return load_reward_model(SMOLLM2_CHAT_JUDGE)


@pytest.mark.model
def test_chat_judge_is_the_lm_log_odds_after_the_judging_turn(chat_judge, lm):
    from rshape_fast.models.builtins import CHAT_JUDGE_QUESTION

    assert chat_judge.conversation and chat_judge.cache_refusal(lm.tokenizer) is None
    prompt, good, bad = JUDGED_REPLIES[0]
    head, tail = chat_judge.template_ids(prompt)
    assert lm.decode(head).endswith(f"{prompt}\nassistant\n")
    assert lm.decode(tail) == f"\nuser\n{CHAT_JUDGE_QUESTION}\nassistant\n"
    positive = lm.tokenizer.convert_tokens_to_ids("Positive")
    negative = lm.tokenizer.convert_tokens_to_ids("Negative")
    scores = chat_judge.score([prompt, prompt], [good, bad])
    for response, score in zip([good, bad], scores, strict=True):
        ids = chat_judge.encode_pair(prompt, response)
        assert ids == head + lm.tokenizer(response, add_special_tokens=False)["input_ids"] + tail
        with torch.inference_mode():
            logits = lm.model(torch.tensor([ids])).logits[0, -1].double()
        log_probs = torch.log_softmax(logits, dim=-1)
        assert score == pytest.approx(float(log_probs[positive] - log_probs[negative]), abs=1e-4)


@pytest.mark.model
def test_chat_judge_ranks_positive_replies_above_negative_ones(chat_judge):
    prompts = [p for p, _, _ in JUDGED_REPLIES]
    good = chat_judge.score(prompts, [g for _, g, _ in JUDGED_REPLIES])
    bad = chat_judge.score(prompts, [b for _, _, b in JUDGED_REPLIES])
    assert (good > bad).all()  # every prompt's positive reply beats its negative one
    # Across prompts too, for all but a few of the 25 pairs (the judge is biased positive).
    assert np.mean([g > b for g in good for b in bad]) >= 0.8
