"""`rshape eval` machinery: grid expansion, config hashing, the resumable JSONL run file,
config-change refusal, metrics and the report.

Real-model tests decode a few tokens of `method="base"` (and ARGS with k=2) on 2–3 prompts
with a cheap text reward, so the whole file stays well within a few minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from eval_helpers import Crash, crash_on_row
from rshape_fast.errors import InvalidInputError, ParameterError
from rshape_fast.eval.grid import (
    EvalConfig,
    config_hash,
    expand_grid,
    load_config,
    method_label,
    parse_selector,
)
from rshape_fast.eval.run_file import ConfigChangedError, RunFileError, read_run
from rshape_fast.eval.run_loop import run_eval
from rshape_fast.eval.run_metrics import compute_metrics
from rshape_fast.eval.tasks import plan_tasks


def word_count(texts: list[str]) -> list[float]:
    """A cheap, deterministic steering reward: the number of words."""
    return [float(len(t.split())) for t in texts]


# --------------------------------------------------------------------------- no models


def test_grid_is_a_deduplicated_union_of_blocks() -> None:
    config = EvalConfig(
        base={"max_new_tokens": 8},
        grid=[
            {"method": ["base", "args"], "shaping": ["raw", "srs"], "weight": [0.25, 0.5]},
            {"method": ["args"], "shaping": ["srs"], "perturbation": ["none", "noise"]},
        ],
    )
    points = expand_grid(config)
    ids = [p.id for p in points]
    assert len(ids) == len(set(ids))
    # base ignores shaping and λ: four grid combinations fold into one point.
    assert [p.id for p in points if p.method == "base"] == ["method=base"]
    args = [p for p in points if p.method == "args"]
    # 2 shapings × 2 λ, plus SRS under noise (SRS at λ = 0.5 without noise is shared).
    assert len(args) == 5
    assert all(p.knobs["max_new_tokens"] == 8 for p in points)
    assert {p.knobs["perturbation"] for p in args} == {"none", "noise"}
    assert "method=args,shaping=srs,weight=0.25" in ids


def test_tasks_keep_the_grid_order_unless_slow_first() -> None:
    config = EvalConfig(
        base={"batch_size": 2},
        grid=[{"method": ["base"]}, {"method": ["bon"]}, {"method": ["args"]}],
    )
    points = expand_grid(config)
    prompts = [SimpleNamespace(id=p) for p in ("p1", "p2", "p3")]
    done = {("method=base", "p1")}
    local = plan_tasks(points, prompts, done, slow_first=False)
    # One batch (≤ 2 prompts) per task; what is done is not planned again.
    assert [(t.point.method, [p.id for p in t.prompts]) for t in local] == [
        ("base", ["p2", "p3"]),
        ("bon", ["p1", "p2"]),
        ("bon", ["p3"]),
        ("args", ["p1", "p2"]),
        ("args", ["p3"]),
    ]
    distributed = plan_tasks(points, prompts, done, slow_first=True)
    assert [t.point.method for t in distributed] == ["bon", "bon", "base", "args", "args"]


def test_grid_rejects_unknown_and_invalid_knobs() -> None:
    with pytest.raises(ParameterError, match="unknown decoding knob"):
        EvalConfig(grid=[{"lambda": [0.5]}])
    with pytest.raises(ParameterError, match="non-empty list"):
        EvalConfig(grid=[{"weight": []}])
    with pytest.raises(ParameterError, match="shaping"):
        expand_grid(EvalConfig(grid=[{"shaping": ["nope"]}]))


def test_config_hash_tracks_what_changes_the_generations() -> None:
    config = EvalConfig(base={"max_new_tokens": 8}, grid=[{"method": ["base"]}], limit=3)
    prompts = config.load_prompts()
    digest = config_hash(config, expand_grid(config), prompts)
    assert digest == config_hash(config, expand_grid(config), prompts)
    changed = EvalConfig(base={"max_new_tokens": 9}, grid=[{"method": ["base"]}], limit=3)
    assert config_hash(changed, expand_grid(changed), prompts) != digest
    assert config_hash(config, expand_grid(config), prompts[:2]) != digest
    # Baselines and judges only change the metrics, not the rows.
    metrics_only = EvalConfig(
        base={"max_new_tokens": 8},
        grid=[{"method": ["base"]}],
        limit=3,
        baselines=["method=base"],
        judges=["vader"],
    )
    assert config_hash(metrics_only, expand_grid(metrics_only), prompts) == digest


def test_load_config_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        'limit = 4\nbaselines = ["method=args,shaping=raw"]\n'
        '[base]\nmax_new_tokens = 16\nstop = ["\\n"]\n'
        '[[grid]]\nmethod = ["args"]\nshaping = ["raw", "srs"]\nweight = [0.25, 0.5]\n'
        '[[grid]]\nmethod = ["base"]\n',
        encoding="utf-8",
    )
    config = load_config(path)
    points = expand_grid(config)
    assert config.limit == 4 and len(points) == 5
    assert points[0].knobs["stop"] == ("\n",)
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 1\n", encoding="utf-8")
    with pytest.raises(ParameterError, match="unknown key"):
        load_config(bad)


def test_selectors() -> None:
    assert parse_selector("method=args,shaping=raw,weight=0.25") == {
        "method": "args",
        "shaping": "raw",
        "weight": 0.25,
    }
    with pytest.raises(ParameterError):
        parse_selector("method")
    with pytest.raises(ParameterError):
        parse_selector("colour=red")


def test_read_run_drops_only_a_truncated_last_line(tmp_path: Path) -> None:
    header = json.dumps({"type": "header", "config_hash": "x"})
    row = json.dumps({"type": "row", "point_id": "p", "prompt_id": "a"})
    path = tmp_path / "run.jsonl"
    path.write_text(header + "\n" + row + "\n" + row[:10], encoding="utf-8")
    run = read_run(path)
    assert run.dropped_partial_line and len(run.rows) == 1
    assert run.good_bytes == len(header) + len(row) + 2
    # A complete record without its newline is an interrupted write too.
    path.write_text(header + "\n" + row, encoding="utf-8")
    assert read_run(path).rows == [] and read_run(path).dropped_partial_line
    path.write_text(header + "\n" + row[:10] + "\n" + row + "\n", encoding="utf-8")
    with pytest.raises(RunFileError, match=":2:"):
        read_run(path)


def test_a_failing_point_is_skipped_and_recorded_with_keep_going(tmp_path: Path) -> None:
    config = EvalConfig(grid=[{"method": ["args"]}], limit=2)
    path = tmp_path / "run.jsonl"
    # A stand-in LM that `generate` refuses: the point fails before any model work.
    with pytest.raises(InvalidInputError):
        run_eval(config, path, lm=object(), rm=word_count, progress=False)
    summary = run_eval(config, path, lm=object(), rm=word_count, progress=False, keep_going=True)
    assert summary.generated == 0
    assert list(summary.skipped) == ["method=args,shaping=srs"]
    run = read_run(path)
    assert run.rows == [] and [s["point_id"] for s in run.skips] == ["method=args,shaping=srs"]


def test_eval_flags_build_the_grid() -> None:
    from rshape_fast.cli import build_parser
    from rshape_fast.eval.cli import build_config

    args = build_parser().parse_args(
        [
            "eval",
            "--methods",
            "base,args",
            "--shapings",
            "raw,srs",
            "--weights",
            "0.25,0.5",
            "--set",
            "k=4",
            "--max-new-tokens",
            "8",
            "--prompts",
            "2",
            "--baseline",
            "method=args,shaping=raw",
        ]
    )
    config = build_config(args)
    assert config.grid == [
        {"method": ["base", "args"], "shaping": ["raw", "srs"], "weight": [0.25, 0.5]}
    ]
    assert config.base == {"k": 4, "max_new_tokens": 8}
    assert config.limit == 2 and config.baselines == ["method=args,shaping=raw"]
    assert len(expand_grid(config)) == 5


# --------------------------------------------------------------------------- real LM


def _resume_config(tokens: tuple[int, ...] = (2, 3)) -> EvalConfig:
    return EvalConfig(
        base={"method": "base", "batch_size": 2},
        grid=[{"max_new_tokens": list(tokens)}],
        limit=3,
    )


def _pairs(path: Path) -> list[tuple[str, str]]:
    return [(r["point_id"], r["prompt_id"]) for r in read_run(path).rows]


@pytest.mark.model
def test_interrupted_run_resumes_without_duplicates_or_loss(lm: Any, tmp_path: Path) -> None:
    config = _resume_config()
    path = tmp_path / "run.jsonl"
    with pytest.raises(Crash):
        run_eval(config, path, lm=lm, rm=word_count, progress=False, on_row=crash_on_row(2))
    first = read_run(path).rows
    assert len(first) == 2

    new_rows: list[tuple[str, str]] = []
    summary = run_eval(
        config,
        path,
        lm=lm,
        rm=word_count,
        progress=False,
        on_row=lambda r: new_rows.append((r["point_id"], r["prompt_id"])),
    )
    expected = {(p.id, q.id) for p in expand_grid(config) for q in config.load_prompts()}
    pairs = _pairs(path)
    assert len(pairs) == len(set(pairs)) == len(expected) == 6
    assert set(pairs) == expected
    # Only the missing pairs were generated, and the first run's rows were kept as written.
    assert summary.reused == 2 and summary.generated == 4
    assert set(new_rows) == expected - {(r["point_id"], r["prompt_id"]) for r in first}
    assert read_run(path).rows[:2] == first

    # A kill in the middle of a write: cut the last row in half, resume regenerates it.
    text = path.read_text(encoding="utf-8")
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    path.write_text(text[: len(text) - len(last) // 2 - 1], encoding="utf-8")
    assert len(read_run(path).rows) == 5
    summary = run_eval(config, path, lm=lm, rm=word_count, progress=False)
    assert summary.generated == 1 and summary.reused == 5
    assert sorted(_pairs(path)) == sorted(expected)
    for line in path.read_text(encoding="utf-8").splitlines():
        json.loads(line)  # every line whole again

    # A finished run has nothing left to do.
    assert run_eval(config, path, lm=lm, rm=word_count, progress=False).generated == 0

    row = read_run(path).rows[0]
    for key in ("config_hash", "knobs", "prompt", "response", "token_ids", "reward", "cost"):
        assert key in row
    assert row["seed"] == 0 and row["stop_reason"] in ("eos", "stop_string", "length")
    assert row["reward"] == word_count([row["response"]])[0]


@pytest.mark.model
def test_config_change_is_refused_unless_restarted(lm: Any, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    one = EvalConfig(base={"method": "base", "max_new_tokens": 2}, limit=1)
    run_eval(one, path, lm=lm, rm=word_count, progress=False)
    other = EvalConfig(base={"method": "base", "max_new_tokens": 3}, limit=1)
    with pytest.raises(ConfigChangedError, match="restart"):
        run_eval(other, path, lm=lm, rm=word_count, progress=False)
    assert len(read_run(path).rows) == 1  # the refused run touched nothing
    run_eval(other, path, lm=lm, rm=word_count, progress=False, restart=True)
    run = read_run(path)
    assert len(run.rows) == 1 and run.rows[0]["knobs"]["max_new_tokens"] == 3
    assert run.header is not None and run.header["config"]["base"]["max_new_tokens"] == 3


@pytest.fixture(scope="module")
def small_run(lm: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Base, ARGS+raw and ARGS+SRS (k=2, 3 tokens) on 2 prompts with the word-count reward."""
    config = EvalConfig(
        base={"max_new_tokens": 3, "k": 2},
        grid=[{"method": ["base", "args"], "shaping": ["raw", "srs"]}],
        limit=2,
    )
    path = tmp_path_factory.mktemp("run") / "run.jsonl"
    run_eval(config, path, lm=lm, rm=word_count, progress=False)
    return path


@pytest.mark.model
def test_metrics_of_a_small_run(small_run: Path) -> None:
    metrics = compute_metrics(small_run)
    assert [p["label"] for p in metrics.points] == ["base", "args+raw", "args+srs"]
    for point in metrics.points:
        assert point["n"] == 2
        for score in ("reward", "vader", "minilm", "diversity", "coherence"):
            s = point["scores"][score]
            assert s["low"] - 1e-9 <= s["mean"] <= s["high"] + 1e-9
        assert point["cost"]["generated_tokens"] <= 3
    # Baselines present: base and args+raw (min-max and mean-std are not in the grid).
    present = [b["name"] for b in metrics.baselines if b["points"]]
    assert present == ["base", "args+raw"]
    # base is compared with args+raw and vice versa, SRS with both: 4 pairs × 3 judges.
    assert len(metrics.win_tie) == 4 * 3
    pairs = {(w["point"], w["baseline"]) for w in metrics.win_tie}
    assert ("method=args,shaping=srs", "base") in pairs
    assert ("method=args,shaping=srs", "args+raw") in pairs
    for w in metrics.win_tie:
        assert w["n"] == 2 and w["win"] + w["tie"] + w["loss"] == pytest.approx(1.0)
    # Judge scores are cached: a second pass reads the sidecar and gives the same numbers.
    sidecar = small_run.with_name(small_run.name + ".judges.json")
    assert sidecar.is_file()
    again = compute_metrics(small_run)
    assert again.points == metrics.points
    named = compute_metrics(small_run, baselines=["method=args,shaping=srs"])
    assert {w["baseline"] for w in named.win_tie} == {"args+srs"}


@pytest.mark.model
def test_report_writes_markdown_and_pngs(small_run: Path, tmp_path: Path) -> None:
    from rshape_fast.cli import main

    md = tmp_path / "report.md"
    figures = tmp_path / "figures"
    assert main(["report", str(small_run), "-o", str(md), "--figures", str(figures)]) == 0
    text = md.read_text(encoding="utf-8")
    assert "| args+srs | 2 |" in text and "vs args+raw" in text
    pngs = sorted(p.name for p in figures.glob("*.png"))
    # One λ only, so no reward-vs-λ plot; win-tie bars and the reward/cost frontier.
    assert pngs == ["reward_cost.png", "win_tie.png"]
    for png in figures.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({figures.name}/{png.name})" in text


def test_labels_leave_out_shaping_where_it_has_no_effect():
    assert method_label({"method": "args", "shaping": "srs"}) == "args+srs"
    assert method_label({"method": "soft_bon", "shaping": "raw"}) == "soft_bon+raw"
    for method in ("base", "bon", "streaming_bon", "cd"):
        assert method_label({"method": method, "shaping": "srs"}) == method


def _synthetic_metrics() -> Any:
    """RunMetrics of base, ARGS+raw and ARGS+SRS with made-up numbers (no models)."""
    from rshape_fast.eval.run_metrics import RunMetrics

    def point(pid: str, label: str, method: str, shaping: str, reward: float | None) -> dict:
        scores = {} if reward is None else {"reward": {"mean": reward, "low": 0, "high": 2}}
        knobs = {"method": method, "shaping": shaping, "weight": 0.5, "perturbation": "none"}
        return {"id": pid, "label": label, "knobs": knobs, "scores": scores, "cost": {"seconds": 1}}

    points = [
        point("b", "base", "base", "srs", None),
        point("r", "args+raw", "args", "raw", 0.5),
        point("s", "args+srs", "args", "srs", 1.0),
    ]
    win_tie = [
        {"point": p, "baseline": name, "baseline_point": q, "judge": "vader", "win_tie": 0.6}
        for p, name, q in (("s", "base", "b"), ("s", "args+raw", "r"), ("r", "base", "b"))
    ]
    win_tie.append(
        {
            "point": "b",
            "baseline": "args+raw",
            "baseline_point": "r",
            "judge": "vader",
            "win_tie": 0.4,
        }
    )
    baselines = [
        {"selector": "method=base", "name": "base", "points": ["b"]},
        {"selector": "method=args,shaping=raw", "name": "args+raw", "points": ["r"]},
    ]
    return RunMetrics(
        config_hash="x",
        config={},
        prompts=2,
        points=points,
        baselines=baselines,
        win_tie=win_tie,
        skipped={},
        missing=[],
        values={},
        run_file="run.jsonl",
        judge_cache="run.jsonl.judges.json",
        rows=6,
    )


def test_plots_say_what_they_leave_out(tmp_path: Path) -> None:
    from rshape_fast.eval.report import plot_frontier, plot_win_tie

    metrics = _synthetic_metrics()
    win_tie = plot_win_tie(metrics, tmp_path / "win_tie.png")
    assert win_tie is not None and win_tie.path.read_bytes()[:4] == b"\x89PNG"
    # The table has rows for args+raw and base; the plot draws the SRS point only.
    assert win_tie.caption == (
        "Win-tie of the SRS configurations against each baseline. "
        "Left out (they are in the win-tie table): base, args+raw."
    )
    frontier = plot_frontier(metrics, tmp_path / "cost.png")
    assert frontier is not None and frontier.caption.endswith(
        "Left out (no steering reward): base."
    )


def test_report_module_leaves_the_matplotlib_backend_alone(tmp_path: Path) -> None:
    code = (
        "import sys, matplotlib\n"
        "from pathlib import Path\n"
        "import rshape_fast.eval.report as report, rshape_fast.eval.reproduce\n"
        "from test_eval_runner import _synthetic_metrics\n"
        f"report.plot_all(_synthetic_metrics(), Path({str(tmp_path)!r}))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "assert matplotlib.rcParams._get_backend_or_none() is None, 'the backend was set'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["reward_cost.png", "win_tie.png"]


def test_report_on_a_generate_output_says_what_the_file_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rshape_fast.cli import main

    path = tmp_path / "out.jsonl"
    result = {"index": 0, "prompt": "Hi", "text": "Hello", "token_ids": [1], "method": "base"}
    path.write_text(json.dumps(result) + "\n", encoding="utf-8")
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"rshape report: reading the run file {path}")
    assert len(err) == 2 and "an `rshape generate` output" in err[1]
    assert "starts with a header record" in err[1]
