"""`rshape arm-train` end to end on tiny random models: cd-data samples, pairs, training,
the saved ARM decoding with `method="genarm"`. (The real ARM's accuracies, from a run on
the default models, are in docs/genarm.md: a run is ten minutes, too long for the suite.)"""

from __future__ import annotations

import json
import subprocess
import sys

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
    assert report.train_pairs + report.held_out_pairs == 3 * len(PROMPTS) - report.dropped_pairs
    # The loss fits the train pairs: the ARM orders more of them as the reward does.
    assert report.accuracy_after["train"] > report.accuracy_before["train"]
    assert report.accuracy_after["train"] >= 0.9
    meta = json.loads((tmp_path / "arm" / "arm.json").read_text())
    assert meta["report"]["accuracy_after"] == report.accuracy_after
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
