"""`rshape arm-train`: end to end on tiny random models (cd-data samples, pairs, training,
the saved ARM decoding with `method="genarm"`), and on real rewards: SmolLM2-135M-Instruct's
samples scored by the sentiment judge, from the reproduction's committed CD index."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import rshape_fast as rf
from rshape_fast.cd.data import CDDataConfig, collect
from rshape_fast.genarm.train import ArmConfig, train_arm
from rshape_fast.models import load_lm

PROMPTS = [
    (f"p{i}", text)
    for i, text in enumerate(
        [
            "Tell me about your day.",
            "What is a good breakfast?",
            "Describe the sea.",
            "Write about rain.",
            "Name a fruit.",
            "How are you?",
            "Describe a cat.",
            "Say hello.",
        ]
    )
]


def test_arm_train_learns_its_pairs_and_the_arm_decodes(tmp_path, save_tiny_causal_lm, tiny_rm):
    folder = save_tiny_causal_lm(tmp_path / "lm", seed=11)
    lm = load_lm(folder)
    data = tmp_path / "data"
    config = CDDataConfig(lm=folder, rm="tiny-reward", samples=6, max_new_tokens=8, dtype="float32")
    collect(data, PROMPTS, lm=lm, rm=tiny_rm, config=config, progress=False)
    report = train_arm(
        data,
        tmp_path / "arm",
        ArmConfig(train_layers=2, epochs=30, lr=1e-3, min_gap=0.0, held_out=0.25),
        progress=lambda line: None,
    )
    # 6 samples a prompt: 15 pairs, each kept or dropped.
    assert report.train_pairs + report.held_out_pairs == 15 * len(PROMPTS) - report.dropped_pairs
    assert report.train_prompts + report.held_out_prompts == len(PROMPTS)
    # The loss fits the train pairs: the ARM orders more of them as the reward does.
    assert report.accuracy_after["train"][0] > report.accuracy_before["train"][0]
    assert report.accuracy_after["train"][0] >= 0.9
    meta = json.loads((tmp_path / "arm" / "arm.json").read_text())
    assert meta["report"]["accuracy_after"] == {
        k: list(v) for k, v in report.accuracy_after.items()
    }
    result = rf.generate(
        ["Describe the sea."],
        lm=lm,
        rm=tiny_rm,
        method="genarm",
        arm=str(tmp_path / "arm"),
        shaping="srs",
        max_new_tokens=4,
    )
    assert result[0].extras["reward_path"] == "arm"


REPRO_CD = Path(__file__).resolve().parents[1] / "results/reproduce/sentiment/cd/data"


@pytest.mark.model
def test_the_arm_orders_held_out_pairs_better_than_chance(tmp_path):
    # A cut-down run (docs/genarm.md has the full one): the first 75 prompts of the
    # committed index, 25 of them held out, one epoch at twice the default rate; 3.5 min.
    # Measured here: held-out 0.543 [0.497, 0.593] before, 0.579 [0.534, 0.631] after,
    # paired change +0.036 [+0.012, +0.063]; train 0.562 -> 0.763.
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_bytes((REPRO_CD / "manifest.json").read_bytes())
    samples = json.loads((REPRO_CD / "manifest.json").read_text())["config"]["samples"]
    lines = (REPRO_CD / "index.jsonl").read_text().splitlines(keepends=True)
    (data / "index.jsonl").write_text("".join(lines[: 75 * samples]))
    report = train_arm(
        data,
        tmp_path / "arm",
        ArmConfig(epochs=1, lr=1e-4, held_out=1 / 3),
        progress=lambda line: None,
    )
    assert (report.train_prompts, report.held_out_prompts) == (50, 25)
    # Better than chance: the 95 % interval over held-out prompts lies above 1/2 ...
    assert report.accuracy_after["held_out"][1] > 0.5, report
    # ... and training moved the held-out ordering up from the LM's own.
    assert report.held_out_gain[0] > 0, report


def test_arm_train_command_refuses_a_folder_without_data(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rshape_fast.cli",
            "arm-train",
            "--data",
            str(tmp_path),
            "-o",
            str(tmp_path / "arm"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "not a cd-data directory" in done.stderr.strip().splitlines()[-1]
