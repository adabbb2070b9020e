"""Evaluation metrics (diversity, bootstrap, win-tie) and the held-out judges."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rshape_fast.eval.metrics as metrics_module
from rshape_fast.errors import (
    InvalidInputError,
    ModelError,
    NonFiniteError,
    ParameterError,
    ShapeError,
)
from rshape_fast.eval import (
    JUDGES,
    NEGATIVE_ANCHORS,
    POSITIVE_ANCHORS,
    Embedder,
    MiniLMSentimentJudge,
    VaderJudge,
    bootstrap_ci,
    coherence,
    diversity,
    load_judge,
    mean_diversity,
    win_tie_rate,
)
from rshape_fast.prompts import load_prompts

# --------------------------------------------------------------------------- diversity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # bigrams ab,ba,ab,ba,ab: 2 distinct of 5; trigrams 2 of 4; 4-grams 2 of 3.
        ("a b a b a b", (2 / 5) * (2 / 4) * (2 / 3)),
        ("the cat sat on the mat", 1.0),
        # bigrams 1 of 3, trigrams 1 of 2, 4-grams 1 of 1.
        ("a a a a", (1 / 3) * (1 / 2) * 1.0),
        # too short for trigrams and 4-grams: factor 1 for each.
        ("a a a", 1 / 2),
        ("a a", 1.0),
        ("word", 1.0),
        ("", 1.0),
        ("   \n\t ", 1.0),
        # lower-cased whitespace tokens: bigrams ab,ba,ab (2 of 3), trigrams 2 of 2.
        ("A b\ta\nB", 2 / 3),
        # punctuation stays on its token: "b." differs from "b", so no bigram repeats
        # (while "a b a b" scores 2/3).
        ("a b a b.", 1.0),
        ("a b a b", 2 / 3),
    ],
)
def test_diversity_hand_computed(text: str, expected: float) -> None:
    assert diversity(text) == pytest.approx(expected, rel=1e-12)


def _reference_diversity(text: str) -> float:
    tokens = text.lower().split()
    result = 1.0
    for n in (2, 3, 4):
        grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        total = sum(grams.values())
        if total:
            repeated = sum(count - 1 for count in grams.values())
            result *= 1 - repeated / total
    return result


@given(st.lists(st.sampled_from(["a", "b", "c", "D", "d", "e."]), max_size=40))
def test_diversity_matches_repeated_ngram_reference(tokens: list[str]) -> None:
    text = " ".join(tokens)
    value = diversity(text)
    assert 0.0 < value <= 1.0
    assert value == pytest.approx(_reference_diversity(text), rel=1e-12)


def test_degenerate_repetition_scores_far_below_fluent_text() -> None:
    fluent = "I went to the market this morning and bought fresh bread for the family."
    looping = "I went to the market " * 6
    assert diversity(fluent) == 1.0
    assert diversity(looping) < 0.1


def test_mean_diversity() -> None:
    assert mean_diversity(["a a a", "x y"]) == pytest.approx(0.75)
    assert mean_diversity(("a b a b a b",)) == pytest.approx(2 / 15)
    with pytest.raises(ShapeError):
        mean_diversity([])
    with pytest.raises(InvalidInputError):
        mean_diversity("a b c")
    with pytest.raises(InvalidInputError):
        diversity(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_interval_contains_the_mean_and_matches_normal_theory() -> None:
    values = np.random.default_rng(1).normal(2.0, 1.0, size=400)
    mean, low, high = bootstrap_ci(values)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    normal_half_width = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert (high - low) / 2 == pytest.approx(normal_half_width, rel=0.15)


def test_bootstrap_interval_narrows_with_more_data() -> None:
    rng = np.random.default_rng(2)
    widths = []
    for n in (25, 100, 400, 1600):
        _, low, high = bootstrap_ci(rng.normal(size=n))
        widths.append(high - low)
    assert widths == sorted(widths, reverse=True)
    # the width shrinks like 1/sqrt(n): a quarter from 25 to 400 samples
    assert widths[2] / widths[0] == pytest.approx(0.25, rel=0.3)


def test_bootstrap_is_seeded_and_confidence_widens_it() -> None:
    values = np.random.default_rng(3).exponential(size=60)
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)
    assert bootstrap_ci(values, seed=5) != bootstrap_ci(values, seed=6)
    _, low80, high80 = bootstrap_ci(values, confidence=0.8)
    _, low99, high99 = bootstrap_ci(values, confidence=0.99)
    assert low99 < low80 < high80 < high99


def test_bootstrap_degenerate_inputs() -> None:
    assert bootstrap_ci([4.5]) == (4.5, 4.5, 4.5)
    assert bootstrap_ci(np.full(30, -1.25, dtype=np.float32)) == (-1.25, -1.25, -1.25)
    assert bootstrap_ci([1, 2, 3], n_resamples=1)[0] == 2.0


def test_bootstrap_chunking_gives_the_same_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(4).normal(size=300)
    whole = bootstrap_ci(values, n_resamples=4000)
    monkeypatch.setattr(metrics_module, "_BOOTSTRAP_CHUNK_ELEMENTS", 1000)  # 3 rows a chunk
    chunked = bootstrap_ci(values, n_resamples=4000)
    assert chunked[0] == whole[0]
    assert chunked[1] == pytest.approx(whole[1], abs=0.02)
    assert chunked[2] == pytest.approx(whole[2], abs=0.02)


@pytest.mark.parametrize(
    ("values", "kwargs", "error"),
    [
        ([], {}, ShapeError),
        ([[1.0, 2.0]], {}, ShapeError),
        ([1.0, float("nan")], {}, NonFiniteError),
        ([1.0, float("inf")], {}, NonFiniteError),
        (["a", "b"], {}, InvalidInputError),
        ([1.0, 2.0], {"confidence": 1.0}, ParameterError),
        ([1.0, 2.0], {"confidence": 0.0}, ParameterError),
        ([1.0, 2.0], {"confidence": float("nan")}, ParameterError),
        ([1.0, 2.0], {"n_resamples": 0}, ParameterError),
        ([1.0, 2.0], {"n_resamples": 10.0}, ParameterError),
    ],
)
def test_bootstrap_rejects_bad_input(
    values: object, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        bootstrap_ci(values, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- win-tie


def test_win_tie_hand_case() -> None:
    result = win_tie_rate([3.0, 2.0, 1.0, 5.0], [1.0, 2.0, 4.0, 5.0])
    assert result == {"win": 0.25, "tie": 0.5, "loss": 0.25, "win_tie": 0.75}


def test_win_tie_tolerance_is_inclusive() -> None:
    # differences -0.5 (a tie at exactly the tolerance), 0.25 (tie), 2.0 (win), -0.75 (loss)
    a = np.array([1.0, 1.25, 3.0, 0.25])
    b = np.array([1.5, 1.0, 1.0, 1.0])
    assert win_tie_rate(a, b, tie_tolerance=0.5) == {
        "win": 0.25,
        "tie": 0.5,
        "loss": 0.25,
        "win_tie": 0.75,
    }
    assert win_tie_rate(a, b) == {"win": 0.5, "tie": 0.0, "loss": 0.5, "win_tie": 0.5}


finite = st.floats(-10, 10, allow_nan=False, width=32)


@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=30), st.sampled_from([0, 0.5]))
def test_win_tie_is_antisymmetric_and_sums_to_one(
    pairs: list[tuple[float, float]], tolerance: float
) -> None:
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs]
    ab = win_tie_rate(a, b, tie_tolerance=tolerance)
    ba = win_tie_rate(b, a, tie_tolerance=tolerance)
    assert (ab["win"], ab["tie"], ab["loss"]) == (ba["loss"], ba["tie"], ba["win"])
    assert ab["win"] + ab["tie"] + ab["loss"] == pytest.approx(1.0)
    assert ab["win_tie"] == pytest.approx(ab["win"] + ab["tie"])


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "error"),
    [
        ([1.0, 2.0], [1.0], {}, ShapeError),
        ([], [], {}, ShapeError),
        ([1.0, float("nan")], [1.0, 2.0], {}, NonFiniteError),
        ([1.0, 2.0], [float("-inf"), 2.0], {}, NonFiniteError),
        ([1.0], [2.0], {"tie_tolerance": -0.1}, ParameterError),
        ([1.0], [2.0], {"tie_tolerance": float("nan")}, ParameterError),
    ],
)
def test_win_tie_rejects_bad_input(
    a: list[float], b: list[float], kwargs: dict[str, float], error: type[Exception]
) -> None:
    with pytest.raises(error):
        win_tie_rate(a, b, **kwargs)


# --------------------------------------------------------------------------- judges

POSITIVE = [
    "I love this, it is wonderful",
    "The staff were friendly and the food was delicious.",
    "We had a lovely afternoon together in the park.",
    "My new puppy makes me smile every single day.",
]
NEGATIVE = [
    "This is terrible, I hate it",
    "The staff were rude and the food arrived cold.",
    "We had a miserable afternoon stuck in the rain.",
    "My flight was cancelled and the airline was useless.",
]


def test_importing_eval_and_prompts_does_not_import_torch() -> None:
    code = (
        "import sys, rshape_fast, rshape_fast.eval, rshape_fast.prompts; "
        "heavy = ('torch', 'transformers', 'vaderSentiment', 'ray'); "
        "heavy = [m for m in heavy if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_vader_ranks_positive_above_negative() -> None:
    judge = VaderJudge()
    pos, neg = judge.score(POSITIVE), judge.score(NEGATIVE)
    assert pos.dtype == np.float32 and pos.shape == (len(POSITIVE),)
    assert pos.min() > 0.3 and neg.max() < -0.3
    assert np.all((pos >= -1) & (pos <= 1)) and np.all((neg >= -1) & (neg <= 1))
    assert judge.score(["The train leaves at nine."])[0] == 0.0
    assert judge.score([]).shape == (0,)


def test_judges_reject_a_bare_string_and_non_strings() -> None:
    with pytest.raises(InvalidInputError, match="not one str"):
        VaderJudge().score("I love it")
    with pytest.raises(InvalidInputError, match=r"texts\[1\]"):
        VaderJudge().score(["fine", None])  # type: ignore[list-item]


def test_registry() -> None:
    assert set(JUDGES) == {"vader", "minilm"}
    assert isinstance(load_judge("vader"), VaderJudge)
    assert isinstance(load_judge(" VADER ", device="cpu"), VaderJudge)
    judge = load_judge("minilm", device="cpu")  # built lazily: no model load yet
    assert isinstance(judge, MiniLMSentimentJudge) and judge.name == "minilm"
    with pytest.raises(ParameterError, match="available"):
        load_judge("gpt4")
    with pytest.raises(ParameterError):
        load_judge(["vader"])  # type: ignore[arg-type]


def test_anchor_sentences_are_distinct_and_not_taken_from_the_prompts() -> None:
    assert len(POSITIVE_ANCHORS) == len(set(POSITIVE_ANCHORS)) == 8
    assert len(NEGATIVE_ANCHORS) == len(set(NEGATIVE_ANCHORS)) == 8
    prompt_texts = {p.text.lower() for p in load_prompts()}
    assert not prompt_texts & {a.lower() for a in POSITIVE_ANCHORS + NEGATIVE_ANCHORS}
    # VADER, an independent scorer, agrees on the anchors' polarity
    assert VaderJudge().score(POSITIVE_ANCHORS).min() > 0
    assert VaderJudge().score(NEGATIVE_ANCHORS).max() < 0


def test_missing_model_folder_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"config\.json"):
        Embedder(tmp_path).embed(["hello"])


def test_bad_judge_arguments() -> None:
    with pytest.raises(ParameterError):
        MiniLMSentimentJudge(positive_anchors=[])
    with pytest.raises(ParameterError):
        Embedder(batch_size=0)
    with pytest.raises(ParameterError):
        Embedder(max_length=2)
    with pytest.raises(InvalidInputError, match="pair up"):
        coherence(["a", "b"], ["c"])
    assert coherence([], []).shape == (0,)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(batch_size=4)


@pytest.mark.model
def test_minilm_ranks_positive_above_negative(embedder: Embedder) -> None:
    judge = MiniLMSentimentJudge(embedder=embedder)
    pos, neg = judge.score(POSITIVE), judge.score(NEGATIVE)
    assert pos.dtype == np.float32 and pos.shape == (len(POSITIVE),)
    assert pos.min() > neg.max()
    assert pos.min() > 0 > neg.max()
    neutral = judge.score(["The train leaves at nine.", "Water boils at 100 degrees Celsius."])
    assert np.all((neutral < pos.min()) & (neutral > neg.max()))


@pytest.mark.model
def test_minilm_embeddings_are_unit_and_batch_independent(embedder: Embedder) -> None:
    texts = [*POSITIVE, "", "short", " ".join(["long text"] * 200), *NEGATIVE]
    together = embedder.embed(texts)
    assert together.shape == (len(texts), 384) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([embedder.embed([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    # distinct texts give distinct embeddings
    assert np.all(np.triu(together @ together.T, k=1) < 0.999)


@pytest.mark.model
def test_minilm_model_is_loaded_once_per_process(embedder: Embedder) -> None:
    other = Embedder(device="cpu")
    assert other._model()[1] is embedder._model()[1]


@pytest.mark.model
def test_coherence_prefers_on_topic_replies(embedder: Embedder) -> None:
    prompts = [
        "How do bees make honey?",
        "What should I pack for a weekend hiking trip?",
        "Continue the story: The old dog waited by the gate every evening.",
    ]
    on_topic = [
        "Bees collect nectar from flowers and turn it into honey inside the hive.",
        "Bring sturdy boots, a rain jacket, water, snacks and a map of the trail.",
        "One evening the gate opened, and the dog's owner finally came home.",
    ]
    off_topic = [
        "My favourite football team lost again on Saturday.",
        "The tax form must be filed before the end of April.",
        "Preheat the oven and whisk the eggs with sugar.",
    ]
    on = coherence(prompts, on_topic, embedder=embedder)
    off = coherence(prompts, off_topic, embedder=embedder)
    assert on.dtype == np.float32 and on.shape == (3,)
    assert np.all(on > off + 0.2), (on, off)
    assert np.all((on >= -1) & (on <= 1))
    # the default process-wide embedder gives the same numbers
    np.testing.assert_allclose(coherence(prompts, on_topic), on, atol=1e-5)
