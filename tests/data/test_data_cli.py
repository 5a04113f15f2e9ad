"""``torchlap data``: export, list, check."""

from __future__ import annotations

from pathlib import Path

import pytest
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
    for k in range(4):  # opaque val and test images: train needs every split
        Image.fromarray(np.full((8, 8, 4), 255, np.uint8)).save(tmp_path / f"{k}{k}.png")
        rows += f"{k}{k}.png,{'ab'[k % 2]},{'val' if k < 2 else 'test'}\n"
    (tmp_path / "annotations.csv").write_text("image,label,split\n" + rows)
    check = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert check.exit_code == 0, check.output
    assert "train: 4 images have transparent pixels (5.png, 6.png, 7.png, ...)" in check.output


def test_check_counts_a_transparent_colour_only_where_a_pixel_has_it(tmp_path: Path) -> None:
    """Before: every image with a tRNS chunk was counted (and warned about) as transparent,
    also an opaque one whose tRNS names a colour none of its pixels has."""
    from PIL import Image

    for k in range(4):  # opaque, their tRNS colours unused
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / f"{k}.png", transparency=(1, 2, 3))
    for k in range(4, 6):
        Image.new("L", (8, 8), 5).save(tmp_path / f"{k}.png", transparency=7)
    used = Image.new("L", (8, 8), 5)
    used.putpixel((0, 0), 7)  # one pixel of the transparent grey
    used.save(tmp_path / "6.png", transparency=7)
    rows = "".join(f"{k}.png,{'ab'[k % 2]},{('train', 'val', 'test')[k % 3]}\n" for k in range(7))
    (tmp_path / "annotations.csv").write_text("image,label,split\n" + rows)
    check = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert check.exit_code == 0, check.output
    assert "train: 1 images have transparent pixels (6.png)" in check.output
    assert check.output.count("transparent pixels") == 1


def test_check_of_a_builtin_name_describes_it(tmp_path: Path, monkeypatch) -> None:
    # the name used to be taken as a missing folder: "unknown dataset 'lesions': not a built-in"
    monkeypatch.chdir(tmp_path)
    check = runner.invoke(app, ["data", "check", "lesions"])
    assert check.exit_code == 0, check.output
    assert "lesions is a built-in benchmark, generated on the fly" in check.output
    assert "train 1600, val 200, test 200 images, classes ['negative', 'positive']" in check.output
    assert "torchlap data export lesions --out DIR" in check.output
    # a folder of that name is checked as the folder, with a word on what --data lesions means
    export = runner.invoke(app, ["data", "export", "lesions", "--out", "lesions", "--n-images",
                                 "20", "--image-size", "32"])  # fmt: skip
    assert export.exit_code == 0, export.output
    check = runner.invoke(app, ["data", "check", "lesions"])
    assert check.exit_code == 0, check.output
    assert "note: checking the folder lesions; `--data lesions` names the built-in" in check.output
    assert "train: 16 images" in check.output


def _image_folder(root: Path, splits: dict[str, dict[str, int]]) -> Path:
    """root/<split>/<class>/<k>.png with the given number of 8x8 images per class."""
    from PIL import Image

    for split, classes in splits.items():
        for label, n in classes.items():
            (root / split / label).mkdir(parents=True)
            for k in range(n):
                Image.new("L", (8, 8), 30 * k).save(root / split / label / f"{k}.png")
    return root


def test_check_refuses_what_train_refuses(tmp_path: Path) -> None:
    # an empty val split printed "val: empty" and passed (exit 0); train refuses it
    two = {"a": 2, "b": 2}
    no_val = _image_folder(tmp_path / "no_val", {"train": two, "test": two})
    check = runner.invoke(app, ["data", "check", str(no_val)])
    assert check.exit_code == 2, check.output
    assert "val: empty" in check.output and "test: 4 images" in check.output
    assert "the 'val' split(s) have no images; torchlap train needs images in train, val" in (
        check.output
    )
    # seeded split of a CSV folder too small for val and test
    from PIL import Image

    small = tmp_path / "small"
    small.mkdir()
    for k in range(4):
        Image.new("L", (8, 8), 30 * k).save(small / f"{k}.png")
    rows = "".join(f"{k}.png,{'ab'[k % 2]}\n" for k in range(4))
    (small / "annotations.csv").write_text("image,label\n" + rows)
    check = runner.invoke(app, ["data", "check", str(small)])
    assert check.exit_code == 2 and "the 'val' and 'test' split(s) have no images" in check.output
    # one class: refused as before; a complete folder passes and says it has no regions
    one = _image_folder(tmp_path / "one", {s: {"a": 2} for s in ("train", "val", "test")})
    check = runner.invoke(app, ["data", "check", str(one)])
    assert check.exit_code == 2 and "the training split has 1 class" in check.output
    full = _image_folder(tmp_path / "full", {s: two for s in ("train", "val", "test")})
    check = runner.invoke(app, ["data", "check", str(full)])
    assert check.exit_code == 0, check.output
    assert "regions: none (class labels only)" in check.output


def test_check_of_a_folder_train_refuses_matches_train(tmp_path: Path) -> None:
    from torchlap.train import TrainConfig, fit

    two = {"a": 2, "b": 2}
    no_val = _image_folder(tmp_path / "no_val", {"train": two, "test": two})
    with pytest.raises(ValueError, match="'val' split has no images"):
        fit(TrainConfig(data=str(no_val), out=str(tmp_path / "run"), arch="smallcnn"))
    assert runner.invoke(app, ["data", "check", str(no_val)]).exit_code == 2
