"""The ImageFolder layouts of :func:`torchlap.data.folder.image_folder`: what a listing of class
subfolders would drop or mistake for a class, refused with the folder named."""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS

from torchlap.data._base import SPLITS
from torchlap.data.annotations import ImageRecord

__all__ = ["refuse_other_image_folders", "refuse_untrainable_class_folders"]


def refuse_untrainable_class_folders(
    root: Path, records: list[ImageRecord], empty_folders: list[tuple[str, str]]
) -> None:
    """ValueError naming the class folders without image files whose class then has no
    training image (a class the model could not learn). An empty ``val/<class>`` or
    ``test/<class>`` of a class with training images is fine: that split lacks the class."""
    trained = {r.label for r in records if r.split in (None, "train")}
    refused = [folder for folder, name in empty_folders if name not in trained]
    if refused:
        raise ValueError(
            f"{root}: class folder(s) {', '.join(refused)} hold no image files (extensions "
            f"{', '.join(IMG_EXTENSIONS)}), so their class has no training image and could "
            "not be learnt; add images to them or remove them"
        )


def refuse_other_image_folders(root: Path, split_dirs: list[str]) -> None:
    """ValueError naming the folders with image files next to the split folders: a split layout
    reads only train/, val/ and test/, so ``Validation/`` or ``Test/`` would be dropped (the
    split folders are compared as files: ``Train/`` read as train/ on macOS is no other; hidden
    files and folders and macOS' ``__MACOSX/`` resource forks are no images)."""
    others = [
        entry.name + "/"
        for entry in sorted(root.iterdir())
        if entry.is_dir() and not entry.name.startswith(".") and entry.name != "__MACOSX"
        if not any(entry.samefile(root / split) for split in split_dirs)
        if any(_is_image_name(f) for _, _, fs in os.walk(entry) for f in fs)
    ]
    if others:
        raise ValueError(
            f"{root} has split folders but also {', '.join(others)} holding image files, which "
            f"would be left out: the split folders are named exactly {', '.join(SPLITS)} "
            "(lower case); rename or move the other folder(s)"
        )


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)
