"""`torchlap explain` on a dataset root (a folder with ``annotations.csv``): its images in the
CSV's order with their labels, named by their path in the CSV, never its masks; a listed image
missing on disk is refused naming the CSV line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from torchlap.evaluate.explain import collect_images

ROWS = [  # image, label, mask (written out by hand: the expected outputs read from here)
    ("images/b/0002.png", "normal", ""),
    ("images/a/0001.png", "pneumonia", "masks/0001.png"),
    ("top.png", "normal", ""),
]


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(path)


def _dataset(root: Path, rows: list[tuple[str, str, str]], missing: str | None = None) -> Path:
    lines = ["image,label,mask"] + [",".join(row) for row in rows]
    root.mkdir(parents=True)
    (root / "annotations.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for image, _, mask in rows:
        if image != missing:
            _png(root / image)
        if mask:
            _png(root / mask)
    _png(root / "stray" / "unlisted.png")  # an image file the CSV does not list
    return root


def test_a_dataset_root_gives_its_listed_images_with_their_labels(tmp_path) -> None:
    root = _dataset(tmp_path / "data", ROWS)
    found = collect_images([root])
    expected = [(root / image, image.removesuffix(".png"), label) for image, label, _ in ROWS]
    assert [(f.path, f.name, f.label) for f in found] == expected
    # the masks and the unlisted file are not explained
    assert not any("masks" in f.name or "unlisted" in f.name for f in found)


def test_a_listed_image_missing_on_disk_is_refused_naming_the_csv_line(tmp_path) -> None:
    root = _dataset(tmp_path / "data", ROWS, missing="images/a/0001.png")
    with pytest.raises(FileNotFoundError, match=r"annotations\.csv line 3.*: image file .*"
                       r"images/a/0001\.png not found"):  # fmt: skip
        collect_images([root])
