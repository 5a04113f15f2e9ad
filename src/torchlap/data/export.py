"""Write a built-in benchmark to disk in the annotated folder format."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from torchlap._checks import check_seed
from torchlap.data._base import SPLITS
from torchlap.data.annotations import ANNOTATIONS, ImageRecord, write_annotations
from torchlap.data.builtin import builtin_dataset
from torchlap.io import as_path, atomic_folder, clean_stale_temps


def export_builtin(name: str, out: str | os.PathLike[str], **options: Any) -> Path:
    """Write every split of built-in benchmark ``name`` to the new folder ``out``.

    Layout: ``images/<split>/<index>.png``, ``masks/<split>/<index>.png`` (only for images
    with a region; 255 = region), ``annotations.csv`` (one row per box, with the split) and
    ``dataset.json`` (how to regenerate it: name, seed, sizes, classes, normalization).
    ``options`` are the benchmark's (``n_images``, ``image_size``, ``seed``, ...).
    ``AnnotatedFolder(out, split=s)`` yields exactly the samples of the benchmark's split s.

    The folder is assembled in a temporary folder next to ``out`` and renamed into place, so
    ``out`` either appears complete or not at all. ``out`` must not exist or be an empty
    folder (``FileExistsError`` otherwise, saying whether it is a file or a non-empty folder).
    ``seed`` (option) must be an int >= 0, as ``torchlap train`` requires.
    """
    if "seed" in options:
        check_seed(options["seed"])
    out_path = as_path(out, "out")
    if out_path.name in ("", ".."):  # "", ".", "/", "..": a folder the rename cannot replace
        raise FileExistsError(
            f"{os.fspath(out)!r} names no new folder (it is the current, a parent or the root "
            "folder); the export writes a new folder: pass a path that does not exist yet, "
            "e.g. data/lesions"
        )
    if out_path.is_symlink():
        raise FileExistsError(
            f"{out_path} is a symbolic link; the export renames a finished folder into place, "
            "which would replace the link: pass the folder's real path, or a new path"
        )
    blocking = next((p for p in out_path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise FileExistsError(
            f"{blocking} is a file, so {out_path} cannot be a folder under it; pass a path "
            "whose parent folders are folders (or do not exist yet)"
        )
    if out_path.exists() and not out_path.is_dir():
        raise FileExistsError(
            f"{out_path} is a file, not a folder; the export writes a new folder: pass a path "
            "that does not exist yet, or an empty folder"
        )
    if out_path.exists() and any(out_path.iterdir()):
        raise FileExistsError(
            f"{out_path} already exists and is not an empty folder; pass a path that does not "
            "exist yet, or an empty folder"
        )
    datasets = {split: builtin_dataset(name, split=split, **options) for split in SPLITS}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out_path.parent, recursive=False)  # staging folders of killed exports
    with atomic_folder(out_path) as staging:
        records = []
        for split, dataset in datasets.items():
            if len(dataset) == 0:
                continue
            (staging / "images" / split).mkdir(parents=True)
            (staging / "masks" / split).mkdir(parents=True)
            digits = max(5, len(str(len(dataset) - 1)))
            for first, batch in dataset.iter_chunks():  # one chunk in memory at a time
                for offset in range(len(batch.labels)):
                    records.append(
                        _write_image(staging, split, f"{first + offset:0{digits}d}.png", batch,
                                     offset, dataset.classes)
                    )  # fmt: skip
        write_annotations(staging / ANNOTATIONS, records, regions=True)  # exact regions
        metadata = datasets["train"].metadata()
        metadata["split_sizes"] = {s: len(d) for s, d in datasets.items()}
        (staging / "dataset.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return out_path


def _write_image(
    staging: Path, split: str, stem: str, batch: Any, row: int, classes: list[str]
) -> ImageRecord:
    """Write row ``row`` of a generated batch (its image, and its mask when it has a region)
    and return its annotation record."""
    image = batch.images[row].permute(1, 2, 0).numpy()
    image_path = f"images/{split}/{stem}"
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(staging / image_path)
    boxes = batch.boxes[row][batch.box_valid[row]].tolist()
    mask_path = None
    if bool(batch.masks[row].any()):
        mask_path = f"masks/{split}/{stem}"
        mask = batch.masks[row].numpy().astype(np.uint8) * 255
        Image.fromarray(mask).save(staging / mask_path)
    return ImageRecord(
        image=image_path,
        label=classes[int(batch.labels[row])],
        split=split,
        boxes=[tuple(box) for box in boxes],
        mask=mask_path,
    )
