"""The value head of controlled decoding: a small MLP from an LM hidden state to a scalar.

`V(h_t)` estimates the (shaped) final reward of a response from the LM's last-layer hidden
state after token `t` (docs/algorithms.md §4). It is saved as a folder holding
`value_head.safetensors` and `config.json` (hidden size, shaping, training knobs, LM name,
metrics), so a decoder can check it belongs to the LM it is used with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rshape_fast.errors import ModelError, ParameterError

WEIGHTS_NAME = "value_head.safetensors"
CONFIG_NAME = "config.json"


class ValueHead(nn.Module):
    """`standardise → Linear(hidden_size, width) → GELU → Linear(width, 1)` on the last axis.

    Hidden states are standardised per feature with the buffers `input_mean` and
    `input_scale` (identity until `fit_input_scaling` sets them from training data): an
    LM's last-layer features differ in scale by more than 10× (SmolLM2: std 0.8 to 9.2), and
    without this the SRS head never moved off the constant predictor at Adam's default
    rate. The buffers are saved with the weights. `config` carries everything
    `save`/`load_value_head` round-trip besides the weights (hidden size and width are
    always in it).
    """

    input_mean: torch.Tensor
    input_scale: torch.Tensor

    def __init__(self, hidden_size: int, width: int = 256, config: dict[str, Any] | None = None):
        super().__init__()
        if hidden_size < 1 or width < 1:
            raise ParameterError(f"hidden_size and width must be >= 1, got {hidden_size}, {width}")
        self.net = nn.Sequential(nn.Linear(hidden_size, width), nn.GELU(), nn.Linear(width, 1))
        self.register_buffer("input_mean", torch.zeros(hidden_size))
        self.register_buffer("input_scale", torch.ones(hidden_size))
        self.config: dict[str, Any] = {**(config or {}), "hidden_size": hidden_size, "width": width}

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values `[...]` of hidden states `[..., hidden_size]` (any float dtype)."""
        if hidden.shape[-1] != self.hidden_size:
            raise ParameterError(
                f"value head: hidden states have size {hidden.shape[-1]}, "
                f"the head was trained on {self.hidden_size}"
            )
        weight = next(self.parameters())
        x = hidden.to(device=weight.device, dtype=weight.dtype)
        return self.net((x - self.input_mean) / self.input_scale).squeeze(-1)

    @torch.no_grad()
    def fit_input_scaling(self, hidden: torch.Tensor) -> None:
        """Set the standardisation from training hidden states `[tokens, hidden_size]`."""
        self.input_mean.copy_(hidden.mean(0))
        # The floor keeps a constant feature from dividing by zero.
        self.input_scale.copy_(hidden.std(0).clamp_min(1e-4))

    @property
    def output_layer(self) -> nn.Linear:
        """The final `Linear(width, 1)` (training initialises its bias at the mean target)."""
        layer = self.net[-1]
        assert isinstance(layer, nn.Linear)
        return layer

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write weights and config to the folder `path` (created if needed)."""
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME))
        (folder / CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")
        return folder


def load_value_head(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> ValueHead:
    """Load a value head saved by `ValueHead.save` (or `rshape cd-train`), in eval mode."""
    from safetensors.torch import load_file

    folder = Path(path).expanduser()
    if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise ModelError(
            f"value head: {folder} is not a value-head folder (needs {CONFIG_NAME} and "
            f"{WEIGHTS_NAME}; create one with `rshape cd-train`)"
        )
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
        head = ValueHead(int(config["hidden_size"]), int(config["width"]), config)
        head.load_state_dict(load_file(str(folder / WEIGHTS_NAME)), strict=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"value head: cannot load {folder}: {exc}") from exc
    return head.to(torch.device(device)).eval()
