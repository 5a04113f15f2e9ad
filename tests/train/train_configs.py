"""The tiny training configuration the train tests share (smallcnn, 32 px, one epoch, CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchlap.train.config import TrainConfig


def tiny_config(out: Path | str, n_images: int = 40, **changes: Any) -> TrainConfig:
    """A one-epoch smallcnn run on ``n_images`` 32 px ``lesions`` images into ``out``
    (``changes``: any other TrainConfig fields)."""
    base: dict[str, Any] = {
        "data": "lesions",
        "out": str(out),
        "arch": "smallcnn",
        "epochs": 1,
        "image_size": 32,
        "batch_size": 16,
        "n_images": n_images,
        "progress_bar": False,
        "accelerator": "cpu",
        "devices": "1",
    }
    base.update(changes)
    return TrainConfig(**base)
