"""The knobs of `rshape arm-train`, apart from the training code so that the CLI reads its
defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from rshape_fast.errors import ParameterError


@dataclass(frozen=True)
class ArmConfig:
    """The knobs of `train_arm`."""

    beta_r: float = 0.1
    train_layers: int = 4
    epochs: int = 3
    batch_prompts: int = 2
    lr: float = 5e-5
    min_gap: float = 0.1
    held_out: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("beta_r", "lr"):
            if not getattr(self, name) > 0:
                raise ParameterError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        for name in ("train_layers", "epochs", "batch_prompts"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name}: must be an integer >= 1, got {value!r}")
        if not self.min_gap >= 0:
            raise ParameterError(f"min_gap: must be >= 0, got {self.min_gap!r}")
        if not 0 < self.held_out < 1:
            raise ParameterError(f"held_out: must be in (0, 1), got {self.held_out!r}")
