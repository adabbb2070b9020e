"""Training an autoregressive reward model (ARM) for GenARM from preference pairs.

**Pairs.** A `rshape cd-data` directory holds M base samples per train prompt, each scored
by the steering reward model. Within a prompt the samples are sorted by reward and the i-th
best is paired with the i-th worst (i < M/2): every sample is used once, and each pair has
the largest reward gap left. A pair whose gap is below `min_gap` is dropped (the judge
cannot order it). Prompts, not pairs, are split into train and held out, so held-out
accuracy is measured on prompts the ARM never saw.

**Loss** (GenARM, Xu et al. 2025): the ARM's reward of a response is
`r(x, y) = β_r Σ_t log π_ARM(y_t | x, y_<t)`, and a pair (w, l) costs
`−log σ(r(x, y_w) − r(x, y_l))`.

**What is trained.** The ARM starts from the LM (so it shares its tokenizer, as GenARM
decoding requires) and only its top `train_layers` decoder layers and final norm are
trained; the embeddings (tied to the output layer in SmolLM2) and the layers below stay
frozen. On a 2-core CPU this is what fits: backpropagation then stops `train_layers`
layers from the top, so a step costs about 1.3 forward passes, where full fine-tuning or
LoRA on every layer (which still backpropagates through all of them) costs about three.

**Accuracy** is the share of pairs the ARM orders as the steering reward does,
`Σ log π_ARM(y_w) > Σ log π_ARM(y_l)`, on the train and the held-out pairs, before
training (the LM itself) and after.

A run is a few minutes (`rshape arm-train` prints its progress), so it is not resumable:
an interrupted run is started again. The output folder is a Hugging Face causal-LM folder
(`load_lm` and `method="genarm", arm=FOLDER` take it) with `arm.json` (the config, the
pairs kept and the accuracies).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rshape_fast.cd.data import CDDataset, Sample
from rshape_fast.errors import InvalidInputError, ParameterError
from rshape_fast.models import LanguageModel, load_lm

__all__ = ["ArmConfig", "ArmReport", "Pair", "make_pairs", "pair_accuracy", "train_arm"]


@dataclass(frozen=True)
class ArmConfig:
    """The knobs of `train_arm`."""

    beta_r: float = 0.1
    train_layers: int = 4
    epochs: int = 2
    batch_pairs: int = 8
    lr: float = 2e-5
    min_gap: float = 0.1
    held_out: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("beta_r", "lr"):
            if not getattr(self, name) > 0:
                raise ParameterError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        for name in ("train_layers", "epochs", "batch_pairs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name}: must be an integer >= 1, got {value!r}")
        if not self.min_gap >= 0:
            raise ParameterError(f"min_gap: must be >= 0, got {self.min_gap!r}")
        if not 0 < self.held_out < 1:
            raise ParameterError(f"held_out: must be in (0, 1), got {self.held_out!r}")


@dataclass(frozen=True)
class Pair:
    """A preference pair of one prompt: response ids (as sampled, EOS included) and rewards."""

    prompt_id: str
    prompt: str
    chosen: list[int]
    rejected: list[int]
    gap: float


def make_pairs(samples: Sequence[Sample], min_gap: float) -> tuple[list[Pair], int]:
    """The pairs of one prompt's samples (see the module docstring) and how many were
    dropped for a gap below `min_gap`."""
    ranked = sorted(samples, key=lambda s: (-s.reward, s.sample))
    pairs, dropped = [], 0
    for i in range(len(ranked) // 2):
        best, worst = ranked[i], ranked[-1 - i]
        gap = best.reward - worst.reward
        if gap < min_gap:
            dropped += 1
            continue
        pairs.append(Pair(best.prompt_id, best.prompt, best.tokens, worst.tokens, gap))
    return pairs, dropped


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
    pairs: Sequence[Pair],
    prompt_ids: dict[str, list[int]],
) -> torch.Tensor:
    """Σ log π(y_w) − Σ log π(y_l) of each pair."""
    rows = [(prompt_ids[p.prompt_id], p.chosen) for p in pairs]
    rows += [(prompt_ids[p.prompt_id], p.rejected) for p in pairs]
    both = _sequence_logprobs(model, rows, lm.pad_token_id)
    return both[: len(pairs)] - both[len(pairs) :]


@torch.inference_mode()
def pair_accuracy(
    model: torch.nn.Module,
    lm: LanguageModel,
    pairs: Sequence[Pair],
    prompt_ids: dict[str, list[int]],
    batch_pairs: int = 8,
) -> float:
    """The share of pairs whose chosen response the model gives the higher log-probability."""
    if not pairs:
        return float("nan")
    right = 0
    for start in range(0, len(pairs), batch_pairs):
        right += int(
            (_margins(model, lm, pairs[start : start + batch_pairs], prompt_ids) > 0).sum()
        )
    return right / len(pairs)


@dataclass
class ArmReport:
    """What a training run did and how well the ARM orders pairs."""

    train_pairs: int
    held_out_pairs: int
    dropped_pairs: int
    accuracy_before: dict[str, float]
    accuracy_after: dict[str, float]
    losses: list[float]
    seconds: float


def train_arm(
    data_dir: str | Path,
    output: str | Path,
    config: ArmConfig = ArmConfig(),
    *,
    lm_name: str | None = None,
    device: str = "cpu",
    progress: Callable[[str], None] = print,
) -> ArmReport:
    """Train an ARM from the pairs of a cd-data directory and save it to `output`."""
    started = time.perf_counter()
    data = CDDataset(data_dir)
    lm = load_lm(lm_name or data.config.lm, device=device)
    pairs: list[Pair] = []
    dropped = 0
    for samples in data.by_prompt().values():
        kept, lost = make_pairs(samples, config.min_gap)
        pairs.extend(kept)
        dropped += lost
    prompt_ids_list = sorted({p.prompt_id for p in pairs})
    if len(prompt_ids_list) < 2:
        raise InvalidInputError(f"{data_dir}: pairs from fewer than two prompts; collect more data")
    rng = random.Random(config.seed)
    rng.shuffle(prompt_ids_list)
    held = set(prompt_ids_list[: max(1, round(config.held_out * len(prompt_ids_list)))])
    train = [p for p in pairs if p.prompt_id not in held]
    held_out = [p for p in pairs if p.prompt_id in held]
    chat = data.config.chat_template
    prompt_ids = {p.prompt_id: lm.encode(p.prompt, chat_template=chat) for p in pairs}
    progress(
        f"arm-train: {len(train)} train and {len(held_out)} held-out pairs from "
        f"{len(prompt_ids_list)} prompts ({dropped} pairs dropped: reward gap < {config.min_gap})"
    )
    model = lm.model
    before = {
        "train": pair_accuracy(model, lm, train, prompt_ids, config.batch_pairs),
        "held_out": pair_accuracy(model, lm, held_out, prompt_ids, config.batch_pairs),
    }
    progress(f"arm-train: accuracy before training {before}")
    trained = _trainable(model, config.train_layers)
    optimizer = torch.optim.AdamW(trained, lr=config.lr)
    losses: list[float] = []
    model.train()
    for epoch in range(config.epochs):
        order = list(range(len(train)))
        rng.shuffle(order)
        for step, start in enumerate(range(0, len(order), config.batch_pairs)):
            batch = [train[i] for i in order[start : start + config.batch_pairs]]
            margin = _margins(model, lm, batch, prompt_ids)
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
    after = {
        "train": pair_accuracy(model, lm, train, prompt_ids, config.batch_pairs),
        "held_out": pair_accuracy(model, lm, held_out, prompt_ids, config.batch_pairs),
    }
    progress(f"arm-train: accuracy after training {after}")
    report = ArmReport(
        train_pairs=len(train),
        held_out_pairs=len(held_out),
        dropped_pairs=dropped,
        accuracy_before=before,
        accuracy_after=after,
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
