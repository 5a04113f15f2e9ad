"""Split and class folders (and image files) of an ImageFolder layout that are links: one
folder or file reached under two split or class paths is refused (the test split could be the
training split); links to folders of their own outside the dataset folder are read."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.data import image_folder


def _images(folder: Path, names: str, shade: int) -> None:
    folder.mkdir(parents=True)
    for k, name in enumerate(names):
        Image.new("L", (8, 8), shade + k).save(folder / f"{name}.png")


def _layout(root: Path, splits: tuple[str, ...] = ()) -> Path:
    """``cats/`` and ``dogs/`` of three images each, under each of ``splits`` (or directly)."""
    for split in splits or ("",):
        _images(root / split / "cats", "abc", 10)
        _images(root / split / "dogs", "def", 200)
    return root


def _refused_by_data_check(root: Path) -> str:
    result = CliRunner().invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


@pytest.mark.parametrize(
    ("splits", "links"),
    [
        (("train",), {"val": "train", "test": "train"}),  # every split the training split
        ((), {"dogs": "cats"}),  # the cats again, as dogs
        (("train", "test"), {"train/cats": "../test/cats"}),  # test images in training
        ((), {"dogs": "."}),  # the root, as a class folder
    ],
    ids=["split to split", "class to class", "class to another split", "class to the root"],
)
def test_a_split_or_class_folder_linking_into_the_dataset_is_refused(
    tmp_path: Path, splits: tuple[str, ...], links: dict[str, str]
) -> None:
    """Before: accepted, ``data check`` passed with val and test the training images."""
    root = _layout(tmp_path / "data", splits)
    for link, target in links.items():
        if (root / link).exists():
            for file in (root / link).iterdir():
                file.unlink()
            (root / link).rmdir()
        os.symlink(target, root / link)
    first = next(iter(links))
    message = rf"{re.escape(str(root / first))} is a link to .*, inside the dataset folder"
    with pytest.raises(ValueError, match=message + r".*would be read again as another split"):
        image_folder(root, split="train")
    assert _refused_by_data_check(root).startswith(f"Error: {root / first} is a link to")


def test_class_folders_linking_to_one_folder_outside_are_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _images(store / "pets", "abc", 10)
    _images(store / "pets" / "small", "de", 100)
    root = tmp_path / "data"
    root.mkdir()
    os.symlink(store / "pets", root / "cats")
    os.symlink(store / "pets", root / "dogs")
    with pytest.raises(ValueError, match=r"class folders .*cats and .*dogs lead to one folder"):
        image_folder(root)
    (root / "dogs").unlink()
    os.symlink(store / "pets" / "small", root / "dogs")  # the dogs are also cats
    with pytest.raises(ValueError, match=r"class folder .*dogs leads to .*small, inside .*cats"):
        image_folder(root)
    assert "would be read as two classes" in _refused_by_data_check(root)


def test_split_folders_linking_to_one_folder_outside_are_refused(tmp_path: Path) -> None:
    store = _layout(tmp_path / "store")
    root = _layout(tmp_path / "data", ("train",))
    os.symlink(store, root / "val")
    os.symlink(store, root / "test")
    with pytest.raises(ValueError, match=r"split folders .*val and .*test lead to one folder"):
        image_folder(root)


@pytest.mark.parametrize("outside", [False, True], ids=["inside", "outside"])
def test_one_image_file_under_two_class_paths_is_refused(tmp_path: Path, outside: bool) -> None:
    root = _layout(tmp_path / "data", ("train", "test"))
    if outside:  # two links to one image elsewhere
        _images(tmp_path / "store", "z", 90)
        os.symlink(tmp_path / "store" / "z.png", root / "train" / "cats" / "z.png")
        os.symlink(tmp_path / "store" / "z.png", root / "test" / "dogs" / "z.png")
        first, second = "train/cats/z.png", "test/dogs/z.png"
    else:  # a training image again in the test split
        os.symlink("../../train/cats/a.png", root / "test" / "dogs" / "x.png")
        first, second = "train/cats/a.png", "test/dogs/x.png"
    with pytest.raises(ValueError, match=rf"{first} and {second} are one image file"):
        image_folder(root)


def test_links_to_folders_of_their_own_outside_are_read(tmp_path: Path) -> None:
    store = _layout(tmp_path / "store", ("val", "cats"))
    root = _layout(tmp_path / "data", ("train", "test"))
    os.symlink(store / "val", root / "val")  # a split elsewhere
    for file in (root / "test" / "cats").iterdir():
        file.unlink()
    (root / "test" / "cats").rmdir()
    os.symlink(store / "cats" / "cats", root / "test" / "cats")  # a class elsewhere
    val = image_folder(root, split="val")
    assert len(val) == 6 and len(val.with_split("test")) == 6
    assert len(val.with_split("train")) == 6
