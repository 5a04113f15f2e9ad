"""torchlap: Local Attention Pooling that makes CNNs explain themselves.

Every public name loads on first use (``torchlap.lapify`` imports the LAP layers and
PyTorch then), so ``import torchlap`` is cheap: the command line answers ``torchlap --help``
and ``--version`` without importing PyTorch. ``torchlap.layers`` and the other areas are
importable as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from torchlap.explainers import explain
    from torchlap.layers import (
        AdaptiveLocalAttentionPool2d,
        LapMaps,
        LocalAttentionPool2d,
        attention_maps,
        clear_attention_maps,
    )
    from torchlap.models.bla import blaify
    from torchlap.models.lapify import freeze_all_but_lap, lap_parameters, lapify
    from torchlap.runs import RunError, load_run

#: public name -> the module that owns it
_LAZY = {
    "AdaptiveLocalAttentionPool2d": "torchlap.layers",
    "LapMaps": "torchlap.layers",
    "LocalAttentionPool2d": "torchlap.layers",
    "attention_maps": "torchlap.layers",
    "clear_attention_maps": "torchlap.layers",
    "freeze_all_but_lap": "torchlap.models.lapify",
    "lap_parameters": "torchlap.models.lapify",
    "lapify": "torchlap.models.lapify",
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


#: the areas ``torchlap.<area>`` reaches without importing it first (``import torchlap`` once
#: imported the layers and the models itself)
_AREAS = ("data", "evaluate", "explainers", "layers", "losses", "metrics", "models", "report",
          "runs", "train")  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _AREAS:
        return importlib.import_module(f"torchlap.{name}")  # (sets the attribute itself)
    raise AttributeError(f"module 'torchlap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_AREAS})
