"""Shared pieces of the robustness suite: a tiny trained run, folder snapshots, CLI runner."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from torchlap.train import TrainConfig, fit

# one tiny run for the whole suite: SmallCNN with LAP, 1 epoch on 40 lesions images of 32 px
TINY = {
    "data": "lesions",
    "arch": "smallcnn",
    "lap": "auto",
    "supervision": "weak",
    "epochs": 1,
    "n_images": 40,
    "image_size": 32,
    "batch_size": 16,
    "progress_bar": False,
    "accelerator": "cpu",
    "devices": "1",
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run folder; never modify it (copy it with ``run_copy``)."""
    torch.set_num_threads(1)
    return fit(TrainConfig(out=str(tmp_path_factory.mktemp("tiny") / "run"), **TINY))


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny run, free to damage."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run_copy"))


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below ``folder`` (``{}`` if it does not exist)."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def stuck_png(monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.unlink`` refuses (PermissionError) every file named ``stuck.png`` while the test
    runs: a file that cannot be removed (the tests may run as root, whom chmod does not stop)."""
    unlink = os.unlink

    def refusing(path, *args, **kwargs) -> None:
        if os.fspath(path).endswith("stuck.png"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refusing)


def temp_files(folder: Path) -> list[Path]:
    """Temporary files or folders of any writer (torchlap's or the old ``*.tmp`` names)."""
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".torchlap-tmp"))]


# the file fuzzer's clean data folder (tests/robustness/test_robust_file_fuzz*.py)
@pytest.fixture(scope="module")
def clean_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny annotated folder (40 lesion images of 32 px, boxes and masks); the fuzzer
    copies it before each mutation."""
    from file_fuzz_checks import make_clean_data

    return make_clean_data(tmp_path_factory.mktemp("filefuzz") / "data")


@pytest.fixture(scope="module")
def an_image(clean_data: Path) -> Path:
    """One clean test image of :func:`clean_data`."""
    return next((clean_data / "images" / "test").glob("*.png"))
