"""Training: Lightning module, phases, run folders (paper 000, section III.B and appendix C).

- :class:`TrainConfig` / :class:`PhaseConfig`: validated settings with a JSON round trip;
- :func:`fit`: one run into a folder (``model.safetensors``, ``config.json``,
  ``metrics.json``, resume checkpoints), on one CPU, one GPU or many through Lightning's DDP;
- :func:`load_run`: the trained model back from safetensors + JSON (no pickle);
- :class:`ClassifierModule`: the LightningModule (cross-entropy + injection losses, metrics);
- :class:`NormalizedClassifier`: the saved model, which takes images in [0, 1].
"""

from typing import Any

from torchlap.models.recipes import rebuild_model
from torchlap.models.wrapping import Normalize, NormalizedClassifier, SmallCNN
from torchlap.train.config import PhaseConfig, TrainConfig, parse_phase
from torchlap.train.run import LoadedRun, RunFolderError, fit, load_run

# the Lightning parts load on first use: importing lightning takes seconds, and
# ``import torchlap`` and the torchlap command (measured: `torchlap --help`) should not pay
# for it
_LAZY = {"ClassifierModule", "NonFiniteLossError", "set_trainable"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        # lazy: this module imports Lightning (seconds), see _LAZY
        from torchlap.train import module

        return getattr(module, name)
    raise AttributeError(f"module 'torchlap.train' has no attribute {name!r}")


__all__ = [
    "ClassifierModule",
    "LoadedRun",
    "NonFiniteLossError",
    "Normalize",
    "NormalizedClassifier",
    "PhaseConfig",
    "RunFolderError",
    "SmallCNN",
    "TrainConfig",
    "fit",
    "load_run",
    "parse_phase",
    "rebuild_model",
    "set_trainable",
]
