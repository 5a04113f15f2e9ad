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
    with pytest.raises(error, match=r"seed must be an int from 0 to 4294967295, got"):
        export_builtin("lesions", tmp_path / "out", n_images=30, seed=seed)
    assert not (tmp_path / "out").exists()


def test_data_export_cli_refuses_seed_minus_one_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "export", "lesions", "--out", str(out), "--seed", "-1"])
    assert (
        result.exit_code == 2
        and "seed must be an int from 0 to 4294967295, got -1" in result.output
    )
    assert not out.exists()


def test_export_refuses_paths_it_cannot_rename_into_before_generating(tmp_path: Path) -> None:
    """Before: raw OS errors ([Errno 20], [Errno 17]) after all the generation work."""
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    cases = {
        "afile/sub": r"afile is a file, so .*afile/sub cannot be a folder under it",
        "link": r"link is a symbolic link",
        "dangling": r"dangling is a symbolic link",
    }
    for out, match in cases.items():
        with pytest.raises(FileExistsError, match=match):
            export_builtin("lesions", tmp_path / out, n_images=30, image_size=32)
    assert (tmp_path / "afile").read_text() == "mine" and not any((tmp_path / "empty").iterdir())


def test_export_bounds_the_image_count_and_writes_one_chunk_at_a_time(tmp_path: Path) -> None:
    """Before: --n-images had no bound and the whole split was held in memory."""
    with pytest.raises(ValueError, match="n_images must be an int from 1 to 1000000"):
        export_builtin("lesions", tmp_path / "big", n_images=10**7)
    out = export_builtin("digits", tmp_path / "many", n_images=600, image_size=32)
    from torchlap.data import AnnotatedFolder, builtin_dataset

    folder = AnnotatedFolder(out, split="train")
    generated = builtin_dataset("digits", split="train", n_images=600, image_size=32)
    assert len(folder) == len(generated) > 256  # more than one chunk
    for index in (0, 255, 256, len(folder) - 1):
        assert (folder[index]["image"] - generated[index]["image"]).abs().max() < 1 / 255
        assert bool((folder[index]["mask"] == generated[index]["mask"]).all())
