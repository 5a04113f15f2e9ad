"""The tiny training configuration the train tests share (smallcnn, 32 px, one epoch, CPU)."""

from __future__ import annotations

import json
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


def fake_run_folder(
    out: Path,
    integrity: object = "unset",
    checkpoints: dict[str, bytes] | None = None,
    **changes: Any,
) -> Path:
    """A finished run as torchlap train leaves it (config.json, metrics.json, weights, log),
    without training: ``integrity`` is config.json's record ("unset": none), ``checkpoints``
    maps phase folders to their ``last.ckpt`` bytes, ``changes`` are its TrainConfig's."""
    out.mkdir(parents=True)
    record = {"format": "torchlap-run", "train": tiny_config(out, **changes).to_dict()}
    if integrity != "unset":
        record["integrity"] = integrity
    (out / "config.json").write_text(json.dumps(record))
    (out / "metrics.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"weights")
    (out / "train.log").write_text("old log\n")
    for name, data in (checkpoints or {}).items():
        (out / "checkpoints" / name).mkdir(parents=True)
        (out / "checkpoints" / name / "last.ckpt").write_bytes(data)
    return out
