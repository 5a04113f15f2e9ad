"""Tiny annotated folders for the folder tests: grey PNGs and an annotations.csv."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from torchlap.data import ImageRecord

HEADER = "image,label,split,x_min,y_min,x_max,y_max,mask\n"


def make_folder(
    root: Path, rows: list[str], sizes: dict[str, tuple[int, int]] | None = None
) -> Path:
    """A folder of 8-bit grey PNGs (10 wide, 8 high unless ``sizes`` says (width, height)) for
    every image the ``rows`` (CSV lines after the header) name, and its annotations.csv."""
    root.mkdir(parents=True, exist_ok=True)
    for row in rows:
        name = row.split(",")[0]
        if not (root / name).exists():
            width, height = (sizes or {}).get(name, (10, 8))
            Image.new("L", (width, height), 60).save(root / name)
    (root / "annotations.csv").write_text(HEADER + "".join(row + "\n" for row in rows))
    return root


SPLIT_ROWS = [
    "a0.png,a,train,,,,,",
    "b0.png,b,train,,,,,",
    "a1.png,a,val,,,,,",
    "b1.png,b,val,,,,,",
    "a2.png,a,test,,,,,",
]


def make_records(n: int, split: str | None = None) -> list[ImageRecord]:
    return [
        ImageRecord(image=f"{k}.png", label="ab"[k % 2], split=split, source=f"rec {k}")
        for k in range(n)
    ]


def plain_folder(root: Path, n: int, size: tuple[int, int] = (6, 4)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.new("L", size, 10 * k).save(root / f"{k}.png")
    return root
