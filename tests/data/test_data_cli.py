"""``torchlap data``: export, list, check."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.data import AnnotatedFolder, Digits

runner = CliRunner()


def test_export_then_load(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    result = runner.invoke(
        app,
        [
            "data",
            "export",
            "digits",
            "--out",
            str(out),
            "--n-images",
            "30",
            "--image-size",
            "48",
            "--seed",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote digits" in result.output
    loaded = AnnotatedFolder(out, split="test")
    original = Digits(split="test", n_images=30, image_size=48, seed=2)
    assert len(loaded) == len(original) == 3
    assert torch.equal(loaded[2]["image"], original[2]["image"])
    check = runner.invoke(app, ["data", "check", str(out)])
    assert check.exit_code == 0 and "train: 24 images" in check.output


def test_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "export", "mnist", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "unknown built-in 'mnist'" in result.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a.txt").write_text("x")
    result = runner.invoke(app, ["data", "export", "lesions", "--out", str(tmp_path / "full")])
    assert result.exit_code == 2 and "already exists" in result.output
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "annotations.csv").write_text("image,label\nmissing.png,a\n")
    result = runner.invoke(app, ["data", "check", str(tmp_path / "broken")])
    assert result.exit_code == 2 and "line 2: image file" in result.output
    listing = runner.invoke(app, ["data", "list"])
    assert listing.output.split() == ["concepts", "digits", "lesions"]


def test_check_counts_images_with_transparent_pixels(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    rgba = np.full((8, 8, 4), 255, np.uint8)
    for k in range(5):
        Image.fromarray(rgba).save(tmp_path / f"{k}.png")  # opaque: not counted
    rgba[0, 0, 3] = 0
    for k in range(5, 9):
        Image.fromarray(rgba).save(tmp_path / f"{k}.png")
    rows = "".join(f"{k}.png,{'ab'[k % 2]},train\n" for k in range(9))
    (tmp_path / "annotations.csv").write_text("image,label,split\n" + rows)
    check = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert check.exit_code == 0, check.output
    assert "train: 4 images have transparent pixels (5.png, 6.png, 7.png, ...)" in check.output
