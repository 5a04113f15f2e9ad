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
