"""Plain ImageFolder layouts (class subfolders, no regions) as :class:`AnnotatedFolder`
datasets: the files listed and the layout's pitfalls refused (:mod:`torchlap.data._layout`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torchvision.datasets.folder import find_classes, make_dataset

from torchlap.data._base import SPLITS, check_folder_options
from torchlap.data._layout import (
    FOLDER_IMAGE_SUFFIXES,
    log_left_out_files,
    refuse_a_missing_csv,
    refuse_folder_links_back,
    refuse_images_read_twice,
    refuse_linked_folders,
    refuse_misread_entries,
    refuse_other_image_folders,
    refuse_untrainable_class_folders,
)
from torchlap.data.annotations import ANNOTATIONS, ImageRecord
from torchlap.data.folder import AnnotatedFolder

__all__ = ["image_folder"]


def image_folder(
    root: str | os.PathLike[str], split: str = "train", **options: Any
) -> AnnotatedFolder:
    """A plain ImageFolder layout (class subfolders, no regions) as an ``AnnotatedFolder``.

    Two layouts: ``root/<class>/<image>`` (a seeded split is made), or
    ``root/{train,val,test}/<class>/<image>`` (the split folders; ``train`` must exist).
    Files are listed with torchvision's ``make_dataset`` (its image extensions, and DICOM's
    ``.dcm``/``.dicom``, which torchlap reads as ``torchlap explain`` does). A class folder
    without image files is refused (ValueError naming it) when its class then has no training
    image; an empty ``val/<class>`` or ``test/<class>`` of a class that has training images
    only means that split lacks the class.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise FileNotFoundError(f"dataset folder {root_path} does not exist")
    check_folder_options(split=split, **options)  # before any file is listed
    refuse_a_missing_csv(root_path)
    try:
        next(iter(root_path.iterdir()), None)
    except PermissionError as error:
        raise PermissionError(f"dataset folder {root_path} is not readable: {error}") from None
    split_dirs = [s for s in SPLITS if (root_path / s).is_dir()]
    records: list[ImageRecord] = []
    if split_dirs:
        if "train" not in split_dirs:
            raise ValueError(
                f"{root_path} has split folder(s) {split_dirs} but no train folder; use "
                "root/train/<class>/..., root/val/<class>/..., root/test/<class>/..."
            )
        refuse_other_image_folders(root_path, split_dirs)
    folders = [(root_path / s, s) for s in split_dirs] or [(root_path, None)]
    empty_folders: list[tuple[str, str]] = []  # (class folder, class) without image files
    listed: list[str] = []  # every image file listed, in every split
    listings: list[tuple[Path, str | None, list[str], dict[str, int]]] = []
    for folder, split_name in folders:
        try:
            listings.append((folder, split_name, *find_classes(str(folder))))
        except FileNotFoundError as error:
            raise ValueError(f"{folder}: no class subfolders ({error})") from None
    class_dirs = [folder / name for folder, _, names, _ in listings for name in names]
    refuse_linked_folders(root_path, [root_path / s for s in split_dirs], class_dirs)
    for folder, split_name, folder_classes, class_to_idx in listings:
        refuse_folder_links_back(root_path, folder, folder_classes)  # make_dataset follows links
        samples = make_dataset(
            str(folder), class_to_idx, extensions=FOLDER_IMAGE_SUFFIXES, allow_empty=True
        )
        refuse_misread_entries(root_path, folder, folder_classes, [f for f, _ in samples])
        log_left_out_files(folder, folder_classes)
        if not samples:
            entries = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
            raise ValueError(
                f"{folder} holds no image files in class subfolders (it holds "
                f"{', '.join(entries[:8])}{', ...' if len(entries) > 8 else ''}); a dataset "
                f"folder has {ANNOTATIONS} or one subfolder of images per class"
            )
        found = {target for _, target in samples}
        empty_folders += [
            ((folder / name).relative_to(root_path).as_posix() + "/", name)
            for name in folder_classes
            if class_to_idx[name] not in found
        ]
        for file, target in samples:
            listed.append(file)
            relative = Path(file).relative_to(root_path).as_posix()
            records.append(
                ImageRecord(
                    image=relative,
                    label=folder_classes[target],
                    split=split_name,
                    source=f"{root_path} image {relative}",
                )
            )
    refuse_images_read_twice(root_path, listed)
    refuse_untrainable_class_folders(root_path, records, empty_folders)
    return AnnotatedFolder.from_records(
        root_path, records, source=str(root_path), has_regions=False, split=split, **options
    )
