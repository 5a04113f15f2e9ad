"""A tiny annotated folder and small CNN runs trained one epoch on it, shared by the tests that
need a real run folder (not a test module)."""

from pathlib import Path
from typing import Any

from torchlap.data.export import export_builtin
from torchlap.train import TrainConfig, fit


def tiny_lesions(root: Path) -> Path:
    """A 40-image `lesions` folder (32 px, with masks) under ``root``."""
    return export_builtin("lesions", root / "les", n_images=40, image_size=32)


def tiny_run(data: Path, out: Path, **options: Any) -> Path:
    """A small CNN (no LAP, no supervision unless ``options`` say so) trained one epoch on
    ``data`` at 32 px, written to ``out``; returns the run folder."""
    settings: dict[str, Any] = {
        "arch": "smallcnn", "lap": "none", "supervision": "none", "epochs": 1,
        "image_size": 32, "batch_size": 16, "progress_bar": False,
    }  # fmt: skip
    settings.update(options)
    return fit(TrainConfig(data=str(data), out=str(out), **settings))
