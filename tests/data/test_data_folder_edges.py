"""AnnotatedFolder at edges its other tests leave open: which headers are read for given
channels, with and without verification.

Written from a mutation run of torchlap/data/folder.py (session 37): each test pins a rule a
survivor broke, with the expected values worked out by hand from the documented behaviour.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from folder_files import SPLIT_ROWS, make_folder
from PIL import Image

from torchlap.data import AnnotatedFolder, ImageRecord, image_folder
from torchlap.data import folder as folder_module


def test_given_channels_do_not_stop_verification(tmp_path: Path) -> None:
    # verify_images reads every header whatever ``channels`` says: the native size is known
    # and a box outside its image is refused when the dataset is made, not when it loads
    root = make_folder(tmp_path / "d", SPLIT_ROWS)
    assert AnnotatedFolder(root, channels=1).image_size == (8, 10)
    assert AnnotatedFolder(root, channels=3).image_size == (8, 10)
    rows = ["a0.png,a,train,0,0,11,8,", *SPLIT_ROWS[1:]]  # x_max 11 > width 10
    outside = make_folder(tmp_path / "o", rows)
    with pytest.raises(ValueError, match=r"line 2: box \(0, 0, 11, 8\) lies outside image a0"):
        AnnotatedFolder(outside, channels=1)


def test_without_verification_given_channels_open_no_header(tmp_path: Path, monkeypatch) -> None:
    # only the files' existence is checked: with ``channels`` given no header decides them
    root = make_folder(tmp_path / "d", SPLIT_ROWS)
    opened: list[Path] = []
    header = folder_module.image_header
    monkeypatch.setattr(folder_module, "image_header", lambda p: opened.append(p) or header(p))
    dataset = AnnotatedFolder(root, verify_images=False, channels=1)
    assert opened == [] and dataset.image_size is None and dataset.n_channels == 1
    assert dataset[0]["image"].shape == (1, 8, 10)
    AnnotatedFolder(root, verify_images=False)  # channels inferred: the grey headers are read
    assert len(opened) == len(SPLIT_ROWS)


def test_with_split_decodes_only_masks_next_to_boxes(tmp_path: Path) -> None:
    # another split's images: one with boxes and no mask file (its boxes are its region), one
    # with an empty mask and no boxes (a negative): both taken, nothing else decoded
    rows = [
        "t0.png,a,train,,,,,",
        "t1.png,b,train,,,,,",
        "v0.png,a,val,1,1,4,4,",
        "v1.png,b,val,,,,,empty.png",
    ]
    root = make_folder(tmp_path / "d", rows)
    Image.new("L", (10, 8), 0).save(root / "empty.png")
    val = AnnotatedFolder(root).with_split("val")
    assert int(val[0]["mask"].sum()) == 3 * 3 and int(val[1]["mask"].sum()) == 0


def test_a_class_list_of_eleven_is_shown_cut_after_ten(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", ["0.png,zz,train,,,,,"])
    records = AnnotatedFolder(root, verify_images=False).records
    eleven = [f"c{k:02d}" for k in range(11)]
    message = r"the 11 known classes are c00, c01, .*, c09, \.\.\.$"
    with pytest.raises(ValueError, match=message):
        AnnotatedFolder.from_records(root, records, source="s", has_regions=False, classes=eleven)


def test_a_record_without_box_sources_has_its_boxes_checked_all_the_same(tmp_path: Path) -> None:
    # every box is checked against its image: a record built by hand names no source per box,
    # and its boxes are still checked (named by the record's source), not left unchecked
    root = make_folder(tmp_path / "d", SPLIT_ROWS[:2])
    records = [
        ImageRecord("a0.png", "a", "train", boxes=[(0.0, 0.0, 99.0, 99.0)], source="my list"),
        ImageRecord("b0.png", "b", "train"),
    ]
    with pytest.raises(ValueError, match=r"^my list: box \(0, 0, 99, 99\) lies outside image a0"):
        AnnotatedFolder.from_records(root, records, source="s", has_regions=True)
    records[0] = ImageRecord("a0.png", "a", "train", boxes=[(0.0, 0.0, 99.0, 99.0)])
    with pytest.raises(ValueError, match=r"^image a0.png: box \(0, 0, 99, 99\) lies outside"):
        AnnotatedFolder.from_records(root, records, source="s", has_regions=True)
    records[0] = ImageRecord("a0.png", "a", "train", boxes=[(0.0, 0.0, 2.0, 2.0)])
    folder = AnnotatedFolder.from_records(root, records, source="s", has_regions=True)
    assert folder[0]["boxes"].tolist() == [[0.0, 0.0, 2.0, 2.0]]


def test_box_sources_that_do_not_pair_with_the_boxes_are_refused(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", SPLIT_ROWS[:2])
    two_sources = ["line 2", "line 3"]
    records = [
        ImageRecord("a0.png", "a", "train", boxes=[(0.0, 0.0, 2.0, 2.0)], box_sources=two_sources),
        ImageRecord("b0.png", "b", "train"),
    ]
    message = r"^a record: the record of image 'a0.png' has 1 boxes but 2 box_sources; .* one per"
    with pytest.raises(ValueError, match=message):
        AnnotatedFolder.from_records(root, records, source="s", has_regions=True)


def test_an_empty_mask_without_boxes_loads_without_verification(tmp_path: Path) -> None:
    # a mask file with no region and no boxes is a negative, also when checked only on loading
    rows = ["a0.png,a,train,,,,,empty.png", "b0.png,b,train,,,,,"]
    root = make_folder(tmp_path / "d", rows)
    Image.new("L", (10, 8), 0).save(root / "empty.png")
    sample = AnnotatedFolder(root, verify_images=False)[0]
    assert int(sample["mask"].sum()) == 0 and sample["boxes"].shape == (0, 4)


@pytest.mark.parametrize(
    ("option", "error", "message"),
    [
        ({"seed": 1.7}, TypeError, r"^seed must be an int from 0 to 4294967295, got 1\.7"),
        ({"split": "dev"}, ValueError, r"^unknown split 'dev'"),
    ],
)
def test_image_folder_checks_its_options_before_listing_any_file(
    tmp_path: Path, option: dict, error: type, message: str
) -> None:
    # called directly (not through load_dataset): a bad option is named, not the folder
    (tmp_path / "readme.txt").write_text("no class folders here")
    with pytest.raises(error, match=message):
        image_folder(tmp_path, **option)


def test_a_folder_without_class_images_shows_eight_entries_then_dots(tmp_path: Path) -> None:
    # the message lists the folder's first 8 entries, with ", ..." only when there are more
    for notes, shown in ((7, r"note6\.txt\); a dataset"), (8, r"note6\.txt, \.\.\.\); a dataset")):
        root = tmp_path / str(notes)
        (root / "cat").mkdir(parents=True)  # a class folder without images
        for k in range(notes):
            (root / f"note{k}.txt").write_text("x")
        with pytest.raises(ValueError, match=r"\(it holds cat/, note0\.txt, .*" + shown):
            image_folder(root)


@pytest.mark.parametrize(
    ("row", "said"),
    [
        ("x" * 300 + ".png,b,train,,,,,", r"line 3: image path 'x{300}\.png' is"),
        ("b.png,b,train,,,,," + "m" * 300 + ".png", r"line 3: mask path 'm{300}\.png' is"),
        ("/".join(["y" * 250] * 16) + "/b.png,b,train,,,,,", r"line 3: image file '.*/b\.png' is"),
    ],
    ids=["image name", "mask name", "whole path"],
)
@pytest.mark.parametrize("verify_images", [True, False])
def test_a_path_too_long_for_the_file_system_is_named_with_its_line(
    tmp_path: Path, row: str, said: str, verify_images: bool
) -> None:
    """Before: pathlib's bare ``[Errno 36] File name too long`` (an OSError naming no line)."""
    root = make_folder(tmp_path / "d", ["a.png,a,train,,,,,", "b.png,b,train,,,,,"])
    lines = (root / "annotations.csv").read_text().splitlines()
    (root / "annotations.csv").write_text("\n".join([*lines[:2], row]) + "\n")
    accepted = (
        r"too long for a path: file and folder names take at most 255 bytes each, a path 4096"
    )
    with pytest.raises(ValueError, match=rf"{said} {accepted}$"):
        AnnotatedFolder(root, verify_images=verify_images)
