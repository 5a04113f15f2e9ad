"""``annotations.csv`` read by :func:`read_annotations` and written by
:func:`write_annotations`, the expected records and text written by hand from the format's
definition (module docstring of ``torchlap.data.annotations``): one row per box in pixel-edge
``x_min,y_min,x_max,y_max``, rows of one image grouped in order of first appearance."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from torchlap.data.annotations import (
    ImageRecord,
    check_box,
    parse_number,
    read_annotations,
    read_utf8,
    write_annotations,
)

HEADER = "image,label,split,x_min,y_min,x_max,y_max,mask\n"


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "annotations.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_rows_are_grouped_by_image_in_order_of_first_appearance(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        HEADER
        + "b.png,pos,val,1,2,3.5,4,m/b.png\n"
        + "a.png,neg,train,,,,,\n"
        + "b.png, pos ,val, 5 ,6,7,8,\n"  # spaces around fields are dropped
        + "c.png,pos,test,0,0,1e1,2,\n",
    )
    records, has_split, has_regions = read_annotations(path)
    where = f"{path} line"
    assert records == [
        ImageRecord(
            "b.png",
            "pos",
            "val",
            boxes=[(1.0, 2.0, 3.5, 4.0), (5.0, 6.0, 7.0, 8.0)],
            box_sources=[f"{where} 2", f"{where} 4"],
            mask="m/b.png",
            source=f"{where} 2",
        ),
        ImageRecord("a.png", "neg", "train", source=f"{where} 3"),
        ImageRecord(
            "c.png",
            "pos",
            "test",
            boxes=[(0.0, 0.0, 10.0, 2.0)],
            box_sources=[f"{where} 5"],
            source=f"{where} 5",
        ),
    ]
    assert (has_split, has_regions) == (True, True)


@pytest.mark.parametrize(
    ("header", "row", "flags", "record"),
    [
        ("image,label", "a.png,x", (False, False), ImageRecord("a.png", "x")),
        (
            "image,label,mask",
            "a.png,x,m.png",
            (False, True),
            ImageRecord("a.png", "x", mask="m.png"),
        ),
        ("image,label,mask", "a.png,x,", (False, True), ImageRecord("a.png", "x")),
        (
            "label,x_min,y_min,x_max,y_max,image",
            "x,1,2,3,4,a.png",
            (False, True),
            ImageRecord("a.png", "x", boxes=[(1.0, 2.0, 3.0, 4.0)]),
        ),
        ("image,label,split", "a.png,x,test", (True, False), ImageRecord("a.png", "x", "test")),
    ],
)
def test_optional_columns_say_whether_the_data_has_splits_and_regions(
    tmp_path: Path, header: str, row: str, flags: tuple[bool, bool], record: ImageRecord
) -> None:
    path = _csv(tmp_path, f"{header}\n{row}\n")
    records, has_split, has_regions = read_annotations(path)
    record.source = f"{path} line 2"
    record.box_sources = [record.source] * len(record.boxes)
    assert (records, (has_split, has_regions)) == ([record], flags)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "{p} is empty: the first line must be the header"),
        (HEADER, "{p} has a header but no rows"),
        (
            "image,label,label\na.png,x,y\n",
            "{p}: column(s) label appear more than once in the header (image, label, label); "
            "each column may appear once",
        ),
        (
            "image,x_min,y_max\na.png,1,2\n",
            "{p}: missing column(s) label, y_min, x_max (found image, x_min, y_max); required: "
            "image, label; optional: split, the four box columns x_min,y_min,x_max,y_max "
            "together, mask",
        ),
        ("image,label\n,x\n", "{p} line 2: empty image path"),
        ("image,label\na.png,\n", "{p} line 2: empty label for image 'a.png'"),
        (
            "image,label\na.png,x\x07\n",
            "{p} line 2: label 'x\\x07' holds a control character; labels are text",
        ),
        (
            "image,label,split\na.png,x,\n",
            "{p} line 2: unknown split value ''; accepted: train, val, test",
        ),
        (
            HEADER + "a.png,x,train,1,2,,4,\n",
            "{p} line 2: box fields must be all filled or all empty, got x_min='1', y_min='2', "
            "x_max='', y_max='4'",
        ),
        (
            HEADER + "a.png,x,train,1,2,nan,4,\n",
            "{p} line 2: x_max is 'nan'; box coordinates must be finite",
        ),
        (
            HEADER + "a.png,x,train,1,2,3,-inf,\n",
            "{p} line 2: y_max is '-inf'; box coordinates must be finite",
        ),
        (HEADER + "a.png,x,train,1,2,3,4x,\n", "{p} line 2: y_max is '4x', not a number"),
        (
            HEADER + "a.png,x,train,3,2,3,4,\n",
            "{p} line 2: box has x_min=3 >= x_max=3; need x_min < x_max",
        ),
        (
            HEADER + "a.png,x,train,1,4.5,3,4,\n",
            "{p} line 2: box has y_min=4.5 >= y_max=4; need y_min < y_max",
        ),
        (
            "image,label\n/abs/a.png,x\n",
            "{p} line 2: image path '/abs/a.png' is absolute; paths are relative to the folder",
        ),
        (
            "image,label,mask\na.png,x,m/../../b.png\n",
            "{p} line 2: mask path 'm/../../b.png' leaves the dataset folder ('..'); paths are "
            "relative to the folder and stay inside it",
        ),
        (
            "image,label\na.png,x\nb.png,x\na.png,y\n",
            "{p} line 4: image 'a.png' has label 'y' but 'x' at {p} line 2; one image has one "
            "label",
        ),
        (
            "image,label,split\na.png,x,train\na.png,x,val\n",
            "{p} line 3: image 'a.png' is in split 'val' but in 'train' at {p} line 2; one image "
            "has one split",
        ),
        (
            "image,label,mask\na.png,x,m1.png\na.png,x,m2.png\n",
            "{p} line 3: image 'a.png' has mask 'm2.png' but 'm1.png' at {p} line 2; one image "
            "has one mask",
        ),
        ("image,label\na.png,x,extra\n", "{p} line 2: more fields than the 2 header columns"),
        (
            "image,label,split\na.png,x\n",
            "{p} line 2: 2 field(s) for the 3 header columns (image, label, split); leave a "
            "field empty (a comma with nothing) for none",
        ),
    ],
)
def test_each_malformed_file_is_refused_naming_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(ValueError) as caught:
        read_annotations(path)
    assert str(caught.value) == message.format(p=path)


def test_a_quoted_field_after_a_space_is_one_field(tmp_path: Path) -> None:
    """``a.png, "b, c"``: a space after the comma still opens a quoted field (whose comma is
    text), as a spreadsheet writes it, rather than splitting the row into three fields."""
    path = _csv(tmp_path, 'image,label\na.png, "b, c"\n')
    records, _, _ = read_annotations(path)
    assert [(r.image, r.label) for r in records] == [("a.png", "b, c")]


def test_a_later_row_may_leave_the_mask_empty_or_give_it(tmp_path: Path) -> None:
    """Rows of one image agree on the mask or leave it empty: the record keeps the one given."""
    path = _csv(tmp_path, "image,label,mask\na.png,x,\na.png,x,m.png\na.png,x,\n")
    records, _, _ = read_annotations(path)
    assert [(r.image, r.mask) for r in records] == [("a.png", "m.png")]


def test_a_missing_file_names_the_columns_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "annotations.csv"
    with pytest.raises(FileNotFoundError) as caught:
        read_annotations(path)
    assert str(caught.value) == (
        f"{path} not found: an annotated dataset folder needs an annotations.csv with columns "
        "image, label and optionally split, x_min, y_min, x_max, y_max, mask"
    )


def test_a_byte_that_is_not_utf8_is_named_at_its_line(tmp_path: Path) -> None:
    """The line counts the line breaks before the byte, the file's first byte included."""
    path = tmp_path / "labels.txt"
    path.write_bytes(b"\nimage,label\na.png,caf\xe9\n")
    with pytest.raises(ValueError, match=re.escape(f"{path} line 3: byte 0xe9 is not UTF-8; the "
                                                   "labels file must be UTF-8")):  # fmt: skip
        read_utf8(path, "labels file")
    path.write_bytes(b"\xef\xbb\xbfimage\r\n")  # a BOM is dropped, line breaks are kept
    assert read_utf8(path) == "image\r\n"


def test_parse_number_and_check_box_called_directly() -> None:
    assert parse_number("-2.5e0", "x", "here") == -2.5
    for text in ("1_0", "\uff11", "", "0x10"):
        with pytest.raises(ValueError, match=re.escape(f"here: x is {text!r}, not a number")):
            parse_number(text, "x", "here")
    assert check_box((0, 1, 0.5, 2), "here") == (0.0, 1.0, 0.5, 2.0)
    for box in ((0, float("nan"), 1, 2), (0, 0, float("inf"), 2)):
        with pytest.raises(ValueError, match=r"^here: box \[.*\] has a non-finite coordinate$"):
            check_box(box, "here")


def test_write_annotations_writes_one_row_per_box(tmp_path: Path) -> None:
    records = [
        ImageRecord("a.png", "pos", "train", boxes=[(1.0, 2.0, 3.5, 4.0), (0, 0, 1e20, 0.25)]),
        ImageRecord("b.png", "neg", "val", mask="m/b.png"),
    ]
    path = tmp_path / "out.csv"
    write_annotations(path, records)
    assert path.read_bytes().decode() == (
        "image,label,split,x_min,y_min,x_max,y_max,mask\r\n"
        "a.png,pos,train,1,2,3.5,4,\r\n"
        "a.png,pos,train,0,0,100000000000000000000,0.25,\r\n"
        "b.png,neg,val,,,,,m/b.png\r\n"
    )
    write_annotations(path, [ImageRecord("c.png", "x", "val")], regions=False, overwrite=True)
    assert path.read_bytes().decode() == "image,label,split\r\nc.png,x,val\r\n"
    with pytest.raises(ValueError) as caught:
        write_annotations(tmp_path / "new.csv", records, regions=False)
    assert str(caught.value) == (
        "regions=False, but 2 record(s) have boxes or a mask (first: a.png); pass "
        "regions=True to write them"
    )
    assert not (tmp_path / "new.csv").exists()


def test_unknown_columns_are_read_past_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _csv(tmp_path, "image,notes,label,source\na.png,hello,x,scan\n")
    with caplog.at_level("WARNING", logger="torchlap.data.annotations"):
        records, _, _ = read_annotations(path)
    assert [(r.image, r.label) for r in records] == [("a.png", "x")]
    assert caplog.messages == [f"{path}: ignoring unknown column(s) notes, source"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="torchlap.data.annotations"):
        read_annotations(_csv(tmp_path, HEADER + "a.png,x,train,,,,,\n"))
    assert caplog.messages == []


@pytest.mark.parametrize("value", ["img\\..\\..\\x.png", "..\\x.png"])
def test_a_path_climbing_with_backslashes_is_refused(tmp_path: Path, value: str) -> None:
    """A Windows-written '..' (backslashes) leaves the folder too, wherever it is read."""
    path = _csv(tmp_path, f"image,label\n{value},x\n")
    with pytest.raises(ValueError) as caught:
        read_annotations(path)
    assert str(caught.value) == (
        f"{path} line 2: image path {value!r} leaves the dataset folder ('..'); paths are "
        "relative to the folder and stay inside it"
    )
