"""Triggers of the README refusal rows about data folders and annotation files (not a test
module; see ``readme_refusal_cases``)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from readme_refusal_cases import Trigger, message, scratch

HEADER = "image,label,split,x_min,y_min,x_max,y_max,mask"


def annotated_folder(rows: dict[int, str] | None = None, header: str = HEADER) -> Path:
    """An annotated data folder of 8 images (20x20 px, two classes, boxes), ``rows`` replacing
    the CSV lines of those numbers (line 1 is the header)."""
    root = scratch() / "DATA"
    (root / "img").mkdir(parents=True)
    lines = [header]
    for i in range(8):
        Image.new("RGB", (20, 20), (40 * i, 0, 0)).save(root / "img" / f"{i}.png")
        label, split = ("pos" if i % 2 else "neg"), ("train", "train", "val", "test")[i % 4]
        lines.append(f"img/{i}.png,{label},{split},2,2,10,10,")
    for number, text in (rows or {}).items():
        lines[number - 1] = text
    (root / "annotations.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def class_folders(*names: str) -> Path:
    """A folder of one subfolder of two small images per class name."""
    root = scratch() / "DATA"
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (8, 8), 30 * i).save(root / name / f"{i}.png")
    return root


def load(root: Path, **options: object) -> str:
    """The refusal of ``load_dataset(root, ...)``, with ``root`` written as DATA."""
    from torchlap.data import load_dataset

    text = message(lambda: load_dataset(root, image_size=16, **options))
    return text.replace(str(root), "DATA")


def _bytes_csv(data: bytes) -> Path:
    root = annotated_folder()
    (root / "annotations.csv").write_bytes(data)
    return root


def _latin1() -> str:
    root = annotated_folder()
    text = (root / "annotations.csv").read_text().replace("img/1.png,pos", "img/1.png,p\xe9s")
    (root / "annotations.csv").write_bytes(text.encode("latin-1"))
    return load(root)


def _annotations_folder() -> str:
    root = class_folders("cats", "dogs")
    (root / "annotations.csv").mkdir()
    return load(root)


def _link_loop() -> str:
    root = class_folders("cats", "dogs")
    os.symlink("..", root / "cats" / "loop")
    return load(root)


def _split_link() -> str:
    root = class_folders("train/cats", "train/dogs")
    os.symlink("train", root / "val")
    return load(root)


def _classes_linked_to_one_folder() -> str:
    store = class_folders("pets")
    root = scratch() / "DATA"
    root.mkdir()
    for name in ("cats", "dogs"):
        os.symlink(store / "pets", root / name)
    return load(root)


def _one_image_twice() -> str:
    root = class_folders("train/cats", "train/dogs", "test/cats", "test/dogs")
    (root / "train" / "cats" / "0.png").rename(root / "train" / "cats" / "a.png")
    os.symlink("../../train/cats/a.png", root / "test" / "dogs" / "x.png")
    return load(root)


def _lossy_webp_mask() -> str:
    root = annotated_folder({2: "img/0.png,neg,train,2,2,10,10,m.webp"})
    Image.new("L", (20, 20), 255).save(root / "m.webp", quality=50)
    return load(root)


def _box_on_the_rotated_image() -> str:
    root = annotated_folder()
    rotated = Image.Exif()
    rotated[0x0112] = 6
    Image.new("RGB", (20, 10)).save(root / "img" / "a.jpg", exif=rotated.tobytes())
    lines = (root / "annotations.csv").read_text().splitlines()
    lines[1] = "img/a.jpg,neg,train,0,0,5,15,"
    (root / "annotations.csv").write_text("\n".join(lines) + "\n")
    return load(root)


def _unclosed_quote() -> str:
    root = annotated_folder()
    lines = (root / "annotations.csv").read_text().splitlines()
    lines[1] = '"img/1.png,pos,train'
    (root / "annotations.csv").write_text("\n".join(lines[:3]) + "\n")
    return load(root)


def cases() -> dict[str, list[tuple[int, Trigger]]]:
    """The data rows' triggers."""
    row = "img/5.png,pos,train,2,2,abc,10,"
    return {
        "Malformed `annotations.csv` rows": [
            (
                0,
                lambda: load(
                    annotated_folder(
                        {7: row.replace(",2,2,abc,10,", ",2,2,x,10,").replace("x", "abc")}
                    )
                ),
            ),
            (1, lambda: load(annotated_folder({7: "img/5.png,pos"}))),
        ],
        "Paths leaving the dataset": [
            (0, lambda: load(annotated_folder({4: "../other/x.png,pos,train,2,2,10,10,"}))),
        ],
        "Repeated CSV columns": [
            (0, lambda: load(annotated_folder(header="image,label,split,label"))),
        ],
        "CSV values Python would bend": [
            (0, lambda: load(annotated_folder({2: "img/0.png,neg,train,1_0,2,10,10,"}))),
            (1, lambda: load(annotated_folder({2: "img/0.png,n\x00eg,train,2,2,10,10,"}))),
        ],
        "An unclosed quote in `annotations.csv`": [(0, _unclosed_quote)],
        "A CSV that is not UTF-8": [(0, _latin1)],
        "A CSV field over csv's limit": [
            (
                0,
                lambda: load(
                    annotated_folder({2: "img/0.png," + "x" * 140000 + ",train,2,2,10,10,"})
                ),
            ),
        ],
        "Something else where a dataset's `annotations.csv` goes": [(0, _annotations_folder)],
        "A link in a class folder back into the dataset": [
            (0, _link_loop),
            (4, _split_link),
            (5, _classes_linked_to_one_folder),
            (6, _one_image_twice),
        ],
        "Regions that would be empty or wrong": [
            (0, lambda: load(annotated_folder({3: "img/1.png,pos,train,1.6,3,2.4,10,"}))),
            (4, _lossy_webp_mask),
            (
                6,
                lambda: load(
                    annotated_folder({3: "img/1.png,pos,train,3,3,3.50000001,3.50000001,"})
                ),
            ),
        ],
        "An image with an EXIF orientation other than 1": [(1, _box_on_the_rotated_image)],
        "Folder dataset options of the wrong type": [
            (0, lambda: load(annotated_folder(), seed=1.7)),
            (1, lambda: load(annotated_folder(), verify_images="no")),
            (2, lambda: load(annotated_folder(), channels=True)),
            (7, lambda: load(annotated_folder(), colour=3)),
        ],
        "An empty class folder": [
            (0, lambda: load(_with_empty(class_folders("cats", "dogs"), "birds"))),
        ],
        "Class folders and files a listing would misread": [
            (0, lambda: load(_with_empty(class_folders("cats", "dogs"), ".thumbs", image=True))),
            (1, lambda: load(class_folders("cats", "dogs "))),
        ],
    }


def _with_empty(root: Path, name: str, image: bool = False) -> Path:
    (root / name).mkdir()
    if image:
        Image.new("L", (8, 8)).save(root / name / "0.png")
    return root
