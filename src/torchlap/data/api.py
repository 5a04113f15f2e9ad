"""One entry point for every dataset: ``load_dataset``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torchlap.data._base import RegionDataset, check_folder_options, check_split
from torchlap.data.annotations import ANNOTATIONS
from torchlap.data.builtin import BUILTINS, DEFAULT_N_IMAGES, builtin_dataset, builtin_names
from torchlap.data.folder import AnnotatedFolder
from torchlap.data.plain_folder import image_folder


def check_dataset_name(name_or_path: object) -> None:
    """TypeError unless ``name_or_path`` is a str or os.PathLike; ValueError when it is empty
    (``Path("")`` is ``.``: the current folder would be read as the dataset)."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            "name_or_path must be a built-in name or a dataset folder (a str or os.PathLike), "
            f"got {type(name_or_path).__name__}"
        )
    if not os.fspath(name_or_path).strip():  # Path("") is ".": the current folder, read as data
        raise ValueError(
            f"the dataset name or folder is empty ({os.fspath(name_or_path)!r}); pass a built-in "
            f"({', '.join(builtin_names())}) or a folder path (the current folder is '.')"
        )


def check_data_option(text: str, option: str) -> None:
    """``ValueError`` naming ``option`` (``--data``) unless ``text`` is a built-in name or a
    folder holding ``annotations.csv`` or subfolders (an ImageFolder's classes or splits):
    refused before a run is read or built (the rest of the folder is checked when it is
    read)."""
    if not text.strip():  # Path("") is ".": the current folder, read as data
        raise ValueError(
            f"{option} is empty or blank; pass a built-in ({', '.join(builtin_names())}) or a "
            "dataset folder (. for the current folder)"
        )
    if text in builtin_names():
        return
    if Path(text).is_dir():
        try:
            layout = (Path(text) / ANNOTATIONS).exists() or any(
                entry.is_dir() for entry in Path(text).iterdir()
            )
        except PermissionError:  # (said by the reader, which names the folder)
            return
        if not layout:
            raise ValueError(
                f"{option} {text!r} holds neither {ANNOTATIONS} nor subfolders; a dataset "
                f"folder has {ANNOTATIONS} (and its images) or class subfolders "
                "(root/<class>/<image>, or root/train/<class>/...)"
            )
        return
    found = "is a file" if Path(text).exists() else "names no built-in and no folder"
    raise ValueError(
        f"{option} {text!r} {found}; pass a built-in ({', '.join(builtin_names())}) or a "
        "dataset folder"
    )


def load_dataset(
    name_or_path: str | os.PathLike[str],
    split: str = "train",
    image_size: int | tuple[int, int] | None = 64,
    n_images: int | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> RegionDataset:
    """Load a built-in benchmark by name or a dataset folder by path.

    * a name in ``builtin_names()`` (``lesions``, ``concepts``, ``digits``): generated with
      ``n_images`` images in total (default 2000, all splits together) at ``image_size``;
    * a folder with ``annotations.csv``: ``AnnotatedFolder`` (``seed`` drives the split when
      the CSV has none; ``n_images`` keeps at most n images of the split, a class-stratified
      cut seeded by ``seed``);
    * another folder: the ImageFolder layout (class subfolders, or train/val/test of them).

    ``kwargs`` go to the dataset (e.g. ``num_classes`` for ``concepts``, ``transform``,
    ``augment`` or ``channels`` for folders). Images are resized to ``image_size`` (None keeps
    folder images at their native size).
    """
    check_split(split)
    check_dataset_name(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in BUILTINS:
        if image_size is None or not isinstance(image_size, int):
            raise ValueError(f"built-in benchmarks need an int image_size, got {image_size!r}")
        return builtin_dataset(
            name_or_path,
            split=split,
            image_size=image_size,
            n_images=DEFAULT_N_IMAGES if n_images is None else n_images,
            seed=seed,
            **kwargs,
        )
    path = Path(name_or_path)
    if not path.exists():
        text = str(name_or_path)
        if os.sep not in text and "/" not in text and not path.suffix:
            raise ValueError(
                f"unknown dataset {text!r}: not a built-in ({', '.join(builtin_names())}) and no "
                "folder of that name exists"
            )
        raise FileNotFoundError(f"dataset folder {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{path} is a file; a dataset is a folder (with {ANNOTATIONS}) or a name")
    # every option named before a file is read (unknown names listed with the accepted ones)
    check_folder_options(split=split, image_size=image_size, seed=seed, n_images=n_images, **kwargs)
    if (path / ANNOTATIONS).is_file():
        return AnnotatedFolder(
            path, split=split, image_size=image_size, seed=seed, n_images=n_images, **kwargs
        )
    return image_folder(
        path, split=split, image_size=image_size, seed=seed, n_images=n_images, **kwargs
    )
