"""Fixtures shared by the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchlap.train import TrainConfig, fit


@pytest.fixture(scope="session")
def lap_run(tmp_path_factory) -> Path:
    """A weakly supervised LAP run of the small CNN on 80 `lesions` images at 32 px, one epoch
    (trained once per session; the tests only read it)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("lap-run") / "run"
    config = TrainConfig(
        data="lesions", out=str(out), arch="smallcnn", lap="auto", supervision="weak",
        epochs=1, n_images=80, image_size=32, batch_size=16, progress_bar=False,
    )  # fmt: skip
    return fit(config)
