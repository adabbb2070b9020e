"""Controlled decoding (CD / SRS-CD): data collection, value head, training.

Offline, `collect` samples M base responses per training prompt and stores their hidden
states and rewards; `train_value_head` fits `V(h)` on per-prompt shaped rewards. Online,
`generate(method="cd", value_head=PATH, weight=λ)` scores the top-k next tokens by
`log p_T(v) + λ·V(prefix ⊕ v)` (see `rshape_fast.decoding.choosers.ValueHeadChooser`).

Names are imported lazily so that `rshape --help` (which registers the cd commands) does
not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CDDataConfig": "rshape_fast.cd.data",
    "CDDataset": "rshape_fast.cd.data",
    "CollectReport": "rshape_fast.cd.data",
    "DataConfigError": "rshape_fast.cd.data",
    "collect": "rshape_fast.cd.data",
    "TrainConfig": "rshape_fast.cd.train",
    "train_value_head": "rshape_fast.cd.train",
    "ValueHead": "rshape_fast.decoding.value_head",
    "load_value_head": "rshape_fast.decoding.value_head",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rshape_fast.cd' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
