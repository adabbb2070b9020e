"""Training an autoregressive reward model (ARM) for GenARM from preference pairs.

**Pairs.** A `rshape cd-data` directory holds M base samples per train prompt, each scored
by the steering reward model. Every two samples of a prompt whose rewards differ by at least
`min_gap` are a pair, the better one chosen: M = 10 gives up to 45 pairs a prompt, and each
response is scored once a step however many pairs it is in, so all pairs cost what M/2
disjoint ones would. Closer pairs are dropped (the judge cannot order them). Prompts, not
pairs, are split into train and held out, so held-out accuracy is measured on prompts the
ARM never saw. A step takes `batch_prompts` prompts and all their pairs.

**Loss** (GenARM, Xu et al. 2025): the ARM's reward of a response is
`r(x, y) = β_r Σ_t log π_ARM(y_t | x, y_<t)`, and a pair (w, l) costs
`−log σ(r(x, y_w) − r(x, y_l))`.

**What is trained.** The ARM starts from the LM (so it shares its tokenizer, as GenARM
decoding requires) and only its top `train_layers` decoder layers and final norm are
trained; the embeddings (tied to the output layer in SmolLM2) and the layers below stay
frozen. On a 2-core CPU this is what fits: backpropagation then stops `train_layers`
layers from the top, so a step costs about 1.3 forward passes, where full fine-tuning or
LoRA on every layer (which still backpropagates through all of them) costs about three.

**Accuracy** is the share of a prompt's pairs the ARM orders as the steering reward does,
`Σ log π_ARM(y_w) > Σ log π_ARM(y_l)`, averaged over prompts with a 95 % bootstrap interval
over prompts (pairs of one prompt share their responses, so they are not independent), on
the held-out prompts and on as many train prompts (drawn with the seed), before training
(the LM itself) and after; with the paired per-prompt change on the held-out prompts.

A run is about twelve minutes here (`rshape arm-train` prints its progress), so it is not
resumable: an interrupted run is started again. The output folder is a Hugging Face
causal-LM folder (`load_lm` and `method="genarm", arm=FOLDER` take it) with `arm.json` (the
config, the pairs kept and the accuracies).
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from rshape_fast.cd.data import CDDataset, Sample
from rshape_fast.errors import InvalidInputError, ParameterError
from rshape_fast.eval.metrics import bootstrap_ci
from rshape_fast.genarm.config import ArmConfig
from rshape_fast.models import LanguageModel, load_lm

__all__ = [
    "ArmConfig",
    "ArmReport",
    "Interval",
    "PromptPairs",
    "make_pairs",
    "pair_accuracy",
    "train_arm",
]


@dataclass(frozen=True)
class PromptPairs:
    """One prompt's scored responses (as sampled, EOS included) and the pairs among them:
    `(chosen, rejected)` indices into `responses`."""

    prompt_id: str
    prompt: str
    responses: list[list[int]]
    pairs: list[tuple[int, int]]


def make_pairs(samples: Sequence[Sample], min_gap: float) -> tuple[PromptPairs, int]:
    """Every pair of one prompt's samples whose rewards differ by at least `min_gap` (and
    by more than 0), the better one chosen; and how many pairs were dropped as closer."""
    rewards = [s.reward for s in samples]
    pairs, dropped = [], 0
    for i, j in itertools.combinations(range(len(samples)), 2):
        w, l_ = (i, j) if rewards[i] >= rewards[j] else (j, i)
        gap = rewards[w] - rewards[l_]
        if gap > 0 and gap >= min_gap:
            pairs.append((w, l_))
        else:
            dropped += 1
    first = samples[0]
    group = PromptPairs(first.prompt_id, first.prompt, [s.tokens for s in samples], pairs)
    return group, dropped


def _sequence_logprobs(
    model: torch.nn.Module, rows: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> torch.Tensor:
    """Σ_t log π(y_t | x, y_<t) of each `(prompt ids, response ids)`, right-padded."""
    width = max(len(x) + len(y) for x, y in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    target = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x) + len(y)] = torch.tensor(x + y)
        mask[i, : len(x) + len(y)] = 1
        target[i, len(x) : len(x) + len(y)] = True
    device = next(model.parameters()).device
    ids, mask, target = ids.to(device), mask.to(device), target.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    logprobs = torch.log_softmax(logits, dim=-1).gather(2, ids[:, 1:, None]).squeeze(-1)
    return (logprobs * target[:, 1:]).sum(-1)


def _margins(
    model: torch.nn.Module,
    lm: LanguageModel,
    groups: Sequence[PromptPairs],
    prompt_ids: dict[str, list[int]],
) -> list[torch.Tensor]:
    """Σ log π(y_w) − Σ log π(y_l) of every pair, one tensor a prompt (every group has
    pairs). Each response is scored once, however many pairs it is in."""
    rows = [(prompt_ids[g.prompt_id], y) for g in groups for y in g.responses]
    scores = _sequence_logprobs(model, rows, lm.pad_token_id)
    out, start = [], 0
    for g in groups:
        own = scores[start : start + len(g.responses)]
        start += len(g.responses)
        pairs = torch.tensor(g.pairs, device=own.device)
        out.append(own[pairs[:, 0]] - own[pairs[:, 1]])
    return out


@torch.inference_mode()
def pair_accuracy(
    model: torch.nn.Module,
    lm: LanguageModel,
    groups: Sequence[PromptPairs],
    prompt_ids: dict[str, list[int]],
    batch_prompts: int = 2,
) -> list[float]:
    """For each prompt with pairs, the share of its pairs whose chosen response the model
    gives the higher log-probability."""
    groups = [g for g in groups if g.pairs]
    shares = []
    for start in range(0, len(groups), batch_prompts):
        for margin in _margins(model, lm, groups[start : start + batch_prompts], prompt_ids):
            shares.append(float((margin > 0).float().mean()))
    return shares


Interval = tuple[float, float, float]
"""`(mean, low, high)`: a mean over prompts and its 95 % bootstrap interval."""


@dataclass
class ArmReport:
    """What a training run did and how well the ARM orders pairs. Accuracies are means over
    prompts of `pair_accuracy` with their intervals, before training (the LM itself) and
    after; `held_out_gain` is the paired per-prompt change on the held-out prompts, and
    `held_out_by_epoch` the held-out mean after each epoch."""

    train_prompts: int
    held_out_prompts: int
    train_pairs: int
    held_out_pairs: int
    dropped_pairs: int
    accuracy_before: dict[str, Interval]
    accuracy_after: dict[str, Interval]
    held_out_gain: Interval
    held_out_by_epoch: list[float]
    losses: list[float]
    seconds: float


def train_arm(
    data_dir: str | Path,
    output: str | Path,
    config: ArmConfig | None = None,
    *,
    lm_name: str | None = None,
    device: str = "cpu",
    progress: Callable[[str], None] = print,
) -> ArmReport:
    """Train an ARM from the pairs of a cd-data directory and save it to `output`
    (`config` None: `ArmConfig()`'s defaults)."""
    config = config or ArmConfig()
    started = time.perf_counter()
    data = CDDataset(data_dir, hidden=False)
    lm = load_lm(lm_name or data.config.lm, device=device)
    groups: list[PromptPairs] = []
    dropped = 0
    for samples in data.by_prompt().values():
        group, lost = make_pairs(samples, config.min_gap)
        dropped += lost
        if group.pairs:
            groups.append(group)
    if len(groups) < 2:
        raise InvalidInputError(f"{data_dir}: pairs from fewer than two prompts; collect more data")
    prompts = sorted(g.prompt_id for g in groups)
    rng = random.Random(config.seed)
    rng.shuffle(prompts)
    held_ids = set(prompts[: max(1, round(config.held_out * len(prompts)))])
    train = [g for g in groups if g.prompt_id not in held_ids]
    held_out = [g for g in groups if g.prompt_id in held_ids]
    chat = data.config.chat_template
    prompt_ids = {g.prompt_id: lm.encode(g.prompt, chat_template=chat) for g in groups}
    pairs_in = {
        name: sum(len(g.pairs) for g in part)
        for name, part in (("train", train), ("held_out", held_out))
    }
    progress(
        f"arm-train: {pairs_in['train']} train pairs from {len(train)} prompts, "
        f"{pairs_in['held_out']} held-out pairs from {len(held_out)} prompts ({dropped} pairs "
        f"dropped: reward gap < {config.min_gap})"
    )
    model = lm.model
    # Train accuracy is measured on as many train prompts as are held out: both figures
    # then have the same precision, and the evaluation costs far less than a pass over
    # every train prompt.
    train_sample = rng.sample(train, min(len(train), len(held_out)))

    def shares() -> dict[str, list[float]]:
        return {
            "train": pair_accuracy(model, lm, train_sample, prompt_ids, config.batch_prompts),
            "held_out": pair_accuracy(model, lm, held_out, prompt_ids, config.batch_prompts),
        }

    before = shares()
    progress(f"arm-train: accuracy before training {_format(before)}")
    trained = _trainable(model, config.train_layers)
    optimizer = torch.optim.AdamW(trained, lr=config.lr)
    losses: list[float] = []
    by_epoch: list[float] = []
    for epoch in range(config.epochs):
        model.train()
        order = list(train)
        rng.shuffle(order)
        for step, start in enumerate(range(0, len(order), config.batch_prompts)):
            batch = order[start : start + config.batch_prompts]
            margin = torch.cat(_margins(model, lm, batch, prompt_ids))
            loss = -torch.nn.functional.logsigmoid(config.beta_r * margin).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if step % 10 == 0:
                progress(
                    f"arm-train: epoch {epoch + 1}/{config.epochs} step {step} loss {loss:.4f}"
                )
        model.eval()
        if epoch + 1 < config.epochs:  # the last epoch's is the "after" below
            shares_now = pair_accuracy(model, lm, held_out, prompt_ids, config.batch_prompts)
            by_epoch.append(float(np.mean(shares_now)))
            progress(f"arm-train: epoch {epoch + 1} held-out accuracy {by_epoch[-1]:.3f}")
    after = shares()
    by_epoch.append(float(np.mean(after["held_out"])))
    progress(f"arm-train: accuracy after training {_format(after)}")
    gain = np.subtract(after["held_out"], before["held_out"])
    report = ArmReport(
        train_prompts=len(train),
        held_out_prompts=len(held_out),
        train_pairs=pairs_in["train"],
        held_out_pairs=pairs_in["held_out"],
        dropped_pairs=dropped,
        accuracy_before={name: bootstrap_ci(v) for name, v in before.items()},
        accuracy_after={name: bootstrap_ci(v) for name, v in after.items()},
        held_out_gain=bootstrap_ci(gain),
        held_out_by_epoch=by_epoch,
        losses=losses,
        seconds=time.perf_counter() - started,
    )
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    lm.tokenizer.save_pretrained(out)
    meta = {
        "format": "rshape-arm",
        "lm": lm.name,
        "data": str(data_dir),
        "steering_reward": data.config.rm,
        "config": asdict(config),
        "report": asdict(report),
    }
    (out / "arm.json").write_text(json.dumps(meta, indent=2) + "\n")
    return report


def _format(shares: dict[str, list[float]]) -> str:
    return ", ".join(f"{name} {np.mean(v):.3f}" for name, v in shares.items())


def _trainable(model: torch.nn.Module, layers: int) -> list[torch.nn.Parameter]:
    """Freeze everything but the top `layers` decoder layers and the final norm."""
    body = getattr(model, "model", None)
    blocks = getattr(body, "layers", None)
    norm = getattr(body, "norm", None)
    if blocks is None or norm is None:
        raise ParameterError("arm-train needs a decoder LM with `model.layers` and `model.norm`")
    if layers > len(blocks):
        raise ParameterError(f"train_layers: the LM has {len(blocks)} layers, got {layers}")
    for param in model.parameters():
        param.requires_grad_(False)
    trained = [p for block in blocks[len(blocks) - layers :] for p in block.parameters()]
    trained += list(norm.parameters())
    for param in trained:
        param.requires_grad_(True)
    return trained
