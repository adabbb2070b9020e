"""The bundled prompt set and the prompt-file loader."""

from __future__ import annotations

import dataclasses
import itertools
import json
import pickle
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from rshape_fast.errors import InvalidInputError, ParameterError
from rshape_fast.prompts import (
    BUNDLED_KINDS,
    SPLITS,
    DuplicateIdError,
    EmptyPromptError,
    MissingKeyError,
    Prompt,
    PromptFileError,
    PromptFileNotFoundError,
    PromptFormatError,
    UnknownSplitError,
    load_prompts,
)

# --------------------------------------------------------------------------- bundled set


@pytest.fixture(scope="module")
def bundled() -> list[Prompt]:
    return load_prompts()


def _raw_bundled_records() -> list[dict[str, object]]:
    text = resources.files("rshape_fast.data").joinpath("prompts.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_bundled_has_at_least_200_prompts_of_every_kind(bundled: list[Prompt]) -> None:
    assert len(bundled) >= 200
    counts = Counter(p.kind for p in bundled)
    assert set(counts) == set(BUNDLED_KINDS)
    assert min(counts.values()) >= 30


def test_bundled_ids_and_texts_are_unique(bundled: list[Prompt]) -> None:
    assert len({p.id for p in bundled}) == len(bundled)
    normalised = Counter(" ".join(p.text.lower().split()) for p in bundled)
    assert [t for t, c in normalised.items() if c > 1] == []


def test_bundled_ids_follow_kind_and_number(bundled: list[Prompt]) -> None:
    for p in bundled:
        assert re.fullmatch(rf"{p.kind}-\d{{3}}", p.id), p.id


def _content_words(text: str) -> set[str]:
    # Story prompts share an instruction prefix ("Continue this story:"); compare the rest.
    body = re.sub(r"^[A-Za-z ]{0,30}:\s", "", text)
    return set(re.findall(r"[a-z']+", body.lower()))


def test_bundled_prompts_are_not_templated_near_duplicates(bundled: list[Prompt]) -> None:
    worst = max(
        (len(wa & wb) / len(wa | wb), a.id, b.id)
        for a, b in itertools.combinations(bundled, 2)
        if (wa := _content_words(a.text)) and (wb := _content_words(b.text))
    )
    assert worst[0] < 0.6, worst
    openings = Counter(" ".join(p.text.split()[:4]).lower() for p in bundled)
    assert max(openings.values()) <= 10, openings.most_common(3)


def test_bundled_prompts_are_short(bundled: list[Prompt]) -> None:
    for p in bundled:
        assert 10 <= len(p.text) <= 140, p
        sentences = [s for s in re.split(r"(?<=[.?!])\s+(?=[A-Z])", p.text) if s]
        assert len(sentences) <= 2, p


def test_bundled_split_is_fixed_in_the_file_and_stratified(bundled: list[Prompt]) -> None:
    records = _raw_bundled_records()
    assert all(r["split"] in SPLITS for r in records)
    for kind in BUNDLED_KINDS:
        of_kind = [p for p in bundled if p.kind == kind]
        test_share = sum(p.split == "test" for p in of_kind) / len(of_kind)
        assert 0.35 <= test_share <= 0.45, (kind, test_share)
    overall = sum(p.split == "test" for p in bundled) / len(bundled)
    assert 0.37 <= overall <= 0.43


def test_bundled_demo_set_is_small_varied_and_held_out(bundled: list[Prompt]) -> None:
    demo = [p for p in bundled if p.demo]
    assert 4 <= len(demo) <= 8
    assert all(p.split == "test" for p in demo)
    assert len({p.kind for p in demo}) >= 4
    assert load_prompts(demo_only=True) == demo


def test_filters_select_and_keep_file_order(bundled: list[Prompt]) -> None:
    train = load_prompts(split="train")
    test = load_prompts(split="test")
    assert {p.split for p in train} == {"train"} and {p.split for p in test} == {"test"}
    assert len(train) + len(test) == len(bundled)
    assert [p.id for p in bundled if p.split == "test"] == [p.id for p in test]

    reviews = load_prompts(kinds="review")
    assert reviews == [p for p in bundled if p.kind == "review"]
    two = load_prompts(split="test", kinds=["story", "complaint"])
    assert {p.kind for p in two} == {"story", "complaint"}
    assert all(p.split == "test" for p in two)

    assert load_prompts(limit=7) == bundled[:7]
    assert (
        load_prompts(split="train", kinds=("advice",), limit=3)
        == [p for p in bundled if p.split == "train" and p.kind == "advice"][:3]
    )
    with pytest.raises(ParameterError, match="no prompt matches"):
        load_prompts(split="train", demo_only=True)


def test_prompt_is_frozen(bundled: list[Prompt]) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        bundled[0].text = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"split": "dev"},
        {"split": "TRAIN"},
        {"kinds": "poetry"},
        {"kinds": ["review", "poetry"]},
        {"kinds": []},
        {"kinds": [""]},
        {"limit": 0},
        {"limit": -1},
        {"limit": 2.0},
        {"limit": True},
    ],
)
def test_bad_filter_arguments_raise_parameter_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ParameterError):
        load_prompts(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- user files


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_user_jsonl_with_defaults_and_extra_keys(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "mine.jsonl",
        '{"id": "a", "prompt": "  Tell me about otters.  "}\n'
        "\n"
        '{"id": 7, "prompt": "Describe a sunset.", "kind": "story", "split": "train", '
        '"demo": true, "source": "me"}\n',
    )
    assert load_prompts(path) == [
        Prompt(id="a", kind="custom", split="test", text="Tell me about otters."),
        Prompt(id="7", kind="story", split="train", text="Describe a sunset.", demo=True),
    ]
    assert load_prompts(str(path), split="train") == [load_prompts(path)[1]]


def test_user_jsonl_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "x", "prompt": "Hello there."}\n')
    assert load_prompts(path)[0].id == "x"


def test_user_text_file_ids_follow_line_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path, "mine.txt", "First prompt?\n\n   \n  Second prompt.  \nThird one\n")
    prompts = load_prompts(path)
    assert [(p.id, p.text) for p in prompts] == [
        ("line-0001", "First prompt?"),
        ("line-0004", "Second prompt."),
        ("line-0005", "Third one"),
    ]
    assert all(p.kind == "custom" and p.split == "test" and not p.demo for p in prompts)
    assert load_prompts(path, limit=2) == prompts[:2]


def test_text_file_lines_that_look_like_json_are_prompts(tmp_path: Path) -> None:
    path = _write(tmp_path, "prompts.txt", '{"id": "a", "prompt": "x"}\n')
    assert load_prompts(path)[0].text == '{"id": "a", "prompt": "x"}'


# --------------------------------------------------------------------------- file errors


@pytest.mark.parametrize(
    ("content", "error", "line", "fragment"),
    [
        ('{"id": "a", "prompt": "ok"}\n{"prompt": "no id"}\n', MissingKeyError, 2, "'id'"),
        ('{"id": "a"}\n', MissingKeyError, 1, "'prompt'"),
        (
            '{"id": "a", "prompt": "x"}\n\n{"id": "a", "prompt": "y"}\n',
            DuplicateIdError,
            3,
            "first used on line 1",
        ),
        ('{"id": "a", "prompt": "   "}\n', EmptyPromptError, 1, "empty"),
        ('{"id": "a", "prompt": ""}\n', EmptyPromptError, 1, "empty"),
        ('{"id": "a", "prompt": "x", "split": "dev"}\n', UnknownSplitError, 1, "'dev'"),
        ('{"id": "a", "prompt": "x", "split": null}\n', UnknownSplitError, 1, "None"),
        ('{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": \n', PromptFormatError, 2, "JSON"),
        ('["a", "x"]\n', PromptFormatError, 1, "JSON object"),
        ('{"id": "a", "prompt": 3}\n', PromptFormatError, 1, "'prompt'"),
        ('{"id": ["a"], "prompt": "x"}\n', PromptFormatError, 1, "'id'"),
        ('{"id": true, "prompt": "x"}\n', PromptFormatError, 1, "'id'"),
        ('{"id": " ", "prompt": "x"}\n', PromptFormatError, 1, "'id'"),
        ('{"id": "a", "prompt": "x", "demo": "yes"}\n', PromptFormatError, 1, "'demo'"),
        ('{"id": "a", "prompt": "x", "kind": ""}\n', PromptFormatError, 1, "'kind'"),
    ],
)
def test_malformed_jsonl_names_file_and_line(
    tmp_path: Path, content: str, error: type[PromptFileError], line: int, fragment: str
) -> None:
    path = _write(tmp_path, "bad.jsonl", content)
    with pytest.raises(error) as info:
        load_prompts(path)
    assert isinstance(info.value, InvalidInputError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert fragment in str(info.value)
    assert (info.value.source, info.value.line) == (str(path), line)


def test_missing_file_is_a_file_not_found_and_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(PromptFileNotFoundError, match="does not exist") as info:
        load_prompts(tmp_path / "nope.jsonl")
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, InvalidInputError)
    with pytest.raises(PromptFileNotFoundError, match="not a regular file"):
        load_prompts(tmp_path)


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.txt"])
def test_file_without_prompts_is_an_error(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name, "\n  \n")
    with pytest.raises(PromptFileError, match="no prompts"):
        load_prompts(path)


def test_non_utf8_file_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Caf\xe9 prompt\n".encode("latin-1"))
    with pytest.raises(PromptFormatError, match="UTF-8"):
        load_prompts(path)


def test_user_file_filters_report_why_nothing_matched(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.txt", "One prompt\n")
    with pytest.raises(ParameterError, match="count as 'test'"):
        load_prompts(path, split="train")
    with pytest.raises(ParameterError, match="kinds: \\['custom'\\]"):
        load_prompts(path, kinds="review")


def test_prompt_file_errors_survive_pickling(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.jsonl", '{"id": "a"}\n')
    with pytest.raises(MissingKeyError) as info:
        load_prompts(path)
    clone = pickle.loads(pickle.dumps(info.value))
    assert type(clone) is MissingKeyError
    assert (str(clone), clone.source, clone.line) == (str(info.value), str(path), 1)
