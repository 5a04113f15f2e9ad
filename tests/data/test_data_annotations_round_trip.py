"""What :func:`write_annotations` writes, :func:`read_annotations` reads back: records without
a split (``ImageRecord``'s default) are written without the split column, which the format
makes optional (reading then makes the seeded split); records it could not write so are
refused before the file is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchlap.data.annotations import ImageRecord, read_annotations, write_annotations


@pytest.mark.parametrize("regions", [False, True])
def test_records_without_a_split_are_written_without_the_split_column(
    tmp_path: Path, regions: bool
) -> None:
    """before: ``image,label,split`` with empty split fields, which reading refused ("unknown
    split value ''")."""
    path = tmp_path / "annotations.csv"
    write_annotations(path, [ImageRecord("a.png", "x"), ImageRecord("b.png", "y")], regions=regions)
    expected = (
        "image,label,x_min,y_min,x_max,y_max,mask\r\na.png,x,,,,,\r\nb.png,y,,,,,\r\n"
        if regions
        else "image,label\r\na.png,x\r\nb.png,y\r\n"
    )
    assert path.read_bytes().decode() == expected
    records, has_split, has_regions = read_annotations(path)
    assert [(r.image, r.label, r.split) for r in records] == [
        ("a.png", "x", None),
        ("b.png", "y", None),
    ]
    assert (has_split, has_regions) == (False, regions)


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            [ImageRecord("a.png", "x", "train"), ImageRecord("b.png", "y")],
            "record 2 (b.png) has no split but record 1 (a.png) has 'train'; every record has a "
            "split (train, val or test) or none has one (the file then has no split column)",
        ),
        (
            [ImageRecord("a.png", "x"), ImageRecord("b.png", "y", "val")],
            "record 1 (a.png) has no split but record 2 (b.png) has 'val'; every record has a "
            "split (train, val or test) or none has one (the file then has no split column)",
        ),
        (
            [ImageRecord("a.png", "x", "training")],
            "record 1 (a.png) has split 'training'; accepted: train, val, test (or None for all)",
        ),
    ],
)
def test_splits_the_file_could_not_hold_are_refused_before_writing(
    tmp_path: Path, records: list[ImageRecord], message: str
) -> None:
    """before: written, then refused when read back."""
    path = tmp_path / "annotations.csv"
    with pytest.raises(ValueError) as caught:
        write_annotations(path, records)
    assert str(caught.value) == message
    assert not path.exists()


@pytest.mark.parametrize(("option", "value"), [("overwrite", "yes"), ("regions", 1)])
def test_flags_that_are_not_bools_are_refused_before_writing(
    tmp_path: Path, option: str, value: object
) -> None:
    path = tmp_path / "annotations.csv"
    with pytest.raises(TypeError) as caught:
        write_annotations(path, [ImageRecord("a.png", "x", "train")], **{option: value})
    assert str(caught.value) == f"{option} must be True or False, got {value!r}"
    assert not path.exists()


NAN = float("nan")

# record -> what the refusal says (each a row read_annotations refuses, or changes)
UNREADABLE = {
    "nan box": (ImageRecord("a.png", "x", "train", [(NAN, 0, 1, 1)]), r"non-finite coordinate"),
    "inverted box": (
        ImageRecord("a.png", "x", "train", [(3, 0, 1, 1)]),
        r"box has x_min=3 >= x_max=1; need x_min < x_max",
    ),
    "negative box": (
        ImageRecord("a.png", "x", "train", [(-1, 0, 1, 1)]),
        r"lies outside image a\.png: a coordinate is below 0",
    ),
    "3 numbers": (
        ImageRecord("a.png", "x", "train", [(0, 1, 1)]),  # type: ignore[list-item]
        r"box \[0, 1, 1\] has 3 number\(s\); a box is 4: \(x_min, y_min, x_max, y_max\)",
    ),
    "empty label": (ImageRecord("a.png", "", "train"), r"empty label for image 'a\.png'"),
    "label with a line break": (
        ImageRecord("a.png", "c\nd", "train"),
        r"label 'c\\nd' holds a control character",
    ),
    "absolute path": (ImageRecord("/a.png", "x", "train"), r"image path '/a\.png' is absolute"),
    "climbing path": (
        ImageRecord("../a.png", "x", "train"),
        r"image path '\.\./a\.png' leaves the dataset folder",
    ),
    "climbing mask": (
        ImageRecord("a.png", "x", "train", mask="../m.png"),
        r"mask path '\.\./m\.png' leaves the dataset folder",
    ),
    "empty path": (ImageRecord("", "x", "train"), r"empty image path"),
    "spaces around the path": (
        ImageRecord(" a.png", "x", "train"),
        r"image ' a\.png' has spaces around it or a line break, which annotations\.csv cannot",
    ),
    "spaces around the label": (
        ImageRecord("a.png", " cat ", "train"),
        r"label ' cat ' has spaces around it",
    ),
    "line break in a path": (ImageRecord("a\n.png", "x", "train"), r"image 'a\\n\.png' has"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_records_reading_would_refuse_or_change_are_refused_before_writing(
    tmp_path: Path, case: str
) -> None:
    """Before: written (NaN, inverted, negative or 3-number boxes, empty or multi-line labels,
    paths leaving the folder), then refused by read_annotations; spaces around a path or label
    were written and stripped when read (``' a.png'`` read as another file)."""
    record, said = UNREADABLE[case]
    path = tmp_path / "annotations.csv"
    good = ImageRecord("b.png", "y", "train")
    with pytest.raises(ValueError, match=rf"^record 2 \(image '.*'\): .*{said}"):
        write_annotations(path, [good, record])
    assert not path.exists()


def test_a_box_of_texts_is_refused_before_writing(tmp_path: Path) -> None:
    record = ImageRecord("a.png", "x", "train", [("0", 0, 1, 1)])  # type: ignore[list-item]
    path = tmp_path / "annotations.csv"
    with pytest.raises(TypeError, match=r"^record 1 \(image 'a\.png'\): box must hold numbers"):
        write_annotations(path, [record])
    assert not path.exists()


def test_two_records_of_one_image_are_refused_before_writing(tmp_path: Path) -> None:
    """Before: written as rows read back as one image (its boxes merged)."""
    records = [ImageRecord("a.png", "x", "train"), ImageRecord("./a.png", "x", "train")]
    path = tmp_path / "annotations.csv"
    message = r"^record 2 \(image '\./a\.png'\): image 'a\.png' has a record already \(record 1"
    with pytest.raises(ValueError, match=message):
        write_annotations(path, records)
    assert not path.exists()


@pytest.mark.parametrize("case", ["nan box", "empty label", "3 numbers", "negative box"])
def test_from_records_refuses_what_reading_refuses(tmp_path: Path, case: str) -> None:
    """Before: a NaN box failed with a bare ``cannot convert float NaN to integer``, an empty
    label made a class ''."""
    from PIL import Image

    from torchlap.data import AnnotatedFolder

    for name in ("a.png", "b.png"):
        Image.new("L", (8, 8)).save(tmp_path / name)
    record, said = UNREADABLE[case]
    records = [ImageRecord("b.png", "y", "train"), record]
    with pytest.raises(ValueError, match=rf"^SRC: record 2 \(image 'a\.png'\): .*{said}"):
        AnnotatedFolder.from_records(tmp_path, records, source="SRC", has_regions=True)
    record.source = "my list item 7"
    with pytest.raises(ValueError, match=rf"^my list item 7: .*{said}"):
        AnnotatedFolder.from_records(tmp_path, records, source="SRC", has_regions=True)


def test_from_records_refuses_two_records_of_one_image(tmp_path: Path) -> None:
    from PIL import Image

    from torchlap.data import AnnotatedFolder

    for name in ("a.png", "b.png"):
        Image.new("L", (8, 8)).save(tmp_path / name)
    records = [ImageRecord(name, "x", "train") for name in ("a.png", "b.png", "a.png")]
    message = r"^S: record 3 \(image 'a\.png'\): image 'a\.png' has a record already \(S: record 1"
    with pytest.raises(ValueError, match=message):
        AnnotatedFolder.from_records(tmp_path, records, source="S", has_regions=False)
