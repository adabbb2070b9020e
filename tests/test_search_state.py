"""SegmentBeam and StreamingBestOfN against hand-computed cases and pure-Python models."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rshape_fast import SegmentBeam, StreamingBestOfN
from rshape_fast.errors import (
    InvalidInputError,
    NonFiniteError,
    ParameterError,
    ShapeError,
)

NAN = float("nan")


class Expected(Exception):
    """Raised by the reference models: the error class and argument the real one must raise."""

    def __init__(self, cls: type[Exception], arg: str) -> None:
        super().__init__(cls, arg)
        self.cls = cls
        self.arg = arg


def raises_like(expected: Expected):
    """`pytest.raises` for an error of the class and argument a reference model predicted."""
    return pytest.raises(expected.cls, match=f"^{expected.arg}:")


# --------------------------------------------------------------------------- SegmentBeam


@dataclass
class RefBeam:
    """Straightforward model of SegmentBeam: sort the pool, skip seen hashes, take width."""

    num_prompts: int
    width: int
    # Per prompt: members in rank order as (serial, score, finished, hash).
    members: list[list[tuple[int, float, bool, int]]] = field(default_factory=list)
    live_prompt: list[int] = field(default_factory=list)
    started: list[bool] = field(default_factory=list)
    best: list[tuple[int, float] | None] = field(default_factory=list)
    submitted: int = 0

    def __post_init__(self) -> None:
        self.members = [[] for _ in range(self.num_prompts)]
        self.started = [False] * self.num_prompts
        self.best = [None] * self.num_prompts

    def step(self, prompt, parent, scores, finished, hashes):
        n = len(prompt)
        for name, arr in (
            ("parent", parent),
            ("scores", scores),
            ("finished", finished),
            ("hashes", hashes),
        ):
            if len(arr) != n:
                raise Expected(ShapeError, name)
        for p in prompt:
            if not 0 <= p < self.num_prompts:
                raise Expected(ParameterError, "prompt")
        for j, p in zip(parent, prompt, strict=True):
            if j == -1:
                if self.started[p]:
                    raise Expected(ParameterError, "parent")
            elif not 0 <= j < len(self.live_prompt) or self.live_prompt[j] != p:
                raise Expected(ParameterError, "parent")
        if not all(math.isfinite(s) for s in scores):
            raise Expected(NonFiniteError, "scores")

        serials = list(range(self.submitted, self.submitted + n))
        keep, live_prompt = [], []
        for p in range(self.num_prompts):
            pool = [(m, None) for m in self.members[p] if m[2]]
            for i in range(n):
                if prompt[i] != p:
                    continue
                member = (serials[i], scores[i], finished[i], hashes[i] % 2**64)
                pool.append((member, i))
                if finished[i] and (self.best[p] is None or scores[i] > self.best[p][1]):
                    self.best[p] = (serials[i], scores[i])
                self.started[p] = True
            pool.sort(key=lambda entry: (-entry[0][1], entry[0][0]))
            seen, survivors = set(), []
            for member, index in pool:
                if len(survivors) == self.width:
                    break
                if member[3] in seen:
                    continue
                seen.add(member[3])
                survivors.append(member)
                if not member[2]:
                    keep.append(index)
                    live_prompt.append(p)
            self.members[p] = survivors
        self.live_prompt = live_prompt
        self.submitted += n
        return keep, serials


def live_counts(beam: SegmentBeam) -> list[int]:
    """Live (unfinished) members per prompt, read from the members themselves."""
    return [
        sum(not finished for _, _, finished in beam.members(p)) for p in range(beam.num_prompts)
    ]


def assert_beam_matches(beam: SegmentBeam, ref: RefBeam) -> None:
    assert beam.submitted == ref.submitted
    counts = [sum(not m[2] for m in ms) for ms in ref.members]
    assert live_counts(beam) == counts
    assert beam.done == (not ref.live_prompt)
    for p in range(ref.num_prompts):
        assert beam.members(p) == [(s, sc, f) for s, sc, f, _ in ref.members[p]]
    serials, scores = beam.best_finished()
    assert serials.dtype == np.int64 and scores.dtype == np.float32
    for p, best in enumerate(ref.best):
        if best is None:
            assert serials[p] == -1 and np.isnan(scores[p])
        else:
            assert (serials[p], scores[p]) == best


def test_beam_hand_computed_two_prompts():
    beam = SegmentBeam(2, 2)
    keep, serials = beam.step(
        np.array([0, 0, 0, 1, 1]),
        np.full(5, -1),
        np.array([0.5, 0.25, 0.75, 0.125, 0.375], dtype=np.float32),
        np.array([False, False, False, False, True]),
        np.array([7, 8, 7, 9, 10], dtype=np.uint64),
    )
    assert keep.dtype == np.int64 and serials.dtype == np.int64
    # Index 0 is a duplicate of index 2 (same hash, lower score); index 4 finished.
    assert keep.tolist() == [2, 1, 3]
    assert serials.tolist() == [0, 1, 2, 3, 4]
    assert beam.members(0) == [(2, 0.75, False), (1, 0.25, False)]
    assert beam.members(1) == [(4, 0.375, True), (3, 0.125, False)]
    assert live_counts(beam) == [2, 1]
    assert not beam.done

    # Parents are positions in the previous keep: 0, 1 -> prompt 0; 2 -> prompt 1.
    keep, serials = beam.step(
        [0, 0, 1, 1],
        [0, 1, 2, 2],
        [0.5, 0.5, 0.375, 0.25],
        [True, False, False, False],
        [11, 12, 13, 14],
    )
    # Ties go to the lower serial, so the carried finished member 4 beats the new 7.
    assert keep.tolist() == [1, 2]
    assert serials.tolist() == [5, 6, 7, 8]
    assert beam.members(1) == [(4, 0.375, True), (7, 0.375, False)]
    ids, scores = beam.best_finished()
    assert ids.tolist() == [5, 4]
    assert scores.tolist() == [0.5, 0.375]

    # Prompt 1 gets no expansion: its live member leaves and the beam is done.
    keep, _ = beam.step([0], [0], [0.0], [True], [15])
    assert keep.tolist() == []
    assert beam.done
    assert live_counts(beam) == [0, 0]
    assert [m[0] for m in beam.members(0)] == [5, 9]


def test_beam_accepts_lists_signed_hashes_and_empty_steps():
    beam = SegmentBeam(1, 3)
    keep, _ = beam.step([0, 0], [-1, -1], [1, 2], [True, False], np.array([-1, 5]))
    assert keep.tolist() == [1]
    # Python's hash() is signed: -1 and 2**64 - 1 are the same 64-bit pattern, so the new
    # finished copy (higher score) replaces the carried one.
    keep, _ = beam.step([0], [0], [3], [True], np.array([2**64 - 1], np.uint64))
    assert keep.tolist() == []
    assert beam.members(0) == [(2, 3.0, True)]
    keep, serials = beam.step([], [], [], [], [])
    assert keep.tolist() == [] and serials.tolist() == []
    assert beam.done and beam.submitted == 3


def test_beam_width_one_is_greedy():
    rng = np.random.default_rng(0)
    beam = SegmentBeam(1, 1)
    parent = -1
    for step in range(30):
        scores = rng.integers(0, 5, size=4).astype(np.float32)
        keep, _ = beam.step(
            np.zeros(4, np.int64),
            np.full(4, parent),
            scores,
            np.zeros(4, bool),
            step * 4 + np.arange(4),
        )
        assert keep.tolist() == [int(np.argmax(scores))]
        parent = 0


@st.composite
def beam_runs(draw):
    num_prompts = draw(st.integers(1, 3))
    width = draw(st.integers(1, 3))
    steps = []
    ref = RefBeam(num_prompts, width)
    for _ in range(draw(st.integers(1, 6))):
        # Expansions of each current live member, or roots for prompts not yet started.
        sources = [(p, j) for j, p in enumerate(ref.live_prompt)]
        sources += [(p, -1) for p in range(num_prompts) if not ref.started[p]]
        prompt, parent = [], []
        for p, j in sources:
            count = draw(st.integers(0, 3))
            prompt += [p] * count
            parent += [j] * count
        order = draw(st.permutations(range(len(prompt))))
        prompt = [prompt[i] for i in order]
        parent = [parent[i] for i in order]
        n = len(prompt)
        scores = draw(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.5]), min_size=n, max_size=n))
        finished = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        hashes = draw(st.lists(st.integers(-3, 5), min_size=n, max_size=n))
        args = [prompt, parent, scores, finished, hashes]
        fault = draw(st.sampled_from(["none"] * 4 + ["prompt", "parent", "nan", "length"]))
        if fault == "prompt" and n:
            args[0] = [*prompt[:-1], draw(st.sampled_from([-1, num_prompts]))]
        elif fault == "parent" and n:
            args[1] = [*parent[:-1], draw(st.integers(-2, len(ref.live_prompt) + 1))]
        elif fault == "nan" and n:
            args[2] = [*scores[:-1], draw(st.sampled_from([NAN, math.inf, -math.inf]))]
        elif fault == "length":
            victim = draw(st.integers(1, 4))
            args[victim] = [*args[victim], args[victim][0] if args[victim] else 0]
        try:
            ref.step(*args)
        except Expected:
            pass
        steps.append(args)
    return num_prompts, width, steps


@settings(max_examples=300, deadline=None)
@given(beam_runs())
def test_beam_matches_reference_model(run):
    num_prompts, width, steps = run
    beam = SegmentBeam(num_prompts, width)
    ref = RefBeam(num_prompts, width)
    hash_of: dict[int, int] = {}
    for prompt, parent, scores, finished, hashes in steps:
        arrays = (
            np.array(prompt, np.int64),
            np.array(parent, np.int64),
            np.array(scores, np.float32),
            np.array(finished, bool),
            np.array(hashes, np.int64).astype(np.uint64),
        )
        try:
            want = ref.step(prompt, parent, scores, finished, hashes)
        except Expected as expected:
            with raises_like(expected):
                beam.step(*arrays)
        else:
            keep, serials = beam.step(*arrays)
            assert (keep.tolist(), serials.tolist()) == want
            hash_of.update(zip(serials.tolist(), arrays[4].tolist(), strict=True))
            # Properties that hold whatever the model says.
            assert len(set(keep.tolist())) == len(keep)
            assert not np.asarray(finished, bool)[keep].any()
        assert_beam_matches(beam, ref)
        # Duplicates never survive twice, checked on the real beam's members.
        for p in range(num_prompts):
            members = beam.members(p)
            assert len(members) <= width
            kept = [hash_of[serial] for serial, _, _ in members]
            assert len(set(kept)) == len(kept)


def test_beam_best_finished_is_max_over_finished_submissions():
    rng = np.random.default_rng(1)
    beam = SegmentBeam(2, 2)
    best: list[tuple[int, float]] = [(-1, -math.inf)] * 2
    prompt, parent = np.repeat([0, 1], 3), np.full(6, -1)
    for _ in range(50):
        scores = rng.normal(size=len(prompt)).astype(np.float32)
        finished = rng.random(len(prompt)) < 0.3
        hashes = rng.integers(0, 2**62, len(prompt))
        keep, serials = beam.step(prompt, parent, scores, finished, hashes)
        for i in np.flatnonzero(finished):
            if scores[i] > best[prompt[i]][1]:
                best[prompt[i]] = (int(serials[i]), float(scores[i]))
        if beam.done:
            break
        owners = prompt[keep]
        parent = np.repeat(np.arange(len(keep)), 3)
        prompt = owners[parent]
    assert min(b[0] for b in best) >= 0
    ids, scores = beam.best_finished()
    assert list(zip(ids.tolist(), scores.tolist(), strict=True)) == best


@pytest.mark.parametrize(
    ("args", "cls", "arg"),
    [
        (([[0]], [-1], [0.0], [False], [1]), ShapeError, "prompt"),
        ((0, [-1], [0.0], [False], [1]), ShapeError, "prompt"),
        (([0], [-1], [[0.0]], [False], [1]), ShapeError, "scores"),
        (([0], [-1, -1], [0.0], [False], [1]), ShapeError, "parent"),
        (([0], [-1], [0.0, 1.0], [False], [1]), ShapeError, "scores"),
        (([0], [-1], [0.0], [], [1]), ShapeError, "finished"),
        (([0], [-1], [0.0], [False], [1, 2]), ShapeError, "hashes"),
        (([2], [-1], [0.0], [False], [1]), ParameterError, "prompt"),
        (([-1], [-1], [0.0], [False], [1]), ParameterError, "prompt"),
        (([0], [0], [0.0], [False], [1]), ParameterError, "parent"),
        (([0], [-2], [0.0], [False], [1]), ParameterError, "parent"),
        (([0], [-1], [NAN], [False], [1]), NonFiniteError, "scores"),
        (([0], [-1], [math.inf], [False], [1]), NonFiniteError, "scores"),
        (([0.0], [-1], [0.0], [False], [1]), InvalidInputError, "prompt"),
        (([0], [-1.0], [0.0], [False], [1]), InvalidInputError, "parent"),
        (([0], [-1], ["a"], [False], [1]), InvalidInputError, "scores"),
        (([0], [-1], [0.0], [1], [1]), InvalidInputError, "finished"),
        (([0], [-1], [0.0], [False], [1.5]), InvalidInputError, "hashes"),
    ],
)
def test_beam_bad_step_input(args, cls, arg):
    beam = SegmentBeam(2, 2)
    with pytest.raises(cls, match=f"^{arg}:"):
        beam.step(*args)
    assert beam.submitted == 0
    assert issubclass(cls, ValueError)


def test_beam_bad_parent_after_the_first_step():
    beam = SegmentBeam(2, 2)
    beam.step([0, 1], [-1, -1], [0.0, 0.0], [False, False], [1, 2])
    for parent in ([1], [2], [-1]):
        with pytest.raises(ParameterError, match=r"^parent:"):
            beam.step([0], parent, [0.0], [False], [3])
    assert beam.submitted == 2


@pytest.mark.parametrize(
    ("num_prompts", "width", "arg"),
    [(0, 1, "num_prompts"), (-3, 1, "num_prompts"), (1, 0, "width"), (2, -1, "width")],
)
def test_beam_bad_sizes(num_prompts, width, arg):
    with pytest.raises(ParameterError, match=f"^{arg}:"):
        SegmentBeam(num_prompts, width)


@pytest.mark.parametrize("prompt", [-1, 2])
def test_beam_members_out_of_range(prompt):
    with pytest.raises(ParameterError, match=r"^prompt:"):
        SegmentBeam(2, 1).members(prompt)


# ---------------------------------------------------------------------- StreamingBestOfN


@dataclass
class RefBestOfN:
    num_prompts: int
    n: int
    scores: list[float] = field(default_factory=list)
    status: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scores = [NAN] * (self.num_prompts * self.n)
        self.status = ["live"] * (self.num_prompts * self.n)

    def record(self, ids, scores, finished):
        if len(scores) != len(ids):
            raise Expected(ShapeError, "scores")
        if len(finished) != len(ids):
            raise Expected(ShapeError, "finished")
        seen = set()
        for c in ids:
            if not 0 <= c < len(self.status) or c in seen or self.status[c] != "live":
                raise Expected(ParameterError, "candidates")
            seen.add(c)
        if not all(math.isfinite(s) for s in scores):
            raise Expected(NonFiniteError, "scores")
        for c, s, f in zip(ids, scores, finished, strict=True):
            self.scores[c] = s
            if f:
                self.status[c] = "finished"

    def prune(self, f):
        if not (math.isfinite(f) and 0 <= f < 1):
            raise Expected(ParameterError, "reject_fraction")
        if any(
            st == "live" and math.isnan(s) for st, s in zip(self.status, self.scores, strict=True)
        ):
            raise Expected(ParameterError, "candidates")
        if f == 0:
            return []
        rejected = []
        for p in range(self.num_prompts):
            ids = range(p * self.n, (p + 1) * self.n)
            live = sum(self.status[i] == "live" for i in ids)
            if live == 0:
                continue
            slots = min(live, max(1, math.ceil((1 - f) * live - 1e-9)))
            ranked = sorted(
                (i for i in ids if self.status[i] != "rejected"),
                key=lambda i: (-self.scores[i], i),
            )
            dropped = sorted(i for i in ranked[slots:] if self.status[i] == "live")
            for i in dropped:
                self.status[i] = "rejected"
            rejected += dropped
        return rejected

    def finished_ids(self, p):
        return [i for i in range(p * self.n, (p + 1) * self.n) if self.status[i] == "finished"]

    def best_finished(self):
        out = []
        for p in range(self.num_prompts):
            done = self.finished_ids(p)
            best = min(done, key=lambda i: (-self.scores[i], i), default=None)
            out.append((-1, NAN) if best is None else (best, self.scores[best]))
        return out


def assert_bon_matches(state: StreamingBestOfN, ref: RefBestOfN) -> None:
    shape = (ref.num_prompts, ref.n)
    survivors, finished, scores = state.survivors(), state.finished_mask(), state.scores()
    assert survivors.shape == finished.shape == scores.shape == shape
    assert survivors.dtype == finished.dtype == np.bool_ and scores.dtype == np.float32
    np.testing.assert_array_equal(survivors.ravel(), [s == "live" for s in ref.status])
    np.testing.assert_array_equal(finished.ravel(), [s == "finished" for s in ref.status])
    np.testing.assert_array_equal(scores.ravel(), np.array(ref.scores, np.float32))
    assert state.done == ("live" not in ref.status)
    ids, best = state.best_finished()
    want = ref.best_finished()
    assert ids.tolist() == [i for i, _ in want]
    np.testing.assert_array_equal(best, np.array([s for _, s in want], np.float32))


def test_bon_hand_computed():
    state = StreamingBestOfN(2, 4)
    state.record(
        np.arange(8),
        np.array([0.2, 0.9, 0.5, 0.1, 0.3, 0.3, 0.8, -1.0], np.float32),
        np.array([False, True, False, False, False, False, False, False]),
    )
    # Prompt 0: 3 live -> 2 slots; ranking 1 (finished), 2, 0, 3. Prompt 1: 4 live ->
    # 2 slots; ranking 6, 4, 5 (ties with 4, higher id), 7.
    rejected = state.prune()
    assert rejected.dtype == np.int64
    assert rejected.tolist() == [0, 3, 5, 7]
    assert state.survivors().tolist() == [[False, False, True, False], [True, False, True, False]]
    assert state.finished_mask().tolist() == [[False, True, False, False], [False] * 4]
    ids, best = state.best_finished()
    assert ids.tolist() == [1, -1]
    assert best[0] == np.float32(0.9) and np.isnan(best[1])
    assert not state.done
    state.record([2, 4, 6], [0.95, 0.0, 0.0], [True, True, True])
    assert state.done
    ids, best = state.best_finished()
    assert ids.tolist() == [2, 4]
    assert state.prune(reject_fraction=0.9).tolist() == []


def test_bon_zero_fraction_rejects_nothing_and_unscored_is_an_error():
    state = StreamingBestOfN(1, 3)
    state.record([0, 1], [5.0, 1.0], [True, False])
    with pytest.raises(ParameterError, match=r"^candidates:.*never been scored"):
        state.prune()
    state.record([2], [2.0], [False])
    assert state.prune(reject_fraction=0.0).tolist() == []
    # With f > 0 the finished answer takes one of the two slots.
    assert state.prune(reject_fraction=0.01).tolist() == [1]
    assert np.isnan(StreamingBestOfN(1, 2).scores()).all()


@st.composite
def bon_runs(draw):
    num_prompts = draw(st.integers(1, 3))
    n = draw(st.integers(1, 5))
    ref = RefBestOfN(num_prompts, n)
    ops = []
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["record", "record", "prune"]))
        if kind == "record":
            live = [i for i, s in enumerate(ref.status) if s == "live"]
            ids = draw(st.lists(st.sampled_from(live), unique=True)) if live else []
            ids = draw(st.permutations(ids))
            k = len(ids)
            scores = draw(
                st.lists(st.sampled_from([-2.0, 0.0, 0.5, 1.0, 3.0]), min_size=k, max_size=k)
            )
            finished = draw(st.lists(st.booleans(), min_size=k, max_size=k))
            fault = draw(st.sampled_from(["none"] * 4 + ["id", "dup", "nan", "length"]))
            if fault == "id":
                ids = [*ids, draw(st.sampled_from([-1, num_prompts * n, *range(num_prompts * n)]))]
                scores, finished = [*scores, 0.0], [*finished, False]
            elif fault == "dup" and ids:
                ids, scores, finished = [*ids, ids[0]], [*scores, 0.0], [*finished, False]
            elif fault == "nan" and ids:
                scores = [*scores[:-1], NAN]
            elif fault == "length":
                scores = [*scores, 0.0]
            op = ("record", ids, scores, finished)
            try:
                ref.record(ids, scores, finished)
            except Expected:
                pass
        else:
            f = draw(st.sampled_from([0.0, 0.25, 0.5, 0.7, 0.9, 0.999, -0.5, 1.0]))
            op = ("prune", f)
            try:
                ref.prune(f)
            except Expected:
                pass
        ops.append(op)
    return num_prompts, n, ops


@settings(max_examples=300, deadline=None)
@given(bon_runs())
def test_bon_matches_reference_model(run):
    num_prompts, n, ops = run
    state = StreamingBestOfN(num_prompts, n)
    ref = RefBestOfN(num_prompts, n)
    for op in ops:
        if op[0] == "record":
            _, ids, scores, finished = op
            args = (np.array(ids, np.int64), np.array(scores, np.float32), np.array(finished, bool))
            try:
                ref.record(ids, scores, finished)
            except Expected as expected:
                with raises_like(expected):
                    state.record(*args)
            else:
                state.record(*args)
        else:
            try:
                want = ref.prune(op[1])
            except Expected as expected:
                with raises_like(expected):
                    state.prune(reject_fraction=op[1])
            else:
                assert state.prune(reject_fraction=op[1]).tolist() == want
        assert_bon_matches(state, ref)


@pytest.mark.parametrize(
    ("args", "cls", "arg"),
    [
        (([[0]], [0.0], [False]), ShapeError, "candidates"),
        (([0], [0.0, 1.0], [False]), ShapeError, "scores"),
        (([0], [0.0], [False, True]), ShapeError, "finished"),
        (([6], [0.0], [False]), ParameterError, "candidates"),
        (([-1], [0.0], [False]), ParameterError, "candidates"),
        (([1, 1], [0.0, 0.0], [False, False]), ParameterError, "candidates"),
        (([0], [NAN], [False]), NonFiniteError, "scores"),
        (([0], [-math.inf], [True]), NonFiniteError, "scores"),
        (([0.5], [0.0], [False]), InvalidInputError, "candidates"),
        (([0], [0.0], [0]), InvalidInputError, "finished"),
    ],
)
def test_bon_bad_record_input(args, cls, arg):
    state = StreamingBestOfN(2, 3)
    with pytest.raises(cls, match=f"^{arg}:"):
        state.record(*args)
    assert np.isnan(state.scores()).all()


def test_bon_records_for_rejected_or_finished_candidates_are_errors():
    state = StreamingBestOfN(1, 3)
    state.record([0, 1, 2], [0.0, 1.0, 0.5], [False, False, True])
    # 2 live -> 1 slot, taken by candidate 1 (ranked above the finished 2).
    assert state.prune(reject_fraction=0.5).tolist() == [0]
    with pytest.raises(ParameterError, match=r"^candidates:.*rejected"):
        state.record([0], [5.0], [False])
    with pytest.raises(ParameterError, match=r"^candidates:.*finished"):
        state.record([2], [5.0], [True])
    # The failed calls are atomic: candidate 1 in the same call is not recorded either.
    with pytest.raises(ParameterError, match=r"^candidates:"):
        state.record([1, 0], [7.0, 7.0], [True, False])
    assert state.scores().tolist() == [[0.0, 1.0, 0.5]]


@pytest.mark.parametrize("f", [-0.1, 1.0, 1.5, NAN, math.inf])
def test_bon_bad_reject_fraction(f):
    state = StreamingBestOfN(1, 2)
    state.record([0, 1], [0.0, 1.0], [False, False])
    with pytest.raises(ParameterError, match=r"^reject_fraction:"):
        state.prune(reject_fraction=f)
    assert state.survivors().all()


@pytest.mark.parametrize(
    ("num_prompts", "n", "arg"),
    [(0, 1, "num_prompts"), (-1, 1, "num_prompts"), (1, 0, "n"), (1, -4, "n")],
)
def test_bon_bad_sizes(num_prompts, n, arg):
    with pytest.raises(ParameterError, match=f"^{arg}:"):
        StreamingBestOfN(num_prompts, n)


def test_knobs_are_keyword_only():
    state = StreamingBestOfN(1, 1)
    with pytest.raises(TypeError):
        state.prune(0.5)  # type: ignore[misc]


def test_exports_docstrings_and_sizes():
    import rshape_fast

    assert {"SegmentBeam", "StreamingBestOfN"} <= set(rshape_fast.__all__)
    for cls in (SegmentBeam, StreamingBestOfN):
        assert cls.__doc__
    for method in (
        SegmentBeam.step,
        SegmentBeam.best_finished,
        StreamingBestOfN.record,
        StreamingBestOfN.prune,
    ):
        assert method.__doc__
    beam, state = SegmentBeam(3, 2), StreamingBestOfN(2, 5)
    assert (beam.num_prompts, beam.width, beam.submitted) == (3, 2, 0)
    assert beam.done and live_counts(beam) == [0, 0, 0]
    assert (state.num_prompts, state.n) == (2, 5)
    assert not state.done
    assert "SegmentBeam" in repr(beam) and "StreamingBestOfN" in repr(state)
