"""Fitting the CD value head on collected data (docs/algorithms.md §4).

Targets are per-prompt shaped rewards: for each prompt, `shape_rewards` over its M sampled
rewards (divided first by `reward_scale` when one is given, the calibration of
decoding/calibration.py) with uniform probabilities and the sequence-level caps (B = 15,
β = 0.667, α = 1, spread ratio 2, exponent cap 2, no weight cap). The loss is

    MSE(V(h_last), target) + td_weight · MSE(V(h_t), V(h_{t+1}))   over adjacent tokens,

so the value at every prefix is pulled toward the value of its continuation. Prompts (not
samples) are split into train and validation so a validation prompt is never seen.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from rshape_fast.cd.data import CDDataset
from rshape_fast.decoding.value_head import ValueHead
from rshape_fast.errors import InvalidInputError, ParameterError
from rshape_fast.shaping import SCHEMES, ShapeParams, shape_rewards

# The core's sequence-level caps: CD targets shape a prompt's sampled responses.
_SEQUENCE = ShapeParams().sequence_level()


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of `train_value_head`; the shaping defaults are the CD ones
    (docs/algorithms.md §2.4) with the sequence-level caps."""

    shaping: str = "srs"
    bound: float = 15.0
    beta: float = 0.667
    alpha: float = 1.0
    spread_ratio: float = _SEQUENCE.spread_ratio
    max_weight: float | None = _SEQUENCE.max_weight
    max_exponent: float | None = _SEQUENCE.max_exponent
    cap: float = ShapeParams().cap
    # Rewards are divided by this before shaping (None: the paper's raw reward units).
    reward_scale: float | None = None
    width: int = 256
    td_weight: float = 1.0
    val_fraction: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    max_epochs: int = 200
    patience: int = 15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.shaping not in SCHEMES:
            raise ParameterError(f"shaping: unknown scheme {self.shaping!r}; one of {SCHEMES}")
        if not 0 < self.val_fraction < 1:
            raise ParameterError(f"val_fraction: must be in (0, 1), got {self.val_fraction!r}")
        for name in ("width", "batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name}: must be >= 1, got {getattr(self, name)!r}")
        for name in ("td_weight", "lr", "weight_decay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ParameterError(f"{name}: must be finite and >= 0, got {value!r}")
        scale = self.reward_scale
        if scale is not None and not (
            isinstance(scale, int | float) and math.isfinite(scale) and scale > 0
        ):
            raise ParameterError(f"reward_scale: must be None or finite and > 0, got {scale!r}")
        self.shape_params  # noqa: B018 (the core checks the shaping knobs)

    @property
    def shape_params(self) -> ShapeParams:
        """The shaping knobs of the targets (validated by the core)."""
        return ShapeParams(
            bound=self.bound,
            beta=self.beta,
            alpha=self.alpha,
            spread_ratio=self.spread_ratio,
            max_weight=self.max_weight,
            max_exponent=self.max_exponent,
            cap=self.cap,
        )


@dataclass
class Sequences:
    """Padded hidden states `[N, T, H]` (float32), lengths `[N]`, targets `[N]`."""

    hidden: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor


def shaped_targets(rewards: np.ndarray, config: TrainConfig) -> np.ndarray:
    """One prompt's M rewards → its M training targets (uniform p over the samples)."""
    if config.reward_scale is not None:
        rewards = np.asarray(rewards, dtype=np.float64) / config.reward_scale
    return np.asarray(
        shape_rewards(
            rewards,
            shaping=config.shaping,
            probs=None,
            params=config.shape_params,
        ),
        dtype=np.float64,
    )


def _load(dataset: CDDataset, prompt_ids: list[str], config: TrainConfig) -> Sequences:
    groups = dataset.by_prompt()
    rows: list[np.ndarray] = []
    targets: list[float] = []
    for pid in prompt_ids:
        samples = groups[pid]
        shard = np.load(dataset.path / samples[0].shard)
        shaped = shaped_targets(np.array([s.reward for s in samples]), config)
        for s, y in zip(samples, shaped, strict=True):
            rows.append(shard[s.offset : s.offset + s.length])
            targets.append(float(y))
    width = max(r.shape[0] for r in rows)
    hidden = torch.zeros((len(rows), width, rows[0].shape[1]), dtype=torch.float32)
    for i, r in enumerate(rows):
        hidden[i, : r.shape[0]] = torch.from_numpy(r.astype(np.float32))
    return Sequences(
        hidden=hidden,
        lengths=torch.tensor([r.shape[0] for r in rows], dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.float32),
    )


def sequence_loss(
    head: ValueHead, batch: Sequences, td_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, final-token MSE, adjacent-token MSE) of one batch of padded sequences."""
    values = head(batch.hidden)  # [N, T]
    n = values.shape[0]
    last = values[torch.arange(n), batch.lengths - 1]
    final = torch.mean((last - batch.targets) ** 2)
    # Pair (t, t+1) is real when t+1 < length; padding never enters the loss.
    steps = torch.arange(values.shape[1] - 1).unsqueeze(0)
    real = steps < (batch.lengths - 1).unsqueeze(1)
    if bool(real.any()):
        diffs = (values[:, 1:] - values[:, :-1])[real]
        adjacent = torch.mean(diffs**2)
    else:
        adjacent = values.new_zeros(())
    return final + td_weight * adjacent, final, adjacent


def _subset(data: Sequences, index: torch.Tensor) -> Sequences:
    lengths = data.lengths[index]
    width = int(lengths.max())
    return Sequences(data.hidden[index, :width], lengths, data.targets[index])


@torch.no_grad()
def _evaluate(head: ValueHead, data: Sequences, td_weight: float) -> dict[str, float]:
    head.eval()
    total, final, adjacent = sequence_loss(head, data, td_weight)
    return {"loss": float(total), "final_mse": float(final), "adjacent_mse": float(adjacent)}


def train_value_head(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
) -> ValueHead:
    """Fit a value head on the data in `data_dir`; save it to `out_dir` when given.

    The head's `config` records the LM, hidden size, shaping and its knobs, the training
    knobs and `metrics`: best validation loss, the validation loss of the best constant
    predictor (the mean training target; its adjacent term is 0), epochs and seconds.

    Raises:
        InvalidInputError: fewer than 2 finished prompts in `data_dir`.
    """
    config = config or TrainConfig()
    dataset = CDDataset(data_dir)
    prompt_ids = list(dataset.by_prompt())
    if len(prompt_ids) < 2:
        raise InvalidInputError(
            f"{data_dir}: {len(prompt_ids)} finished prompt(s); need >= 2 to hold some out"
        )
    rng = np.random.default_rng(config.seed)
    order = [prompt_ids[i] for i in rng.permutation(len(prompt_ids))]
    n_val = min(max(1, round(config.val_fraction * len(order))), len(order) - 1)
    val_ids, train_ids = order[:n_val], order[n_val:]
    train, val = _load(dataset, train_ids, config), _load(dataset, val_ids, config)

    torch.manual_seed(config.seed)
    head = ValueHead(train.hidden.shape[-1], config.width)
    real = torch.arange(train.hidden.shape[1]) < train.lengths.unsqueeze(1)
    head.fit_input_scaling(train.hidden[real])
    # Start exactly at the constant predictor (zero output weights, bias = mean target):
    # early stopping then never returns a head that is worse on validation than it.
    with torch.no_grad():
        head.output_layer.weight.zero_()
        head.output_layer.bias.fill_(float(train.targets.mean()))
    optimiser = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    constant = float(train.targets.mean())
    baseline = float(torch.mean((val.targets - constant) ** 2))
    best = _evaluate(head, val, config.td_weight)
    best_state = {k: v.clone() for k, v in head.state_dict().items()}
    best_epoch, stale, epochs = 0, 0, 0
    generator = torch.Generator().manual_seed(config.seed)
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.max_epochs, desc=f"cd-train/{config.shaping}", unit="epoch")
    try:
        for epoch in range(1, config.max_epochs + 1):
            head.train()
            perm = torch.randperm(train.targets.shape[0], generator=generator)
            for i in range(0, len(perm), config.batch_size):
                loss, _, _ = sequence_loss(
                    head, _subset(train, perm[i : i + config.batch_size]), config.td_weight
                )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            epochs = epoch
            current = _evaluate(head, val, config.td_weight)
            if current["loss"] < best["loss"]:
                best, best_epoch, stale = current, epoch, 0
                best_state = {k: v.clone() for k, v in head.state_dict().items()}
            else:
                stale += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(val=f"{current['loss']:.4f}", best=f"{best['loss']:.4f}")
            if stale >= config.patience:
                break
    finally:
        if bar is not None:
            bar.close()
    head.load_state_dict(best_state)
    head.eval()
    train_metrics = _evaluate(head, train, config.td_weight)
    head.config.update(
        {
            "kind": "rshape-cd-value-head",
            "lm": dataset.config.lm,
            "rm": dataset.config.rm,
            "data": asdict(dataset.config),
            "train": asdict(config),
            "metrics": {
                "val_loss": best["loss"],
                "val_final_mse": best["final_mse"],
                "val_adjacent_mse": best["adjacent_mse"],
                "val_constant_loss": baseline,
                "train_loss": train_metrics["loss"],
                "train_constant_loss": float(torch.mean((train.targets - constant) ** 2)),
                "best_epoch": best_epoch,
                "epochs": epochs,
                "seconds": time.perf_counter() - start,
                "train_prompts": len(train_ids),
                "val_prompts": len(val_ids),
                "train_sequences": int(train.targets.shape[0]),
                "train_tokens": int(train.lengths.sum()),
            },
        }
    )
    if out_dir is not None:
        head.save(Path(out_dir))
    return head
