"""``--pretrained`` with a torchvision weights name the arch lacks is refused before the data
is read and the model built (before: after the data, when the model was being built), naming
``--pretrained`` and the arch's names; paths and run folders are left to the builder as
before. Offline: ``get_model_weights`` reads torchvision's enum, nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_configs import tiny_config
from typer.testing import CliRunner

import torchlap.train.run as train_run
from torchlap.cli import app
from torchlap.models.backbones import check_pretrained
from torchlap.models.build import check_pretrained_name
from torchlap.train import fit


def _no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def read(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was read before --pretrained was checked")

    monkeypatch.setattr(train_run, "load_splits", read)
    monkeypatch.setattr(train_run, "build_for_training", read)


def test_an_unknown_weights_name_is_refused_before_the_data(tmp_path, monkeypatch) -> None:
    _no_work(monkeypatch)
    config = tiny_config(tmp_path / "r", arch="resnet18", pretrained="IMAGENET9K")
    with pytest.raises(ValueError, match=r"--pretrained.*'IMAGENET9K'.*\['IMAGENET1K_V1'\]"):
        fit(config)
    assert not (tmp_path / "r").exists()


def test_the_command_names_the_option_and_the_arch_names(tmp_path, monkeypatch) -> None:
    _no_work(monkeypatch)
    result = CliRunner().invoke(app, [
        "train", "--data", "lesions", "--arch", "resnet18", "--pretrained", "imagenet",
        "--out", str(tmp_path / "r"), "--n-images", "40", "--image-size", "32", "--epochs", "1",
    ])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--pretrained" in result.output and "IMAGENET1K_V1" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", ["IMAGENET1K_V1", "DEFAULT"])
def test_the_arch_names_pass(name) -> None:
    assert check_pretrained_name("resnet18", name) is None
    assert check_pretrained_name("resnet50", "IMAGENET1K_V2") is None


def test_paths_run_folders_and_other_arches_are_left_to_the_builder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("myrun").mkdir()  # a run folder named without a separator
    for value in ("myrun", "w.safetensors", "runs/bb", str(tmp_path / "gone"), None):
        assert check_pretrained_name("resnet18", value) is None
    for arch in ("smallcnn", "smallcnn-gn", "not_a_torchvision_model"):
        assert check_pretrained_name(arch, "IMAGENET9K") is None


@pytest.mark.parametrize("arch", ["smallcnn", "smallcnn-gn"])
def test_a_name_for_the_small_cnn_is_refused_before_the_data(tmp_path, monkeypatch, arch) -> None:
    """The small CNNs have no published weights: a name (no path, nothing there) is refused
    before the data is read (before: once the model was built, after the data); a file or run
    folder is left to the builder."""
    _no_work(monkeypatch)
    monkeypatch.chdir(tmp_path)
    config = tiny_config(tmp_path / "r", arch=arch, pretrained="IMAGENET1K_V1")
    with pytest.raises(ValueError, match=rf"--pretrained 'IMAGENET1K_V1': '{arch}' has no publ"):
        fit(config)
    assert not (tmp_path / "r").exists()
    Path("myrun").mkdir()
    for value in ("myrun", "w.safetensors", None):
        assert check_pretrained(arch, value) is None
