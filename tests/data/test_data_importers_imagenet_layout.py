"""``imagenet_folder`` on the layout ``torchvision.datasets.ImageNet`` prepares
(``root/train/<wnid>/*.JPEG``, ``root/val/<wnid>/*.JPEG``, optional ``meta.bin``: a pair
(dict wnid -> class names, list of val wnids)), with the expected records written by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from torchlap.data import imagenet_folder

WNIDS = ["n01", "n02"]


def _imagenet(root: Path, splits: tuple[str, ...] = ("train", "val"), wnids=WNIDS) -> Path:
    for split in splits:
        for wnid in wnids:
            (root / split / wnid).mkdir(parents=True)
            Image.new("RGB", (6, 5)).save(root / split / wnid / f"{wnid}_0.JPEG", format="JPEG")
    return root


def test_records_are_the_wnid_folders_images(tmp_path: Path) -> None:
    root = _imagenet(tmp_path / "i")
    Image.new("RGB", (6, 5)).save(root / "train" / "n02" / "b.png")
    train = imagenet_folder(root, split="train")
    assert [(r.image, r.label, r.split) for r in train.records] == [
        ("train/n01/n01_0.JPEG", "n01", "train"),
        ("train/n02/b.png", "n02", "train"),
        ("train/n02/n02_0.JPEG", "n02", "train"),
    ]
    assert train.records[0].source == f"{root / 'train'} image n01_0.JPEG"
    test = imagenet_folder(root, split="test")
    assert [(r.image, r.label, r.split) for r in test.records] == [
        ("val/n01/n01_0.JPEG", "n01", "test"),
        ("val/n02/n02_0.JPEG", "n02", "test"),
    ]
    assert train.class_descriptions == {"n01": ("n01",), "n02": ("n02",)}


def test_without_a_train_folder_the_val_wnids_are_the_classes(tmp_path: Path) -> None:
    root = _imagenet(tmp_path / "i", splits=("val",), wnids=["n05", "n03"])
    val = imagenet_folder(root, split="val")
    assert val.classes == ["n03", "n05"] and [r.label for r in val.records] == ["n03", "n05"]
    with pytest.raises(FileNotFoundError) as caught:
        imagenet_folder(root, split="train")
    assert str(caught.value) == (
        f"ImageNet folder {root / 'train'} not found; expected root/train/<wnid>/*.JPEG and "
        "root/val/<wnid>/*.JPEG as prepared by torchvision.datasets.ImageNet"
    )


def test_a_wnid_folder_with_images_in_a_subfolder_only_is_a_class(tmp_path: Path) -> None:
    root = _imagenet(tmp_path / "i")
    (root / "train" / "n03" / "deeper").mkdir(parents=True)
    Image.new("RGB", (6, 5)).save(root / "train" / "n03" / "deeper" / "c.JPEG", format="JPEG")
    (root / "train" / "n03" / "notes.txt").write_text("not an image")
    assert imagenet_folder(root, split="train").classes == ["n01", "n02", "n03"]


def test_more_than_five_empty_train_folders_are_counted_and_cut(tmp_path: Path) -> None:
    root = _imagenet(tmp_path / "i")
    for k in range(6):
        (root / "train" / f"e{k}").mkdir()
    (root / "train" / "e0" / "a.txt").write_text("no image")
    shown = "6 folder(s) hold no image files (e0/, e1/, e2/, e3/, e4/, ...); every folder"
    with pytest.raises(ValueError, match=re.escape(shown)):
        imagenet_folder(root, split="val")


def test_an_empty_val_folder_says_the_layout(tmp_path: Path) -> None:
    root = _imagenet(tmp_path / "i", splits=("train",))
    (root / "val").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^.*val: .*\(expected root/train/<wnid>/\*\.JPEG"):
        imagenet_folder(root, split="val")


def test_val_wnids_missing_from_train_list_at_most_ten_classes(tmp_path: Path) -> None:
    wnids = [f"n{k:02d}" for k in range(11)]
    root = _imagenet(tmp_path / "i", splits=("train",), wnids=wnids)
    _imagenet(root, splits=("val",), wnids=[*wnids, "n99"])
    shown = ", ".join(wnids[:10]) + ", ..."
    with pytest.raises(ValueError, match=re.escape(f"the 11 wnids of {root / 'train'}: {shown}. ")):
        imagenet_folder(root, split="val")


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ({"n01": "a", "n02": ["b", "B"]}, {"n01": ("a",), "n02": ("b", "B")}),
        ({"n01": ("a",), "n02": ("b",), "n03": ("c",)}, {"n01": ("a",), "n02": ("b",)}),
    ],
)
def test_meta_names_become_tuples_of_names(
    tmp_path: Path, names: dict, expected: dict[str, tuple[str, ...]]
) -> None:
    root = _imagenet(tmp_path / "i")
    torch.save((names, ["n01"]), root / "meta.bin")
    assert imagenet_folder(root, split="val").class_descriptions == expected


@pytest.mark.parametrize(
    "content",
    [
        ({"n01": ("a",), 2: ("b",)}, []),
        ({"n01": ("a",), "n02": ("b", 3)}, []),
        ({"n01": ("a",), "n02": 7}, []),
        ({"n01": ("a",), "n02": ("b",)},),
        (["n01", "n02"], []),
    ],
)
def test_meta_of_another_form_is_refused(tmp_path: Path, content: tuple) -> None:
    root = _imagenet(tmp_path / "i")
    torch.save(content, root / "meta.bin")
    kind = type(content).__name__
    with pytest.raises(ValueError, match=rf"meta\.bin holds a {kind} of another form; expected"):
        imagenet_folder(root, split="val")


def test_missing_meta_names_are_counted_and_cut_after_five(tmp_path: Path) -> None:
    wnids = [f"n{k:02d}" for k in range(7)]
    root = _imagenet(tmp_path / "i", wnids=wnids)
    torch.save(({"n00": ("a",)}, []), root / "meta.bin")
    shown = f"no class names for 6 wnid folder(s) of {root / 'val'}: n01, n02, n03, n04, n05, ..."
    with pytest.raises(ValueError, match=re.escape(f"{shown} (it names 1 wnids)")):
        imagenet_folder(root, split="val")


def test_a_devkit_archive_torchvision_cannot_read_is_named(tmp_path: Path) -> None:
    root = _imagenet(tmp_path / "i")
    (root / "ILSVRC2012_devkit_t12.tar.gz").write_bytes(b"not a tar")  # neither tar nor md5
    archive = root / "ILSVRC2012_devkit_t12.tar.gz"
    with pytest.raises(ValueError, match=re.escape(f"{archive}: torchvision could not build meta")):
        imagenet_folder(root, split="val")
