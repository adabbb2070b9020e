"""Controlled decoding: data collection and resume, value-head training, `method="cd"`.

Real-model tests share one small collection (3 prompts, M = 3, 16 tokens); one test
collects 32 prompts × 8 samples to show a head learns the real reward (about 2 minutes).
Training mechanics run on the tiny random LM.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rshape_fast.cd import (
    CDDataConfig,
    CDDataset,
    DataConfigError,
    TrainConfig,
    collect,
    load_value_head,
    train_value_head,
)
from rshape_fast.cd.cli import add_cd_commands
from rshape_fast.cd.data import check_resumable
from rshape_fast.cd.train import shaped_targets
from rshape_fast.decoding import generate
from rshape_fast.decoding.lm_state import LMState
from rshape_fast.errors import InvalidInputError, ModelError, ParameterError
from rshape_fast.models import TextRewardModel
from rshape_fast.prompts import load_prompts

SMALL = CDDataConfig(samples=3, max_new_tokens=16)


class Interrupted(Exception):
    """Stands in for a crash or Ctrl-C between two prompts."""


def _train_prompts(n: int) -> list[tuple[str, str]]:
    return [(p.id, p.text) for p in load_prompts(split="train", limit=n)]


@pytest.fixture(scope="module")
def real_data(tmp_path_factory, lm, rm):
    """A 3-prompt collection made in two runs: interrupted after prompt 1, then resumed.

    Returns the directory, the prompts and both runs' reports/ids.
    """
    path = tmp_path_factory.mktemp("cd") / "data"
    prompts = _train_prompts(3)
    first_ids: list[str] = []

    def stop_after_one(pid: str) -> None:
        first_ids.append(pid)
        raise Interrupted

    with pytest.raises(Interrupted):
        collect(path, prompts, lm=lm, rm=rm, config=SMALL, progress=False, on_prompt=stop_after_one)
    # A crash while appending the next prompt leaves a torn line and an orphan shard.
    with open(path / "index.jsonl", "a", encoding="utf-8") as f:
        f.write('{"prompt_id": "' + prompts[1][0] + '", "sample": 0, "tok')
    np.save(path / "shards" / "00001.npy", np.zeros((2, 2), np.float16))
    resumed = collect(path, prompts, lm=lm, rm=rm, config=SMALL, progress=False)
    return path, prompts, first_ids, resumed


@pytest.mark.model
def test_cd_data_resumes_without_recomputing(real_data, lm, rm):
    path, prompts, first_ids, resumed = real_data
    ids = [pid for pid, _ in prompts]
    assert first_ids == ids[:1]
    assert resumed.prompts_skipped == 1
    assert resumed.done_ids == ids[1:]
    # Prefill + at most 16 advances per prompt: nothing of prompt 1 was run again.
    assert 0 < resumed.lm_calls <= 2 * (1 + SMALL.max_new_tokens)

    again = collect(path, prompts, lm=lm, rm=rm, config=SMALL, progress=False)
    assert (again.prompts_done, again.prompts_skipped, again.lm_calls) == (0, 3, 0)

    data = CDDataset(path)
    groups = data.by_prompt()
    assert list(groups) == ids
    for pid, text in prompts:
        samples = groups[pid]
        assert [s.sample for s in samples] == [0, 1, 2]
        # Stored rewards are the steering reward of the stored texts.
        np.testing.assert_allclose(
            [s.reward for s in samples], rm.score([text] * 3, [s.text for s in samples]), atol=1e-4
        )
        for s in samples:
            assert 1 <= len(s.tokens) <= SMALL.max_new_tokens
            assert (s.stop_reason == "eos") == (s.tokens[-1] in lm.eos_token_ids)
            hidden = data.hidden(s)
            assert hidden.shape == (len(s.tokens), lm.model.config.hidden_size)
            assert hidden.dtype == np.float16 and np.isfinite(hidden).all()
    # Samples of one prompt differ (they are sampled, not copies of one row).
    assert len({tuple(s.tokens) for s in groups[ids[0]]}) > 1


@pytest.mark.model
def test_cd_data_index_without_its_shards_is_sampled_again_the_same(real_data, tmp_path, lm, rm):
    # results/reproduce commits a collection's manifest and index, not its hidden states.
    path, prompts, _, _ = real_data
    clone = tmp_path / "data"
    clone.mkdir()
    for name in ("manifest.json", "index.jsonl"):
        (clone / name).write_bytes((path / name).read_bytes())
    assert CDDataset(clone).samples == []
    # Tokens and rewards alone (what GenARM's training reads) need no shards.
    index_only = CDDataset(clone, hidden=False)
    assert index_only.samples == CDDataset(path).samples
    with pytest.raises(InvalidInputError, match="hidden=False"):
        index_only.hidden(index_only.samples[0])
    redone = collect(clone, prompts, lm=lm, rm=rm, config=SMALL, progress=False)
    assert redone.done_ids == [pid for pid, _ in prompts]
    assert (clone / "index.jsonl").read_bytes() == (path / "index.jsonl").read_bytes()
    first = CDDataset(path).samples[0]
    np.testing.assert_array_equal(CDDataset(clone).hidden(first), CDDataset(path).hidden(first))


@pytest.mark.model
def test_cd_data_hidden_states_are_the_lms(real_data, lm):
    path, prompts, _, _ = real_data
    data = CDDataset(path)
    sample = data.by_prompt()[prompts[0][0]][1]
    ids = lm.encode(prompts[0][1]) + sample.tokens
    with torch.inference_mode():
        out = lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    expected = out.hidden_states[-1][0, -len(sample.tokens) :].numpy()
    # float16 storage: relative precision ~1e-3.
    np.testing.assert_allclose(data.hidden(sample), expected, rtol=2e-3, atol=2e-2)


@pytest.mark.model
def test_cd_data_refuses_a_config_change(real_data, lm, rm):
    path, prompts, _, _ = real_data
    changed = CDDataConfig(samples=4, max_new_tokens=16)
    with pytest.raises(DataConfigError, match="samples: 3 -> 4"):
        check_resumable(path, changed)
    with pytest.raises(DataConfigError, match="samples: 3 -> 4"):
        collect(path, prompts, lm=lm, rm=rm, config=changed, progress=False)
    check_resumable(path, SMALL)
    check_resumable(path, changed, overwrite=True)
    with pytest.raises(ValueError, match="different text"):
        collect(path, [(prompts[0][0], "Another text.")], lm=lm, rm=rm, config=SMALL)
    assert json.loads((path / "manifest.json").read_text())["config"]["samples"] == 3


@pytest.fixture(scope="module")
def real_head(real_data, tmp_path_factory):
    path = real_data[0]
    out = tmp_path_factory.mktemp("cd") / "head"
    config = TrainConfig(shaping="srs", max_epochs=20, patience=20, val_fraction=0.34)
    return out, train_value_head(path, out, config, progress=False)


@pytest.mark.model
def test_value_head_trains_and_round_trips(real_data, real_head, lm):
    out, head = real_head
    metrics = head.config["metrics"]
    assert head.config["lm"] == lm.name and head.config["hidden_size"] == 576
    assert head.config["train"]["shaping"] == "srs" and head.config["train"]["bound"] == 15.0
    assert (metrics["train_prompts"], metrics["val_prompts"]) == (2, 1)
    assert metrics["epochs"] == 20 and 0 <= metrics["best_epoch"] <= 20
    assert metrics["val_constant_loss"] > 0 and np.isfinite(metrics["val_loss"])
    # Targets: per prompt, SRS-shaped rewards in [0, B] in the same order as the rewards.
    for samples in CDDataset(real_data[0]).by_prompt().values():
        rewards = np.array([s.reward for s in samples])
        shaped = shaped_targets(rewards, TrainConfig())
        assert ((shaped >= 0) & (shaped <= 15.0)).all()
        assert (np.diff(shaped[np.argsort(rewards)]) >= -1e-6).all()
    loaded = load_value_head(out)
    data = CDDataset(real_data[0])
    h = torch.from_numpy(data.hidden(data.samples[0]).astype(np.float32))
    with torch.inference_mode():
        torch.testing.assert_close(loaded(h), head(h))
    assert json.loads((out / "config.json").read_text())["metrics"] == metrics


@pytest.mark.model
def test_cached_candidate_states_equal_full_recompute(lm):
    prompts = ["Tell me about your new phone.", "Write a short review of a restaurant you liked."]
    state = LMState(lm, [lm.encode(p) for p in prompts])  # different lengths: left padding
    seqs = [lm.encode(p) for p in prompts]
    (logits,) = state.prefill()
    for _ in range(2):
        token = logits.argmax(-1)
        for seq, t in zip(seqs, token.tolist(), strict=True):
            seq.append(t)
        (logits,) = state.advance(token)
    cands = torch.topk(logits, 4, dim=-1).indices
    out = state.forward_blocks(
        cands, 1, same_position=True, logits_to_keep=4, output_hidden_states=True
    )
    cand_logits, cand_hidden = out.logits.float(), out.hidden_states[-1].float()
    with torch.inference_mode():
        for r, seq in enumerate(seqs):
            for j in range(4):
                ids = torch.tensor([[*seq, int(cands[r, j])]])
                out = lm.model(input_ids=ids, output_hidden_states=True)
                torch.testing.assert_close(
                    cand_hidden[r, j], out.hidden_states[-1][0, -1], atol=1e-4, rtol=1e-4
                )
                torch.testing.assert_close(
                    cand_logits[r, j], out.logits[0, -1], atol=2e-4, rtol=1e-4
                )
    # Keeping a candidate's KV column is the same as having run that token.
    chosen = torch.tensor([3, 1])
    state.keep_column(4, chosen)
    nxt = cand_logits[torch.arange(2), chosen].argmax(-1)
    (after,) = state.advance(nxt)
    with torch.inference_mode():
        for r, seq in enumerate(seqs):
            ids = torch.tensor([[*seq, int(cands[r, chosen[r]]), int(nxt[r])]])
            torch.testing.assert_close(
                after[r], lm.model(input_ids=ids).logits[0, -1], atol=2e-4, rtol=1e-4
            )


@pytest.mark.model
def test_cd_with_zero_weight_is_base_greedy(real_head, lm, rm):
    prompts = [text for _, text in _train_prompts(3)]
    base = generate(prompts, lm=lm, method="base", max_new_tokens=16)
    cd = generate(
        prompts,
        lm=lm,
        rm=rm,
        method="cd",
        weight=0.0,
        value_head=str(real_head[0]),
        max_new_tokens=16,
    )
    assert [r.token_ids for r in cd] == [r.token_ids for r in base]
    for r in cd:
        # Every step runs k = 10 candidate tokens; the chosen one needs no extra forward.
        prompt_len = len(lm.encode(r.prompt))
        assert r.cost.lm_tokens == prompt_len + 10 * r.cost.generated_tokens
        assert r.cost.lm_calls == 1 + r.cost.generated_tokens
        assert r.cost.rm_tokens == 10 * r.cost.generated_tokens and r.reward is not None


@pytest.mark.model
def test_cd_guidance_and_errors(real_head, lm, rm):
    prompts = [text for _, text in _train_prompts(2)]
    head = str(real_head[0])
    knobs = dict(method="cd", weight=50.0, value_head=head, max_new_tokens=8, stop=(".",))
    steered = generate(prompts, lm=lm, rm=rm, **knobs)
    batch1 = generate(prompts, lm=lm, rm=rm, batch_size=1, **knobs)
    assert [r.token_ids for r in steered] == [r.token_ids for r in batch1]
    assert all(r.stop_reason in ("eos", "stop_string", "length") for r in steered)
    assert all("." not in r.text for r in steered if r.stop_reason == "stop_string")
    with pytest.raises(ParameterError, match="value_head"):
        generate(prompts, lm=lm, rm=rm, method="cd", max_new_tokens=4)
    with pytest.raises(ModelError, match="not a value-head folder"):
        generate(prompts, lm=lm, rm=rm, method="cd", value_head="/nonexistent", max_new_tokens=4)


@pytest.mark.model
def test_value_head_learns_real_rewards_on_held_out_prompts(tmp_path, lm, rm):
    # 32 train prompts × 8 samples × 24 tokens: enough for the raw head (measured: 0.311
    # vs constant 0.388); per-prompt SRS targets need more data (README: 126 × 10).
    config = CDDataConfig(samples=8, max_new_tokens=24)
    collect(tmp_path / "d", _train_prompts(32), lm=lm, rm=rm, config=config, progress=False)
    head = train_value_head(
        tmp_path / "d", tmp_path / "h", TrainConfig(shaping="raw"), progress=False
    )
    m = head.config["metrics"]
    assert (m["train_prompts"], m["val_prompts"]) == (26, 6)
    assert m["best_epoch"] > 0 and m["val_loss"] < 0.9 * m["val_constant_loss"], m
    # The head standardises its input with the training tokens' statistics, saved with it.
    assert not torch.equal(head.input_scale, torch.ones_like(head.input_scale))
    torch.testing.assert_close(load_value_head(tmp_path / "h").input_mean, head.input_mean)


# ---------------------------------------------------------------------------------------
# Tiny random LM: training mechanics, overwrite, bad input.
# ---------------------------------------------------------------------------------------


def _embedding_reward(tiny_lm):
    """A reward that is a fixed linear function of the response's last token embedding,
    so a value head on hidden states can learn it and generalise to unseen prompts."""
    emb = tiny_lm.model.get_input_embeddings().weight.detach()
    direction = torch.randn(emb.shape[1], generator=torch.Generator().manual_seed(3))
    direction /= float((emb @ direction).std())  # rewards of unit scale
    tok = tiny_lm.tokenizer

    def reward(responses):
        out = []
        for text in responses:
            ids = tok(text, add_special_tokens=False)["input_ids"] or [tok.eos_token_id]
            out.append(float(emb[ids[-1]] @ direction))
        return out

    return TextRewardModel(reward, name="embedding-direction")


def test_value_head_beats_constant_on_held_out_prompts(tmp_path, tiny_lm):
    config = CDDataConfig(lm="tiny", rm="embedding", samples=4, max_new_tokens=6)
    prompts = _train_prompts(30)
    report = collect(
        tmp_path / "d",
        prompts,
        lm=tiny_lm,
        rm=_embedding_reward(tiny_lm),
        config=config,
        progress=False,
    )
    assert report.prompts_done == 30 and report.samples == 120
    train = TrainConfig(shaping="raw", td_weight=0.0, max_epochs=150, patience=30, lr=3e-3)
    head = train_value_head(tmp_path / "d", tmp_path / "h", train, progress=False)
    m = head.config["metrics"]
    assert m["val_prompts"] == 6 and m["best_epoch"] > 0
    assert m["val_final_mse"] < 0.5 * m["val_constant_loss"], m
    # Shaped targets differ from raw ones but train through the same path.
    srs = train_value_head(
        tmp_path / "d", None, TrainConfig(shaping="srs", max_epochs=3), progress=False
    )
    assert srs.config["train"]["shaping"] == "srs" and srs.config["metrics"]["epochs"] == 3


def test_value_head_without_input_scaling_is_refused(tmp_path):
    # A head saved before heads standardised their input lacks the two buffers: loading it
    # must name them, not silently run unscaled.
    from safetensors.torch import load_file, save_file

    from rshape_fast.decoding.value_head import WEIGHTS_NAME, ValueHead

    ValueHead(8, 4).save(tmp_path)
    state = load_file(str(tmp_path / WEIGHTS_NAME))
    del state["input_mean"], state["input_scale"]
    save_file(state, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(ModelError, match="input_mean"):
        load_value_head(tmp_path)


def test_overwrite_and_bad_input(tmp_path, tiny_lm):
    rm = TextRewardModel(lambda r: [float(len(x)) for x in r], name="length")
    config = CDDataConfig(lm="tiny", rm="length", samples=2, max_new_tokens=3)
    prompts = _train_prompts(2)
    collect(tmp_path / "d", prompts, lm=tiny_lm, rm=rm, config=config, progress=False)
    other = CDDataConfig(lm="tiny", rm="length", samples=2, max_new_tokens=4)
    with pytest.raises(DataConfigError, match="max_new_tokens: 3 -> 4"):
        collect(tmp_path / "d", prompts, lm=tiny_lm, rm=rm, config=other, progress=False)
    redo = collect(
        tmp_path / "d", prompts, lm=tiny_lm, rm=rm, config=other, overwrite=True, progress=False
    )
    assert redo.prompts_done == 2 and CDDataset(tmp_path / "d").config == other
    assert all(len(s.tokens) <= 4 for s in CDDataset(tmp_path / "d").samples)
    with pytest.raises(ValueError, match="unique"):
        collect(tmp_path / "e", prompts * 2, lm=tiny_lm, rm=rm, config=config, progress=False)
    with pytest.raises(ParameterError, match="samples"):
        CDDataConfig(samples=1)
    with pytest.raises(ParameterError, match="shaping"):
        TrainConfig(shaping="nope")
    (tmp_path / "one").mkdir()
    collect(tmp_path / "one", prompts[:1], lm=tiny_lm, rm=rm, config=config, progress=False)
    with pytest.raises(ValueError, match="need >= 2"):
        train_value_head(tmp_path / "one", None, progress=False)


def test_cli_help_and_parsing():
    import argparse

    parser = argparse.ArgumentParser(prog="rshape")
    add_cd_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["cd-data", "--limit", "4", "-M", "3", "--max-new-tokens", "16"])
    assert (args.limit, args.samples, args.max_new_tokens, args.top_p) == (4, 3, 16, 0.9)
    args = parser.parse_args(["cd-train", "-o", "x", "--shaping", "raw", "--max-weight", "none"])
    assert args.shaping == "raw" and args.max_weight is None and args.max_exponent == 2.0
    assert args.reward_scale is None
    args = parser.parse_args(["cd-train", "-o", "x", "--reward-scale", "0.5"])
    assert args.reward_scale == 0.5
    with pytest.raises(SystemExit):
        parser.parse_args(["cd-train", "-o", "x", "--reward-scale", "big"])
    with pytest.raises(SystemExit):
        parser.parse_args(["cd-train", "--shaping", "bogus", "-o", "x"])


def test_calibrated_targets_shape_the_reward_divided_by_the_scale():
    rewards = np.array([0.1, 0.4, -0.2, 0.9, 0.3])
    calibrated = shaped_targets(rewards, TrainConfig(reward_scale=0.25))
    np.testing.assert_allclose(calibrated, shaped_targets(rewards / 0.25, TrainConfig()))
    # The calibration is what makes targets invariant to the reward's units.
    rescaled = shaped_targets(3 * rewards + 1, TrainConfig(reward_scale=0.75))
    np.testing.assert_allclose(rescaled, calibrated, rtol=1e-5)  # the core shapes in f32
    assert not np.allclose(calibrated, shaped_targets(rewards, TrainConfig()))
    for bad in (0.0, -1.0, float("nan"), "auto"):
        with pytest.raises(ParameterError, match="reward_scale"):
            TrainConfig(reward_scale=bad)  # type: ignore[arg-type]


@pytest.mark.model
def test_cd_train_reward_scale_auto_is_the_decoders_estimate(
    real_data, real_head, lm, rm, tmp_path
):
    from rshape_fast.cli import main
    from rshape_fast.decoding.calibration import resolve_reward_scale
    from rshape_fast.decoding.options import DecodingOptions

    out = tmp_path / "calibrated"
    argv = ["cd-train", "--data", str(real_data[0]), "-o", str(out), "--quiet"]
    assert (
        main([*argv, "--reward-scale", "auto", "--max-epochs", "2", "--val-fraction", "0.34"]) == 0
    )
    scale = json.loads((out / "config.json").read_text())["train"]["reward_scale"]
    assert scale == pytest.approx(
        resolve_reward_scale(DecodingOptions(reward_scale="auto"), lm, rm)
    )
    assert real_head[1].config["train"]["reward_scale"] is None
