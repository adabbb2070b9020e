"""`rshape reproduce`: the protocol's grids, the choice of λ*, and a whole run on tiny models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rshape_fast.eval.grid import expand_grid
from rshape_fast.eval.protocol import (
    PAPER_DEFAULTS,
    SUITES,
    choose_weight,
    extras_config,
    schemes_config,
    sweep_config,
    train_prompt_ids,
)


def test_sweep_runs_vanilla_args_on_a_balanced_train_subset() -> None:
    ids = train_prompt_ids(12)
    kinds = {i.rsplit("-", 1)[0] for i in ids}
    assert len(ids) == 12 and len(kinds) == 6
    config = sweep_config(
        SUITES["sentiment"], prompt_ids=ids, max_new_tokens=8, weights=(0.5, 2), rm_dtype=None
    )
    assert [p.id for p in config.load_prompts()] == ids
    assert all(p.split == "train" for p in config.load_prompts())
    points = expand_grid(config)
    assert [(p.knobs["shaping"], p.knobs["weight"]) for p in points] == [("raw", 0.5), ("raw", 2)]


def test_test_grid_has_every_scheme_with_and_without_calibration() -> None:
    config = schemes_config(
        SUITES["sentiment"], weight=1.0, prompts=84, max_new_tokens=48, rm_dtype="bfloat16"
    )
    points = expand_grid(config)
    keys = {(p.method, p.knobs["shaping"], p.knobs["reward_scale"]) for p in points}
    assert ("base", PAPER_DEFAULTS["shaping"], None) in keys
    for shaping in ("raw", "srs", "meansoft", "cap"):
        assert {("args", shaping, None), ("args", shaping, "auto")} <= keys
    # Scale-free schemes once: calibration cannot change their tokens.
    assert ("args", "minmax", None) in keys and ("args", "minmax", "auto") not in keys
    assert len(points) == 1 + 4 * 2 + 2
    assert all(p.knobs["weight"] == 1.0 and p.knobs["alpha"] == 1.5 for p in points)
    assert len(config.load_prompts()) == 84 and config.rm_dtype == "bfloat16"
    ensemble = schemes_config(
        SUITES["ensemble"], weight=0.5, prompts=4, max_new_tokens=8, rm_dtype=None
    )
    assert ensemble.rm == ["smollm2-sentiment", "smollm2-chat-judge"]
    assert {p.knobs["ensemble"] for p in expand_grid(ensemble)} == {"mean"}


def test_extras_grid_perturbs_and_compares_cd_heads() -> None:
    config = extras_config(
        SUITES["sentiment"],
        weight=0.5,
        prompts=4,
        max_new_tokens=8,
        rm_dtype=None,
        value_heads=["h/raw", "h/srs"],
    )
    points = expand_grid(config)
    cd = [p.knobs["value_head"] for p in points if p.method == "cd"]
    assert cd == ["h/raw", "h/srs"]
    perturbed = {
        (p.knobs["shaping"], p.knobs["reward_scale"])
        for p in points
        if p.knobs["perturbation"] == "reversed"
    }
    assert perturbed == {("raw", None), ("srs", None), ("srs", "auto")}
    # bon chooses by the argmax, which no scale moves; soft_bon shapes.
    assert sum(p.method == "bon" for p in points) == 1
    assert sum(p.method == "soft_bon" for p in points) == 2


def _metrics(rows: list[tuple[float, float, float, float]]) -> Any:
    from types import SimpleNamespace

    points = [
        {
            "knobs": {"method": "args", "weight": w},
            "scores": {"reward": {"mean": r}, "vader": {"mean": v}, "minilm": {"mean": m}},
        }
        for w, r, v, m in rows
    ]
    return SimpleNamespace(points=points)


def test_lambda_star_is_the_best_reward_before_the_judges_fall() -> None:
    # The reward keeps rising; both judges fall at λ = 2, so λ* = 1.
    choice = choose_weight(
        _metrics(
            [(0.25, 0.1, 0.2, 0.1), (0.5, 0.3, 0.3, 0.2), (1, 0.5, 0.35, 0.2), (2, 0.9, 0.1, 0.1)]
        )
    )
    assert choice.weight == 1 and choice.fell_at == 2
    # One judge falling is not a fall; the best reward over the whole sweep wins.
    choice = choose_weight(
        _metrics([(0.5, 0.3, 0.3, 0.2), (1, 0.6, 0.2, 0.3), (2, 0.4, 0.25, 0.35)])
    )
    assert choice.weight == 1 and choice.fell_at is None
    assert "never both fall" in choice.reason


@pytest.mark.model
def test_reproduce_runs_resumes_and_reports(tiny_lm, tiny_rm, tmp_path: Path) -> None:
    from rshape_fast.eval.reproduce import reproduce

    kwargs: dict[str, Any] = dict(
        prompts=2,
        max_new_tokens=3,
        weights=(0.5, 1.0),
        sweep_prompts=6,
        rm_dtype=None,
        cd_prompts=3,
        output=tmp_path / "docs" / "reproduction.md",
        figures_dir=tmp_path / "docs" / "figures",
        run_dir=tmp_path / "runs",
        progress=False,
        lm=tiny_lm,
        rm={"sentiment": tiny_rm, "chat-judge": tiny_rm, "ensemble": [tiny_rm, tiny_rm]},
    )
    report = reproduce(**kwargs).read_text(encoding="utf-8")
    for suite in SUITES:
        for stage in ("sweep", "test"):
            assert (tmp_path / "runs" / suite / f"{stage}.jsonl").is_file()
    lines = (tmp_path / "runs/sentiment/test.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines[1:]]
    auto = [r for r in rows if r["knobs"]["reward_scale"] == "auto"]
    assert auto and all(r["extras"]["reward_scale"] > 0 for r in auto)
    for head in ("raw", "srs", "srs-auto"):
        config = json.loads((tmp_path / f"runs/sentiment/cd/{head}/config.json").read_text())
        assert (config["train"]["reward_scale"] is not None) == (head == "srs-auto")
    assert report.count("(complete:") == 7 and "not run" not in report.split("## Protocol")[0]
    assert "SRS (auto) > raw ARGS, steering reward" in report and "λ* =" in report
    for png in ("toy_soft_curve", "sentiment_sweep", "sentiment_test", "ensemble_test"):
        assert (tmp_path / "docs/figures" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    # A second invocation decodes nothing and renders the same numbers.
    sizes = {p: p.stat().st_size for p in (tmp_path / "runs").rglob("*.jsonl")}
    again = reproduce(**kwargs).read_text(encoding="utf-8")
    assert {p: p.stat().st_size for p in sizes} == sizes
    assert again == report
    # A clean clone has the run files and not the judges' sidecars (.gitignore): the report
    # and its figures come out byte for byte the same.
    figures = {p: p.read_bytes() for p in (tmp_path / "docs/figures").glob("*.png")}
    for sidecar in (tmp_path / "runs").rglob("*.judges.json"):
        sidecar.unlink()
    clean = reproduce(**{**kwargs, "report_only": True}).read_text(encoding="utf-8")
    assert clean.replace(" --report-only", "") == report
    assert {p: p.read_bytes() for p in figures} == figures


def test_bad_prompt_ids_and_suites_are_refused(tmp_path: Path) -> None:
    from rshape_fast.errors import ParameterError
    from rshape_fast.eval.grid import EvalConfig
    from rshape_fast.eval.reproduce import reproduce

    with pytest.raises(ParameterError, match="prompt_ids: must name at least one"):
        EvalConfig(prompt_ids=[])
    with pytest.raises(ParameterError, match="'review-001' is not a prompt of split 'test'"):
        EvalConfig(split="test", prompt_ids=["review-001"]).load_prompts()
    with pytest.raises(ParameterError, match="unknown suite 'nope'"):
        reproduce(suites=["nope"], output=tmp_path / "r.md", report_only=True)


def test_workers_go_to_run_eval_and_the_driver_loads_no_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rshape_fast.errors import ParameterError
    from rshape_fast.eval import reproduce as module
    from rshape_fast.eval import tasks
    from rshape_fast.eval.run_loop import run_eval

    calls: list[dict[str, Any]] = []

    def fake_run_eval(config: Any, path: Path, **kwargs: Any) -> None:
        calls.append({"stage": Path(path).stem, **kwargs})

    def no_local_models(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a distributed reproduction loaded models in the driver")

    monkeypatch.setattr(module, "run_eval", fake_run_eval)
    monkeypatch.setattr(tasks, "load_models", no_local_models)
    paths = dict(
        output=tmp_path / "r.md", figures_dir=tmp_path / "figures", run_dir=tmp_path / "runs"
    )
    module.reproduce(suites=["sentiment"], workers=2, progress=False, **paths)
    # The fake wrote no sweep rows, so no λ* and nothing after the sweep.
    assert [(c["stage"], c["workers"], c["lm"], c["rm"]) for c in calls] == [
        ("sweep", 2, None, None)
    ]
    # Model objects given with workers reach run_eval, which refuses them.
    monkeypatch.setattr(module, "run_eval", run_eval)
    with pytest.raises(ParameterError, match="model objects cannot be passed"):
        module.reproduce(suites=["sentiment"], address="ray://x:1", lm=object(), **paths)


@pytest.mark.model
def test_the_committed_report_is_what_the_committed_run_files_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/reproduction.md is `rshape reproduce --report-only` of results/reproduce, byte
    for byte: a report edited by hand, or run files committed without the report they
    give, fail here."""
    from rshape_fast.eval.reproduce import reproduce

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the report names its run folder as given: results/reproduce
    report = reproduce(
        report_only=True,
        output=tmp_path / "reproduction.md",
        figures_dir=tmp_path / "figures",
        progress=False,
    )
    assert report.read_text(encoding="utf-8") == (root / "docs/reproduction.md").read_text(
        encoding="utf-8"
    )
