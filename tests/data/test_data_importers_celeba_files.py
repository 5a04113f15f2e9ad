"""CelebA's own files read by :func:`celeba`, the expected records written by hand from the
files' format: ``list_attr_celeba.txt`` is the image count (line 1), the attribute names
(line 2), then ``<image> <v1> ... <v40>`` with values 1 / -1; ``list_eval_partition.txt`` is
``<image> 0|1|2`` for train, val and test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from torchlap.data import celeba

NAMES = "Bald Smiling Young"
#: image -> (Bald, Smiling, Young)
VALUES = {
    "1.jpg": ("-1", "1", "1"),
    "2.jpg": ("1", "-1", "1"),
    "3.jpg": ("-1", "1", "-1"),
    "4.jpg": ("-1", "-1", "-1"),
}
IMAGES = "img_align_celeba"
PARTITION = {"1.jpg": "0", "2.jpg": "0", "3.jpg": "1", "4.jpg": "2"}


def _celeba(root: Path, attr_lines: list[str] | None = None) -> Path:
    """Four 4x4 images in img_align_celeba/ and their attribute and partition files."""
    (root / "img_align_celeba").mkdir(parents=True)
    for name in VALUES:
        Image.new("RGB", (4, 4)).save(root / "img_align_celeba" / name)
    if attr_lines is None:
        attr_lines = ["4", NAMES, *(f"{n}  {' '.join(v)}" for n, v in VALUES.items())]
    (root / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    partition = "".join(f"{n} {s}\n" for n, s in PARTITION.items())
    (root / "list_eval_partition.txt").write_text(partition)
    return root


def _records(dataset: object) -> list[tuple[str, str, str]]:
    return [(r.image, r.label, r.split) for r in dataset.records]  # type: ignore[attr-defined]


def test_the_official_partition_gives_each_image_its_split_and_label(tmp_path: Path) -> None:
    root = _celeba(tmp_path / "c")
    kept = {}
    for split in ("train", "val", "test"):
        dataset = celeba(root, split=split, partition_file="list_eval_partition.txt")
        kept[split] = _records(dataset)
        assert dataset.classes == ["not_smiling", "smiling"] and dataset.has_regions is False
    assert kept == {
        "train": [
            (f"{IMAGES}/1.jpg", "smiling", "train"),
            (f"{IMAGES}/2.jpg", "not_smiling", "train"),
        ],
        "val": [(f"{IMAGES}/3.jpg", "smiling", "val")],
        "test": [(f"{IMAGES}/4.jpg", "not_smiling", "test")],
    }
    bald = celeba(root, "Bald", split="train", partition_file="list_eval_partition.txt")
    assert [label for _, label, _ in _records(bald)] == ["not_bald", "bald"]


def test_blank_lines_are_skipped_and_lines_numbered_as_in_the_file(tmp_path: Path) -> None:
    lines = ["4", NAMES, "1.jpg -1 1 1", "", "2.jpg 1 -1 1", "  ", "3.jpg -1 1 -1", "4.jpg -1 0 1"]
    root = _celeba(tmp_path / "c", lines)
    path = root / "list_attr_celeba.txt"
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} line 8: Smiling is '0'; "):
        celeba(root)
    (root / "list_eval_partition.txt").write_text("\n1.jpg 0\n\n2.jpg 1\n3.jpg 2\n4.jpg 0\n")
    lines[-1] = "4.jpg -1 -1 1"
    path.write_text("\n".join(lines) + "\n")
    dataset = celeba(root, "Smiling", split="val", partition_file="list_eval_partition.txt")
    assert _records(dataset) == [("img_align_celeba/2.jpg", "not_smiling", "val")]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["4"], "{p}: needs the image count and the attribute-name line"),
        ([], "{p}: needs the image count and the attribute-name line"),
        (
            ["5", NAMES, *(f"{n} {' '.join(v)}" for n, v in VALUES.items())],
            "{p}: line 1 announces 5 images, found 4",
        ),
        (["4", NAMES, "1.jpg -1 1"], "{p} line 3: expected an image name and 3 values, got 3 fie"),
        (["4", NAMES, "1.jpg -1 1 1 1"], "{p} line 3: expected an image name and 3 values, got 5"),
        (["4", NAMES, "1.jpg -1 +1 1"], "{p} line 3: Smiling is '+1'; accepted: 1 or -1"),
    ],
)
def test_malformed_attribute_files_are_named(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    root = _celeba(tmp_path / "c", lines)
    with pytest.raises(ValueError) as caught:
        celeba(root)
    assert str(caught.value).startswith(message.format(p=root / "list_attr_celeba.txt"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.jpg 0\n2.jpg 3\n", "{p} line 2: expected '<image> 0|1|2', got '2.jpg 3'"),
        ("1.jpg 0\n2.jpg\n", "{p} line 2: expected '<image> 0|1|2', got '2.jpg'"),
        ("1.jpg 0 1\n", "{p} line 1: expected '<image> 0|1|2', got '1.jpg 0 1'"),
        ("1.jpg 0\n2.jpg 1\n3.jpg 2\n", "{a} line 6: image 4.jpg is missing from part.txt"),
    ],
)
def test_malformed_partition_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    root = _celeba(tmp_path / "c")
    (root / "part.txt").write_text(text)
    with pytest.raises(ValueError) as caught:
        celeba(root, partition_file="part.txt")
    expected = message.format(p=root / "part.txt", a=root / "list_attr_celeba.txt")
    assert str(caught.value) == expected
    with pytest.raises(FileNotFoundError) as missing:
        celeba(root, partition_file="none.txt")
    assert str(missing.value) == f"CelebA partition file {root / 'none.txt'} not found"


def test_a_file_of_the_two_header_lines_alone_has_no_images(tmp_path: Path) -> None:
    """The count and names lines are enough to be read: 0 images announced and found is then
    refused as a dataset without images, not as a file missing its header."""
    root = _celeba(tmp_path / "c", ["0", NAMES])
    with pytest.raises(ValueError) as caught:
        celeba(root)
    assert str(caught.value) == f"{root / 'list_attr_celeba.txt'}: no images"


def test_images_are_not_decoded_up_front_unless_asked(tmp_path: Path) -> None:
    """verify_images defaults to False for CelebA (202,599 images): an unreadable image is
    found when its sample loads, or up front with verify_images=True; a missing one always
    up front."""
    root = _celeba(tmp_path / "c")
    (root / IMAGES / "2.jpg").write_bytes(b"not a jpeg")
    dataset = celeba(root, partition_file="list_eval_partition.txt")
    assert [Path(r.image).name for r in dataset.records] == ["1.jpg", "2.jpg"]
    with pytest.raises(ValueError, match=r"line 4: image file .*2\.jpg is unreadable"):
        celeba(root, partition_file="list_eval_partition.txt", verify_images=True)
    (root / IMAGES / "2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"line 4: image file .*2\.jpg"):
        celeba(root, partition_file="list_eval_partition.txt")
