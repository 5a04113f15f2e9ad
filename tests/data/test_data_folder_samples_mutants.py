"""AnnotatedFolder's boxes, masks, samples, warnings and saving, and image_folder's layouts and
refusals, on tiny folders written here, against values worked out by hand from the format.

Written from a mutation run of torchlap/data/folder.py: each test pins a rule a survivor broke.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from folder_files import SPLIT_ROWS, make_folder, plain_folder
from PIL import Image

from torchlap.data import AnnotatedFolder, ImageRecord, image_folder

# --- boxes, masks and samples ---------------------------------------------------------------


def _boxed(tmp_path: Path, box: str, mask: str = "", verify_images: bool = True):
    """A 10-wide, 8-high image with ``box`` ("x0,y0,x1,y1") in train, and a plain one."""
    root = make_folder(tmp_path / "d", [f"a.png,a,train,{box},{mask}", "b.png,b,train,,,,,"])
    return lambda: AnnotatedFolder(root, verify_images=verify_images)


@pytest.mark.parametrize("verify_images", [True, False])
@pytest.mark.parametrize(
    "box", ["0,0,10.5,8", "0,0,10,8.5", "0,0,11,1", "0,0,1,9", "9,7,10.01,8", "9,7,10,8.01"]
)
def test_a_box_crossing_the_right_or_bottom_edge_is_refused(tmp_path, box, verify_images):
    make = _boxed(tmp_path, box, verify_images=verify_images)
    message = (
        r"line 2: box \(.*\) lies outside image a\.png of width 10 and height 8; boxes outside "
        r"the image are rejected, not clipped: 0 <= x <= 10 and 0 <= y <= 8"
    )
    with pytest.raises(ValueError, match=message):
        make()[0]


@pytest.mark.parametrize("verify_images", [True, False])
def test_a_box_on_the_whole_image_is_taken(tmp_path: Path, verify_images: bool) -> None:
    sample = _boxed(tmp_path, "0,0,10,8", verify_images=verify_images)()[0]
    assert sample["boxes"].tolist() == [[0.0, 0.0, 10.0, 8.0]]
    assert sample["boxes"].dtype == torch.float32
    assert torch.equal(sample["mask"], torch.ones(8, 10, dtype=torch.uint8))


def test_a_negative_box_from_an_importer_is_refused(tmp_path: Path) -> None:
    root = plain_folder(tmp_path, 2, size=(10, 8))
    for box in [(-0.5, 0.0, 2.0, 2.0), (0.0, -1.0, 2.0, 2.0)]:
        records = [
            ImageRecord("0.png", "a", "train", boxes=[box], box_sources=["row 7"]),
            ImageRecord("1.png", "b", "train"),
        ]
        with pytest.raises(ValueError, match=r"^row 7: box \(.*\) lies outside image 0\.png"):
            AnnotatedFolder.from_records(root, records, source="s", has_regions=True)


@pytest.mark.parametrize("verify_images", [True, False])
def test_a_box_between_pixel_centres_needs_a_mask(tmp_path: Path, verify_images: bool) -> None:
    # centres at 2.5 and 3.5: the box [2.6, 3.4) in x holds none of them
    thin = "2.6,1,3.4,5"
    with pytest.raises(ValueError, match=r"line 2: box .* of image a\.png covers no pixel"):
        _boxed(tmp_path / "1", thin, verify_images=verify_images)()[0]
    # a box holding one centre (x 2.5) is taken, its mask that one column
    sample = _boxed(tmp_path / "2", "2.4,1,3.4,5", verify_images=verify_images)()[0]
    expected = torch.zeros(8, 10, dtype=torch.uint8)
    expected[1:5, 2] = 1  # rows whose centres 1.5 .. 4.5 lie in [1, 5)
    assert torch.equal(sample["mask"], expected)
    # with a mask the box need not hold a centre: the mask is the region
    root = tmp_path / "3"
    mask = np.zeros((8, 10), np.uint8)
    mask[0, 0] = 255
    make = _boxed(root, thin, mask="m.png", verify_images=verify_images)
    Image.fromarray(mask).save(root / "d" / "m.png")
    assert torch.equal(make()[0]["mask"], torch.from_numpy(mask > 0).to(torch.uint8))


@pytest.mark.parametrize("verify_images", [True, False])
def test_a_mask_of_another_size_is_refused(tmp_path: Path, verify_images: bool) -> None:
    make = _boxed(tmp_path, ",,,", mask="m.png", verify_images=verify_images)
    Image.new("L", (10, 9), 255).save(tmp_path / "d" / "m.png")
    with pytest.raises(ValueError, match=r"mask m\.png is 10x9 but image a\.png is 10x8"):
        make()[0]
    Image.new("L", (11, 8), 255).save(tmp_path / "d" / "m.png")
    with pytest.raises(ValueError, match=r"mask m\.png is 11x8 but image a\.png is 10x8"):
        make()[0]
    (tmp_path / "d" / "m.png").write_text("no image")
    with pytest.raises(ValueError, match=r"line 2: mask file .*m\.png is unreadable"):
        make()[0]


def test_a_mask_without_boxes_may_be_empty(tmp_path: Path) -> None:
    make = _boxed(tmp_path, ",,,", mask="m.png")
    Image.new("L", (10, 8), 0).save(tmp_path / "d" / "m.png")
    sample = make()[0]  # an empty region: a negative, not refused
    assert int(sample["mask"].sum()) == 0 and sample["boxes"].shape == (0, 4)


def test_samples_are_indexed_from_either_end(tmp_path: Path) -> None:
    dataset = AnnotatedFolder(make_folder(tmp_path / "d", SPLIT_ROWS), split="val")
    assert len(dataset) == 2
    assert dataset[-1]["index"] == 1 and dataset[-2]["index"] == 0
    assert dataset[-1]["label"] == 1 and dataset[-2]["label"] == 0  # b1.png, a1.png
    for index in (2, -3, 10):
        with pytest.raises(IndexError, match=rf"^index {index} out of range for 2 images$"):
            dataset[index]


def test_rotated_images_are_counted_once_per_dataset(tmp_path: Path, caplog) -> None:
    root = make_folder(tmp_path / "d", SPLIT_ROWS)
    exif = Image.Exif()
    exif[0x0112] = 6
    for name in ("a0.png", "b1.png"):
        Image.new("L", (10, 8), 60).save(root / name, exif=exif)
    with caplog.at_level(logging.WARNING, logger="torchlap.data.folder"):
        dataset = AnnotatedFolder(root)
        dataset[0]
        dataset.with_split("val")[1]
    (record,) = caplog.records
    message = record.getMessage()
    assert "a0.png has EXIF orientation 6 (2 image(s) have an EXIF orientation other than 1, a" in (
        message
    )
    caplog.clear()
    Image.new("L", (10, 8), 60).save(root / "a0.png")  # one rotated image left
    with caplog.at_level(logging.WARNING, logger="torchlap.data.folder"):
        AnnotatedFolder(root)
    (record,) = caplog.records
    assert "b1.png has EXIF orientation 6 (a viewer shows it rotated" in record.getMessage()


def test_a_rotated_image_is_said_when_it_loads_without_verification(tmp_path, caplog) -> None:
    root = make_folder(tmp_path / "d", SPLIT_ROWS)
    exif = Image.Exif()
    exif[0x0112] = 3
    Image.new("L", (10, 8), 60).save(root / "b0.png", exif=exif)
    with caplog.at_level(logging.WARNING, logger="torchlap.data.folder"):
        dataset = AnnotatedFolder(root, verify_images=False, channels=1)
        assert not caplog.records  # no header was read
        dataset[0]
        assert not caplog.records
        dataset[1]
        dataset[1]
    (record,) = caplog.records
    assert "b0.png has EXIF orientation 3 (a viewer" in record.getMessage()


def test_save_annotations_checks_overwrite_and_writes_every_split(tmp_path: Path) -> None:
    dataset = AnnotatedFolder(make_folder(tmp_path / "d", SPLIT_ROWS), split="val")
    with pytest.raises(TypeError, match=r"overwrite must be True or False, got 1"):
        dataset.save_annotations(tmp_path / "out.csv", overwrite=1)  # type: ignore[arg-type]
    dataset.save_annotations(tmp_path / "out.csv")
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ["image", "label", "split"]
    written = sorted(line.split(",")[:3] for line in lines[1:])
    assert written == sorted(row.split(",")[:3] for row in SPLIT_ROWS)  # every split
    with pytest.raises(FileExistsError):
        dataset.save_annotations(tmp_path / "out.csv")
    dataset.save_annotations(tmp_path / "out.csv", overwrite=True)


def test_the_repr_names_folder_split_length_and_classes(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", SPLIT_ROWS)
    assert repr(AnnotatedFolder(root, split="val")) == (
        f"AnnotatedFolder(root={str(root)!r}, split='val', len=2, classes=2)"
    )


# --- image_folder ---------------------------------------------------------------------------


def _class_folders(root: Path, layout: dict[str, int]) -> Path:
    """``layout``: relative class folder -> number of 4x4 PNGs in it."""
    for folder, n in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            Image.new("L", (4, 4), k).save(root / folder / f"{k}.png")
    return root


def test_image_folder_reads_split_folders_as_given(tmp_path: Path) -> None:
    root = _class_folders(
        tmp_path, {"train/cat": 2, "train/dog": 1, "val/cat": 1, "val/dog": 1, "test/dog": 1}
    )
    train = image_folder(root)
    assert train.classes == ["cat", "dog"] and train.split_given and not train.has_regions
    assert sorted((r.image, r.label) for r in train.records) == [
        ("train/cat/0.png", "cat"), ("train/cat/1.png", "cat"), ("train/dog/0.png", "dog"),
    ]  # fmt: skip
    test = image_folder(root, split="test")
    assert [(r.image, r.label, r.split) for r in test.records] == [
        ("test/dog/0.png", "dog", "test")
    ]
    assert test.records[0].source == f"{root} image test/dog/0.png"
    assert test[0]["label"] == 1 and test[0]["has_region"] is False


def test_image_folder_without_split_folders_is_split_by_seed(tmp_path: Path) -> None:
    root = _class_folders(tmp_path, {"cat": 10, "dog": 10})
    train = image_folder(root, seed=4)
    assert not train.split_given and train.split_seed == 4
    assert len(train) == 16 and all(r.split == "train" for r in train.records)
    assert {r.label for r in image_folder(root, split="val", seed=4).records} == {"cat", "dog"}


def test_image_folder_refusals_say_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"dataset folder .*none does not exist"):
        image_folder(tmp_path / "none")
    only_val = _class_folders(tmp_path / "v", {"val/cat": 1})
    with pytest.raises(ValueError, match=r"has split folder\(s\) \['val'\] but no train folder"):
        image_folder(only_val)
    files = tmp_path / "files"
    files.mkdir()
    for k in range(9):
        (files / f"note{k}.txt").write_text("x")
    (files / "cat").mkdir()
    message = (
        r"files holds no image files in class subfolders \(it holds cat/, note0\.txt, .*, "
        r"note6\.txt, \.\.\.\); a dataset folder has annotations\.csv or one subfolder"
    )
    with pytest.raises(ValueError, match=message):
        image_folder(files)
    few = tmp_path / "few"
    (few / "cat").mkdir(parents=True)
    (few / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\(it holds a\.txt, cat/\); a dataset"):
        image_folder(few)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no class subfolders"):
        image_folder(empty)
