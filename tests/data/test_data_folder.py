"""AnnotatedFolder: exact round trip of exported benchmarks, splits, layouts, bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.data import (
    AnnotatedFolder,
    Concepts,
    Digits,
    Lesions,
    default_normalization,
    export_builtin,
    image_folder,
    load_dataset,
)

HEADER = ["image", "label", "split", "x_min", "y_min", "x_max", "y_max", "mask"]


def _png(path: Path, size: tuple[int, int] = (20, 16), mode: str = "L", value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode != "RGB" else (value, 20, 200)).save(path)


def _csv(root: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "annotations.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return root / "annotations.csv"


@pytest.fixture
def good_folder(tmp_path: Path) -> Path:
    """Six 20x16 grayscale images, two classes, every split, boxes and one mask."""
    root = tmp_path / "good"
    for k in range(6):
        _png(root / f"img/{k}.png", value=40 * k)
    mask = np.zeros((16, 20), dtype=np.uint8)
    mask[2:6, 3:9] = 255
    Image.fromarray(mask).save(root / "img/mask0.png")
    _csv(
        root,
        [
            ["img/0.png", "sick", "train", 3, 2, 9, 6, "img/mask0.png"],
            ["img/0.png", "sick", "train", 10, 10, 20, 16, ""],
            ["img/1.png", "healthy", "train", "", "", "", "", ""],
            ["img/2.png", "sick", "val", 0, 0, 5.5, 4.25, ""],
            ["img/3.png", "healthy", "val", "", "", "", "", ""],
            ["img/4.png", "sick", "test", 1, 1, 2, 2, ""],
            ["img/5.png", "healthy", "test", "", "", "", "", ""],
        ],
    )
    return root


def _assert_same_sample(a: dict, b: dict) -> None:
    assert torch.equal(a["image"], b["image"])
    assert a["label"] == b["label"]
    assert torch.equal(a["boxes"], b["boxes"])
    assert torch.equal(a["mask"], b["mask"])
    assert a["has_region"] == b["has_region"] and a["index"] == b["index"]


@pytest.mark.parametrize(
    ("cls", "name", "extra"),
    [(Lesions, "lesions", {}), (Concepts, "concepts", {}), (Digits, "digits", {})],
)
def test_export_round_trips_exactly(tmp_path: Path, cls: type, name: str, extra: dict) -> None:
    options = {"n_images": 50, "image_size": 64, "seed": 7, **extra}
    out = export_builtin(name, tmp_path / name, **options)
    assert (out / "annotations.csv").is_file() and (out / "dataset.json").is_file()
    for split in ("train", "val", "test"):
        original = cls(split=split, **options)
        loaded = AnnotatedFolder(out, split=split)
        assert loaded.classes == original.classes
        assert loaded.n_channels == original.n_channels
        assert loaded.image_size == original.image_size
        assert len(loaded) == len(original)
        for index in range(len(original)):
            _assert_same_sample(loaded[index], original[index])


def test_export_refuses_a_non_empty_folder_and_leaves_nothing_on_error(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("x")
    with pytest.raises(FileExistsError, match="already exists"):
        export_builtin("lesions", tmp_path / "taken", n_images=10)
    with pytest.raises(ValueError, match="image_size"):
        export_builtin("lesions", tmp_path / "new", n_images=10, image_size=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_reads_boxes_masks_and_splits(good_folder: Path) -> None:
    train = AnnotatedFolder(good_folder, split="train")
    assert train.classes == ["healthy", "sick"]
    assert train.n_channels == 1 and train.image_size == (16, 20)
    assert (train.mean, train.std) == default_normalization(1)
    first = train[0]
    assert first["label"] == 1 and first["has_region"] is True
    assert first["boxes"].tolist() == [[3, 2, 9, 6], [10, 10, 20, 16]]
    assert first["mask"].sum() == 24  # the given mask wins over the union of the boxes
    assert abs(float(first["image"][0, 0, 0]) - 0.0) < 1e-7
    second = train[1]
    assert second["boxes"].shape == (0, 4) and second["mask"].sum() == 0
    val = AnnotatedFolder(good_folder, split="val")
    assert val[0]["boxes"].tolist() == [[0, 0, 5.5, 4.25]]
    assert val[0]["mask"].sum() == 5 * 4  # union of the box: pixel centres inside
    assert abs(float(val[0]["image"].mean()) - 80 / 255) < 1e-6


def test_load_dataset_resizes_boxes_and_masks(good_folder: Path) -> None:
    dataset = load_dataset(good_folder, split="train", image_size=32)
    sample = dataset[0]
    assert sample["image"].shape == (1, 32, 32) and sample["mask"].shape == (32, 32)
    assert sample["boxes"].tolist()[0] == pytest.approx([3 * 1.6, 2 * 2.0, 9 * 1.6, 6 * 2.0])
    augmented = AnnotatedFolder(good_folder, split="train", image_size=24, augment=True)
    assert augmented[0]["image"].shape == (1, 24, 24)


def test_seeded_split_is_recorded_and_reproducible(tmp_path: Path) -> None:
    root = tmp_path / "nosplit"
    rows = []
    for k in range(30):
        _png(root / f"{k}.png")
        rows.append([f"{k}.png", "a" if k % 3 else "b"])
    _csv(root, rows, header=["image", "label"])
    first = AnnotatedFolder(root, split="train", seed=5)
    again = AnnotatedFolder(root, split="train", seed=5)
    other = AnnotatedFolder(root, split="train", seed=6)
    assert first.split_assignment == again.split_assignment
    assert first.split_assignment != other.split_assignment
    assert sorted(first.split_assignment) == sorted(f"{k}.png" for k in range(30))
    counts = {s: list(first.split_assignment.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 24, "val": 3, "test": 3}
    assert first.has_regions is False and first[0]["has_region"] is False
    assert first.metadata()["split_seed"] == 5
    first.save_annotations(root / "annotations.csv", overwrite=True)  # the CSV it was read from
    reloaded = AnnotatedFolder(root, split="val")
    assert reloaded.split_given and reloaded.split_assignment == first.split_assignment


def test_image_folder_layouts(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for label in ("cat", "dog"):
        for k in range(10):
            _png(flat / label / f"{k}.png", mode="RGB")
    dataset = load_dataset(flat, split="test", image_size=8)
    assert dataset.classes == ["cat", "dog"] and dataset.n_channels == 3 and len(dataset) == 2
    assert dataset[0]["image"].shape == (3, 8, 8) and dataset[0]["has_region"] is False
    nested = tmp_path / "nested"
    for split, n in (("train", 3), ("val", 1)):
        for label in ("cat", "dog"):
            for k in range(n):
                _png(nested / split / label / f"{k}.png")
    assert len(image_folder(nested, split="train")) == 6
    assert len(image_folder(nested, split="val")) == 2
    with pytest.raises(ValueError, match="test"):
        image_folder(nested, split="test")
    _png(nested / "test" / "bird" / "0.png")
    with pytest.raises(ValueError, match="'bird' appears only in the test"):
        image_folder(nested, split="train")


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    # used to say "holds no image files in class subfolders (it holds birds/, cats/, dogs/)"
    flat = tmp_path / "flat"
    for label in ("cats", "dogs"):
        for k in range(10):
            _png(flat / label / f"{k}.png")
    (flat / "birds").mkdir()
    (flat / "birds" / "notes.txt").write_text("no images")
    message = r"class folder\(s\) birds/ hold no image files \(extensions .*\.png.*\), so their"
    with pytest.raises(ValueError, match=message):
        image_folder(flat, split="train")
    check = CliRunner().invoke(app, ["data", "check", str(flat)])
    assert check.exit_code == 2 and "class folder(s) birds/ hold no image files" in check.output
    # split layout: an empty train/<class> is refused; an empty val/<class> of a class with
    # training images only means that split lacks the class
    nested = tmp_path / "nested"
    for split in ("train", "val", "test"):
        for label in ("cat", "dog"):
            for k in range(2):
                _png(nested / split / label / f"{k}.png")
    (nested / "val" / "bird").mkdir()
    (nested / "val" / "bird" / "x.txt").write_text("")
    with pytest.raises(ValueError, match=r"class folder\(s\) val/bird/ hold no image files"):
        image_folder(nested, split="train")
    for k in range(2):
        _png(nested / "train" / "bird" / f"{k}.png")
    assert image_folder(nested, split="val").classes == ["bird", "cat", "dog"]
    (nested / "test" / "owl").mkdir()
    (nested / "train" / "owl").mkdir()
    with pytest.raises(ValueError, match=r"folder\(s\) train/owl/, test/owl/ hold no image"):
        image_folder(nested, split="test")


def test_sixteen_bit_and_rgb_to_gray(tmp_path: Path) -> None:
    root = tmp_path / "depth"
    root.mkdir()
    Image.fromarray(np.full((4, 5), 65535 // 5, dtype=np.uint16)).save(root / "xray.png")
    _png(root / "rgb.png", mode="RGB", size=(5, 4), value=255)
    _csv(root, [["xray.png", "a"], ["rgb.png", "a"]], header=["image", "label"])
    dataset = AnnotatedFolder(root, split="train", channels=1, split_fractions=(1.0, 0.0, 0.0))
    by_name = {r.image: dataset[k] for k, r in enumerate(dataset.records)}
    assert torch.allclose(by_name["xray.png"]["image"], torch.full((1, 4, 5), 0.2), atol=1e-6)
    luma = (0.299 * 255 + 0.587 * 20 + 0.114 * 200) / 255
    assert torch.allclose(by_name["rgb.png"]["image"], torch.full((1, 4, 5), luma), atol=1e-6)
    assert AnnotatedFolder(root, split="train", split_fractions=(1.0, 0.0, 0.0)).n_channels == 3


# ---- bad input: each gets a clear error naming the file and row; nothing is half-loaded ----


def test_missing_annotations_csv(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"annotations\.csv"):
        AnnotatedFolder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AnnotatedFolder(tmp_path / "nowhere")


def test_missing_column(tmp_path: Path) -> None:
    _csv(tmp_path / "a", [["0.png", "x"]], header=["image", "lable"])
    with pytest.raises(ValueError, match=r"annotations\.csv: missing column\(s\) label"):
        AnnotatedFolder(tmp_path / "a")
    _csv(tmp_path / "b", [["0.png", "x", 1, 2]], header=["image", "label", "x_min", "y_min"])
    with pytest.raises(ValueError, match=r"missing column.*x_max, y_max"):
        AnnotatedFolder(tmp_path / "b")


def test_missing_image_file(good_folder: Path) -> None:
    (good_folder / "img/3.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"annotations\.csv line 6: image file .*3\.png"):
        AnnotatedFolder(good_folder, split="train")  # a val image: caught up front all the same


def test_unreadable_image_file(good_folder: Path) -> None:
    (good_folder / "img/5.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"line 8: image file .*5\.png is unreadable"):
        AnnotatedFolder(good_folder, split="train")
    lazy = AnnotatedFolder(good_folder, split="test", verify_images=False)
    with pytest.raises(ValueError, match=r"line 8: image file .*5\.png is unreadable"):
        lazy[1]


def test_unknown_split_value(good_folder: Path) -> None:
    _csv(good_folder, [["img/0.png", "sick", "training", "", "", "", "", ""]])
    with pytest.raises(
        ValueError, match=r"line 2: unknown split value 'training'; accepted: train"
    ):
        AnnotatedFolder(good_folder)


@pytest.mark.parametrize(
    ("box", "message"),
    [((9, 2, 3, 6), "x_min=9 >= x_max=3"), ((3, 6, 9, 6), "y_min=6 >= y_max=6")],
)
def test_inverted_box(good_folder: Path, box: tuple, message: str) -> None:
    rows = [["img/1.png", "healthy", "train", "", "", "", "", ""]]
    rows.append(["img/0.png", "sick", "train", *box, ""])
    _csv(good_folder, rows)
    with pytest.raises(ValueError, match=rf"line 3: box has {message}"):
        AnnotatedFolder(good_folder)


@pytest.mark.parametrize("box", [(3, 2, 21, 6), (-1, 2, 9, 6), (3, 2, 9, 16.5)])
def test_box_outside_the_image_is_rejected(good_folder: Path, box: tuple) -> None:
    rows = [["img/1.png", "healthy", "train", "", "", "", "", ""]]
    rows.append(["img/0.png", "sick", "train", *box, ""])
    _csv(good_folder, rows)
    where = "every image" if min(box) < 0 else r"image img/0\.png"
    with pytest.raises(ValueError, match=rf"line 3: box .* outside {where}.*rejected"):
        AnnotatedFolder(good_folder)
    rows[1] = ["img/0.png", "sick", "train", 0, 0, 20, 16, ""]  # touching the border is fine
    _csv(good_folder, rows)
    assert AnnotatedFolder(good_folder)[1]["mask"].sum() == 20 * 16


def test_box_outside_is_rejected_lazily_without_verification(good_folder: Path) -> None:
    rows = [["img/1.png", "healthy", "train", "", "", "", "", ""]]
    rows.append(["img/0.png", "sick", "train", 3, 2, 30, 6, ""])
    _csv(good_folder, rows)
    dataset = AnnotatedFolder(good_folder, verify_images=False)
    with pytest.raises(ValueError, match=r"line 3: box .* outside"):
        dataset[1]


def test_empty_mask_next_to_boxes_is_refused(good_folder: Path) -> None:
    # the mask wins over the boxes: an empty one would supervise "no region" on a boxed image
    Image.new("L", (20, 16)).save(good_folder / "img/mask0.png")
    message = r"line 2: mask file .*mask0\.png is empty but the image has 2 box\(es\)"
    with pytest.raises(ValueError, match=message):  # verified: refused when the split loads
        AnnotatedFolder(good_folder, split="train")
    dataset = AnnotatedFolder(good_folder, split="train", verify_images=False)
    index = next(k for k, r in enumerate(dataset.records) if r.mask == "img/mask0.png")
    with pytest.raises(ValueError, match=message):  # unverified: when its sample is read
        dataset[index]
    check = CliRunner().invoke(app, ["data", "check", str(good_folder)])
    assert check.exit_code == 2 and "is empty but the image has 2 box(es)" in check.output


def test_mask_size_differs_from_image(good_folder: Path) -> None:
    Image.new("L", (10, 16)).save(good_folder / "img/mask0.png")
    with pytest.raises(
        ValueError, match=r"line 2: mask img/mask0\.png is 10x16 but image .* 20x16"
    ):
        AnnotatedFolder(good_folder)


def test_label_only_in_test(good_folder: Path) -> None:
    rows = [
        ["img/0.png", "sick", "train", "", "", "", "", ""],
        ["img/1.png", "healthy", "val", "", "", "", "", ""],
        ["img/2.png", "sick", "val", "", "", "", "", ""],
        ["img/3.png", "healthy", "train", "", "", "", "", ""],
        ["img/4.png", "tumour", "test", "", "", "", "", ""],
    ]
    _csv(good_folder, rows)
    with pytest.raises(ValueError, match=r"line 6: label 'tumour' appears only in the test"):
        AnnotatedFolder(good_folder, split="train")


def test_repeated_header_columns_are_refused(good_folder: Path) -> None:
    # the second 'label' column used to win silently (csv.DictReader keeps the last)
    text = "image,label,split,label\nimg/0.png,sick,train,healthy\n"
    (good_folder / "annotations.csv").write_text(text)
    with pytest.raises(ValueError, match=r"column\(s\) label appear more than once"):
        AnnotatedFolder(good_folder)


def test_other_malformed_rows(good_folder: Path) -> None:
    cases = [
        (["img/0.png", "sick", "train", 1, "", 3, 4, ""], "line 2: box fields must be all filled"),
        (["img/0.png", "sick", "train", "a", 1, 3, 4, ""], "line 2: x_min is 'a', not a number"),
        (["img/0.png", "", "train", "", "", "", "", ""], "line 2: empty label"),
        (["/abs/0.png", "sick", "train", "", "", "", "", ""], "line 2: image path .* absolute"),
        # paths that climb out of the dataset folder (a backslash is a separator too)
        (["../img/0.png", "sick", "train", "", "", "", "", ""], "line 2: image path .* leaves"),
        (["img/../../x.png", "sick", "train", "", "", "", "", ""], "line 2: image .* leaves"),
        (["img\\..\\..\\x.png", "sick", "train", "", "", "", "", ""], "image .* leaves"),
        (["img/0.png", "sick", "train", "", "", "", "", "../m.png"], "line 2: mask path .* leaves"),
        (["img/0.png", "sick", "train", "", "", "", "", "/m.png"], "line 2: mask path .* absol"),
    ]
    for row, message in cases:
        _csv(good_folder, [row])
        with pytest.raises(ValueError, match=message):
            AnnotatedFolder(good_folder)
    _csv(
        good_folder,
        [
            ["img/0.png", "sick", "train", "", "", "", "", ""],
            ["img/0.png", "healthy", "train", "", "", "", "", ""],
        ],
    )
    with pytest.raises(ValueError, match=r"line 3: image 'img/0\.png' has label 'healthy' but"):
        AnnotatedFolder(good_folder)


def test_one_grayscale_image_does_not_make_the_dataset_grayscale(tmp_path: Path) -> None:
    # without verification the channels came from the first image's header alone
    root = tmp_path / "mixed"
    _png(root / "a/0.png", mode="L")  # the first image listed
    for k in range(1, 4):
        _png(root / f"a/{k}.png", mode="RGB")
        _png(root / f"b/{k}.png", mode="RGB")
    for verify in (False, True):
        dataset = image_folder(root, split_fractions=(1.0, 0.0, 0.0), verify_images=verify)
        assert dataset.n_channels == 3
        assert dataset[0]["image"].shape == (3, 16, 20)  # the gray image, repeated
    for k in range(1, 4):  # all grayscale: one channel, every header read to say so
        _png(root / f"a/{k}.png", mode="L")
        _png(root / f"b/{k}.png", mode="L")
    dataset = image_folder(root, split_fractions=(1.0, 0.0, 0.0), verify_images=False)
    assert dataset.n_channels == 1


@pytest.mark.parametrize(
    ("option", "error", "message"),
    [
        ({"seed": 1.7}, TypeError, r"seed must be an int from 0 to 4294967295, got 1\.7"),
        ({"seed": "3"}, TypeError, r"seed must be an int from 0 to 4294967295, got '3'"),
        ({"seed": True}, TypeError, r"seed must be an int from 0 to 4294967295, got True"),
        ({"verify_images": "no"}, TypeError, r"verify_images must be True or False, got 'no'"),
        ({"augment": 1}, TypeError, r"augment must be True or False, got 1"),
        ({"channels": True}, TypeError, r"channels must be 1, 3 or None \(infer\), got True"),
        ({"channels": 2}, ValueError, r"channels must be 1, 3 or None \(infer\), got 2"),
        ({"transform": "abc"}, TypeError, r"transform must be a callable .* or None"),
        ({"image_size": 10**6}, ValueError, r"image_size must be at most 8192 per side"),
        ({"image_size": (64, 8193)}, ValueError, r"at most 8192 per side .*got \(64, 8193\)"),
    ],
)
def test_folder_options_of_the_wrong_type_are_refused(
    good_folder: Path, option: dict, error: type, message: str
) -> None:
    # seed=1.7 used to split with int(1.7) and record 1.7; transform="abc" and a 10**6 side
    # failed only at the first sample (the latter asking for terabytes)
    _csv(good_folder, [[f"img/{k}.png", "ab"[k % 2]] for k in range(6)], header=["image", "label"])
    with pytest.raises(error, match=message):
        load_dataset(good_folder, **option)
    assert load_dataset(good_folder, image_size=(16, 8192)).image_size == (16, 8192)


@pytest.mark.parametrize(
    ("option", "error", "message"),
    [
        ({"seed": 1.7}, TypeError, r"seed must be an int from 0 to 4294967295, got 1\.7"),
        ({"n_images": 0}, ValueError, r"n_images"),
        ({"split": "dev"}, ValueError, r"unknown split 'dev'; accepted splits are train"),
        ({"split_fractions": (0.5, 0.5)}, ValueError, r"split_fractions must have 3 entries"),
        ({"colour": 3}, TypeError, r"unknown folder dataset option\(s\) colour; accepted: "),
    ],
)
def test_folder_options_are_refused_before_any_file_is_read(
    tmp_path: Path, option: dict, error: type, message: str
) -> None:
    # the options used to be checked after the CSV was parsed (or every class folder listed):
    # a damaged CSV or a folder without classes hid a bad seed, which then surfaced only
    # after the user repaired the files
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "annotations.csv").write_text("not,the,columns\n1,2,3\n")
    without_classes = tmp_path / "plain"
    without_classes.mkdir()
    (without_classes / "readme.txt").write_text("no class folders here")
    for root in (damaged, without_classes):
        with pytest.raises(error, match=message):
            load_dataset(root, **option)


def test_seeded_split_needs_an_int_seed() -> None:
    from torchlap.data import ImageRecord
    from torchlap.data.folder import seeded_split

    records = [ImageRecord(image=f"{k}.png", label="a") for k in range(4)]
    with pytest.raises(TypeError, match=r"seed must be an int from 0 to 4294967295, got 1\.7"):
        seeded_split(records, (0.5, 0.25, 0.25), 1.7)  # type: ignore[arg-type]
    assert seeded_split(records, (0.5, 0.25, 0.25), 1) == seeded_split(
        records, (0.5, 0.25, 0.25), 1
    )


def test_exif_orientation_is_said_once_per_dataset(tmp_path: Path, caplog) -> None:
    root = tmp_path / "exif"
    rotated = Image.Exif()
    rotated[0x0112] = 6  # shown rotated 90 degrees clockwise by a viewer
    for label in ("a", "b"):
        for k in range(3):
            path = root / label / f"{k}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 10)).save(path, exif=rotated.tobytes() if k == 1 else b"")
    with caplog.at_level("WARNING", logger="torchlap.data.folder"):
        plain = image_folder(root, split_fractions=(1.0, 0.0, 0.0))
    (record,) = caplog.records  # both rotated images, one warning at construction
    text = record.getMessage()
    assert "a/1.jpg has EXIF orientation 6 (2 image(s)" in text
    assert "reads the stored pixels, as torchvision does" in text and "stored-pixel" in text
    assert plain[0]["image"].shape == (3, 10, 20)  # the stored pixels, not rotated
    caplog.clear()
    with caplog.at_level("WARNING", logger="torchlap.data.folder"):
        lazy = image_folder(root, split_fractions=(1.0, 0.0, 0.0), verify_images=False)
        assert not caplog.records  # the first image is RGB: no other header is read
        for k in range(len(lazy)):
            lazy[k]
    (record,) = caplog.records  # said once for the dataset, when its first such image loads
    assert "a/1.jpg has EXIF orientation 6" in record.getMessage()


@pytest.mark.parametrize("verify_images", [True, False])
def test_a_box_outside_a_rotated_image_says_its_orientation(
    tmp_path: Path, verify_images: bool
) -> None:
    """Before: refused as outside the image, without the orientation hint, which was logged
    only after every header was read (never, when the refusal came first)."""
    rotated = Image.Exif()
    rotated[0x0112] = 6  # a viewer shows the 20x10 stored pixels as 10 wide, 20 high
    Image.new("RGB", (20, 10)).save(tmp_path / "a.jpg", exif=rotated.tobytes())
    Image.new("RGB", (20, 10)).save(tmp_path / "b.jpg")
    (tmp_path / "annotations.csv").write_text(
        "image,label,split,x_min,y_min,x_max,y_max\n"
        "a.jpg,a,train,0,0,5,15\n"  # drawn on the image a viewer shows
        "b.jpg,b,train,0,0,5,15\n"
    )
    message = (
        r"line 2: box \(0, 0, 5, 15\) lies outside image a\.jpg of width 20 and height 10; .*"
        r"; image a\.jpg has EXIF orientation 6, so a viewer shows it rotated or flipped, .*"
        r"boxes are in the coordinates of the stored 20x10 \(width x height\) pixels"
    )
    with pytest.raises(ValueError, match=message):
        AnnotatedFolder(tmp_path, verify_images=verify_images)[0]
    (tmp_path / "annotations.csv").write_text(
        "image,label,split,x_min,y_min,x_max,y_max\n"
        "a.jpg,a,train,0,0,5,8\n"
        "b.jpg,b,train,0,0,5,15\n"  # no orientation tag: no hint
    )
    with pytest.raises(ValueError, match=r"line 3: box .* lies outside image b\.jpg") as error:
        AnnotatedFolder(tmp_path, verify_images=verify_images)[1]
    assert "orientation" not in str(error.value)


def test_a_region_lost_at_the_training_size_is_said_once(tmp_path: Path, caplog) -> None:
    """Before: a 3x3 box of a 64x64 image loaded at 16x16 with no box and an empty mask
    (has_region still True: a negative), without a word."""
    for name in ("a.png", "b.png", "c.png"):
        Image.new("L", (64, 64)).save(tmp_path / name)
    (tmp_path / "annotations.csv").write_text(
        "image,label,split,x_min,y_min,x_max,y_max\n"
        "a.png,a,train,11,11,14,14\n"
        "b.png,b,train,11,11,14,14\n"
        "c.png,b,train,0,0,32,32\n"
    )
    dataset = AnnotatedFolder(tmp_path, image_size=16)
    with caplog.at_level("WARNING", logger="torchlap.data.folder"):
        samples = [dataset[k] for k in (2, 0, 1, 0)]
    assert int(samples[0]["mask"].sum()) == 64  # (a region that stays: nothing said)
    assert samples[1]["boxes"].shape == (0, 4) and int(samples[1]["mask"].sum()) == 0
    (record,) = caplog.records  # once per dataset, at the first sample that loses its region
    text = record.getMessage()
    assert f"{tmp_path / 'a.png'} ({tmp_path / 'annotations.csv'} line 2)" in text
    assert (
        "region (9 pixel(s) of the 64x64 image, height x width) has no pixel left at 16x16" in text
    )
    assert "pass a larger image_size (torchlap train --image-size)" in text
    caplog.clear()
    with caplog.at_level("WARNING", logger="torchlap.data.folder"):
        AnnotatedFolder(tmp_path, image_size=64)[0]  # at the native size the region stays
    assert not caplog.records


def test_a_transform_of_ones_own_leaves_the_image_size_unknown(tmp_path: Path) -> None:
    """Before: load_dataset(root, image_size=32, transform=...) recorded image_size [32, 32]
    while the transform made 20x20 samples (the image_size was not used)."""
    from torchvision.transforms import v2

    from torchlap.data import load_dataset

    for name in ("a.png", "b.png"):
        Image.new("L", (64, 64)).save(tmp_path / name)
    (tmp_path / "annotations.csv").write_text("image,label,split\na.png,a,train\nb.png,b,train\n")
    own = load_dataset(tmp_path, image_size=32, transform=v2.Resize(20))
    assert tuple(own[0]["image"].shape) == (1, 20, 20)
    assert own.image_size is None and own.metadata()["image_size"] is None
    assert own.with_split("train").metadata()["image_size"] is None
    resized = load_dataset(tmp_path, image_size=32)  # the default transform: the size is known
    assert tuple(resized[0]["image"].shape) == (1, 32, 32)
    assert resized.metadata()["image_size"] == [32, 32]
