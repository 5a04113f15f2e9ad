"""``imagenet_folder``'s folder checks at their edges: images reached through a linked
subfolder make a class (torchvision's ImageFolder follows links), and the lists in its
refusals are cut only when longer than they show (5 empty folders, 10 classes, 5 wnids without
a name); a meta.bin is read without unpickling what it holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from torchlap.data import imagenet_folder


def _class_folders(split: Path, wnids: list[str]) -> None:
    for wnid in wnids:
        (split / wnid).mkdir(parents=True)
        Image.new("RGB", (6, 5)).save(split / wnid / f"{wnid}_0.JPEG", format="JPEG")


def test_images_in_a_linked_subfolder_make_a_class(tmp_path: Path) -> None:
    root = tmp_path / "i"
    _class_folders(root / "train", ["n01", "n02"])
    _class_folders(root / "val", ["n01", "n02"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (6, 5)).save(elsewhere / "c.JPEG", format="JPEG")
    (root / "train" / "n03").mkdir()
    (root / "train" / "n03" / "linked").symlink_to(elsewhere, target_is_directory=True)
    train = imagenet_folder(root, split="train")
    assert train.classes == ["n01", "n02", "n03"]
    assert [r.image for r in train.records if r.label == "n03"] == ["train/n03/linked/c.JPEG"]


def test_five_empty_folders_are_all_named(tmp_path: Path) -> None:
    root = tmp_path / "i"
    _class_folders(root / "train", ["n01"])
    _class_folders(root / "val", ["n01"])
    for k in range(5):
        (root / "train" / f"e{k}").mkdir()
    shown = "5 folder(s) hold no image files (e0/, e1/, e2/, e3/, e4/); every folder"
    with pytest.raises(ValueError, match=re.escape(shown)):
        imagenet_folder(root, split="val")


def test_ten_train_classes_are_all_named(tmp_path: Path) -> None:
    wnids = [f"n{k:02d}" for k in range(10)]
    root = tmp_path / "i"
    _class_folders(root / "train", wnids)
    _class_folders(root / "val", [*wnids, "n99"])
    shown = f"the 10 wnids of {root / 'train'}: {', '.join(wnids)}. Remove"
    with pytest.raises(ValueError, match=re.escape(shown)):
        imagenet_folder(root, split="val")


def test_five_wnids_without_names_are_all_named(tmp_path: Path) -> None:
    wnids = [f"n{k:02d}" for k in range(6)]
    root = tmp_path / "i"
    _class_folders(root / "train", wnids)
    _class_folders(root / "val", wnids)
    torch.save(({"n00": ("a",)}, []), root / "meta.bin")
    shown = f"no class names for 5 wnid folder(s) of {root / 'val'}: n01, n02, n03, n04, n05 (it"
    with pytest.raises(ValueError, match=re.escape(shown)):
        imagenet_folder(root, split="val")


class _RunsCodeWhenUnpickled:
    """Unpickling it touches ``marker``: what a meta.bin from elsewhere could do if loaded
    with ``weights_only=False``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_meta_bin_holding_code_is_refused_without_running_it(tmp_path: Path) -> None:
    root = tmp_path / "i"
    _class_folders(root / "train", ["n01"])
    _class_folders(root / "val", ["n01"])
    marker = tmp_path / "ran"
    torch.save(({"n01": ("a",)}, _RunsCodeWhenUnpickled(marker)), root / "meta.bin")
    with pytest.raises(ValueError, match=r"meta\.bin cannot be read as an ImageNet meta file"):
        imagenet_folder(root, split="val")
    assert not marker.exists()
