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


def _layout(tmp_path: Path, train: list[str], val: list[str] | None = None) -> Path:
    """An ImageNet root whose train/ and val/ hold one image per wnid folder."""
    root = tmp_path / "i"
    _class_folders(root / "train", train)
    _class_folders(root / "val", train if val is None else val)
    return root


def _val_refused(root: Path, shown: str) -> None:
    with pytest.raises(ValueError, match=re.escape(shown)):
        imagenet_folder(root, split="val")


def test_five_empty_folders_are_all_named(tmp_path: Path) -> None:
    root = _layout(tmp_path, ["n01"])
    for k in range(5):
        (root / "train" / f"e{k}").mkdir()
    _val_refused(root, "5 folder(s) hold no image files (e0/, e1/, e2/, e3/, e4/); every folder")


def test_ten_train_classes_are_all_named(tmp_path: Path) -> None:
    wnids = [f"n{k:02d}" for k in range(10)]
    root = _layout(tmp_path, wnids, [*wnids, "n99"])
    _val_refused(root, f"the 10 wnids of {root / 'train'}: {', '.join(wnids)}. Remove")


def test_five_wnids_without_names_are_all_named(tmp_path: Path) -> None:
    root = _layout(tmp_path, [f"n{k:02d}" for k in range(6)])
    torch.save(({"n00": ("a",)}, []), root / "meta.bin")
    _val_refused(
        root, f"no class names for 5 wnid folder(s) of {root / 'val'}: n01, n02, n03, n04, n05 (it"
    )


class _RunsCodeWhenUnpickled:
    """Unpickling it touches ``marker``: what a meta.bin from elsewhere could do if loaded
    with ``weights_only=False``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_meta_bin_holding_code_is_refused_without_running_it(tmp_path: Path) -> None:
    root = _layout(tmp_path, ["n01"])
    marker = tmp_path / "ran"
    torch.save(({"n01": ("a",)}, _RunsCodeWhenUnpickled(marker)), root / "meta.bin")
    with pytest.raises(ValueError, match=r"meta\.bin cannot be read as an ImageNet meta file"):
        imagenet_folder(root, split="val")
    assert not marker.exists()
