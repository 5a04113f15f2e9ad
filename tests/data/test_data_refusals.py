"""Data refusals: image folders next to the split folders, `data export` output and seed."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.data import image_folder
from torchlap.data.export import export_builtin

runner = CliRunner()


def _split_layout(root: Path, splits: tuple[str, ...] = ("train", "val", "test")) -> None:
    for split in splits:
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            Image.new("L", (8, 8), 40 if label == "a" else 200).save(root / split / label / "0.png")


def test_a_split_layout_refuses_another_folder_of_images(tmp_path: Path) -> None:
    # before: Validation/'s images were dropped and `data check` passed
    _split_layout(tmp_path, ("train", "val", "test", "Validation"))
    (tmp_path / "Extra" / "deep" / "a").mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "Extra" / "deep" / "a" / "1.jpg")
    message = r"also Extra/, Validation/ holding image files, .* named exactly train, val, test"
    with pytest.raises(ValueError, match=message):
        image_folder(tmp_path, split="train")
    check = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert check.exit_code == 2 and "Validation/" in check.output
    assert "train: 2 images" not in check.output


def test_a_split_layout_still_takes_folders_without_images(tmp_path: Path) -> None:
    _split_layout(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    (tmp_path / ".cache" / "a").mkdir(parents=True)  # hidden: not a data folder
    Image.new("L", (8, 8)).save(tmp_path / ".cache" / "a" / "0.png")
    # what unzipping an archive made on macOS leaves: resource forks named like images
    (tmp_path / "__MACOSX" / "train" / "a").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "train" / "a" / "._0.png").write_bytes(b"AppleDouble")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "._1.png").write_bytes(b"AppleDouble")
    assert len(image_folder(tmp_path, split="train")) == 2
    check = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert check.exit_code == 0, check.output


def test_export_into_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "annotations.csv"
    target.write_text("image,label\n")
    result = runner.invoke(app, ["data", "export", "lesions", "--out", str(target)])
    assert result.exit_code == 2
    assert "is a file, not a folder" in result.output and "not an empty folder" not in result.output
    assert target.read_text() == "image,label\n"


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_export_refuses_a_seed_train_refuses(tmp_path: Path, seed: object) -> None:
    error = ValueError if seed == -1 else TypeError
    with pytest.raises(error, match=r"seed must be an int >= 0, got"):
        export_builtin("lesions", tmp_path / "out", n_images=30, seed=seed)
    assert not (tmp_path / "out").exists()


def test_data_export_cli_refuses_seed_minus_one_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "export", "lesions", "--out", str(out), "--seed", "-1"])
    assert result.exit_code == 2 and "seed must be an int >= 0, got -1" in result.output
    assert not out.exists()
