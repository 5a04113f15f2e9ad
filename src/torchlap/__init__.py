"""torchlap: Local Attention Pooling that makes CNNs explain themselves.

The LAP layers and ``lapify`` load with the package; the heavier parts (explainers with
captum/zennit, training with Lightning, the peers) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from torchlap.layers import (
    AdaptiveLocalAttentionPool2d,
    LapMaps,
    LocalAttentionPool2d,
    attention_maps,
    clear_attention_maps,
)
from torchlap.models.lapify import freeze_all_but_lap, lap_parameters, lapify

_LAZY = {
    "explain": "torchlap.explainers",
    "load_run": "torchlap.runs",
    "RunError": "torchlap.runs",
    "blaify": "torchlap.models.bla",
}

__all__ = [
    "AdaptiveLocalAttentionPool2d",
    "LapMaps",
    "LocalAttentionPool2d",
    "RunError",
    "__version__",
    "attention_maps",
    "blaify",
    "clear_attention_maps",
    "explain",
    "freeze_all_but_lap",
    "lap_parameters",
    "lapify",
    "load_run",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'torchlap' has no attribute {name!r}")
