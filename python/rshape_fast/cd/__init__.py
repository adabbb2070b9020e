"""Controlled decoding (CD / SRS-CD): data collection, value head, training.

Offline, `collect` samples M base responses per training prompt and stores their hidden
states and rewards; `train_value_head` fits `V(h)` on per-prompt shaped rewards. Online,
`generate(method="cd", value_head=PATH, weight=λ)` scores the top-k next tokens by
`log p_T(v) + λ·V(prefix ⊕ v)` (see `rshape_fast.decoding.controlled`).
"""

from rshape_fast.cd.data import CDDataConfig, CDDataset, CollectReport, DataConfigError, collect
from rshape_fast.cd.train import TrainConfig, train_value_head
from rshape_fast.cd.value_head import ValueHead, load_value_head

__all__ = [
    "CDDataConfig",
    "CDDataset",
    "CollectReport",
    "DataConfigError",
    "TrainConfig",
    "ValueHead",
    "collect",
    "load_value_head",
    "train_value_head",
]
