"""annotations.csv boxes: each bound of the refusal rules, and the exact CSV round trip of
fractional coordinates, checked side by side on a non-square image."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from torchlap.data import AnnotatedFolder
from torchlap.data.annotations import ImageRecord, read_annotations, write_annotations

HEADER = ["image", "label", "split", "x_min", "y_min", "x_max", "y_max", "mask"]
WIDTH, HEIGHT = 20, 12  # non-square: a swapped width and height cannot pass unnoticed


def _folder(root: Path, box: tuple[float, float, float, float]) -> Path:
    """Two WIDTH x HEIGHT images: a training negative and one training image with ``box``."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    for k in range(2):
        Image.new("L", (WIDTH, HEIGHT), 50 * k).save(root / f"img/{k}.png")
    with open(root / "annotations.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerow(["img/0.png", "neg", "train", "", "", "", "", ""])
        writer.writerow(["img/1.png", "pos", "train", *box, ""])
    return root


@pytest.mark.parametrize(
    "box",
    [(4, 2, 4, 9), (4, 2, 4.0, 9), (4, 5, 9, 5), (7.5, 1, 7.5, 3)],
    ids=["x-equal", "x-equal-float", "y-equal", "x-equal-fraction"],
)
def test_a_box_of_zero_width_or_height_is_refused(tmp_path: Path, box: tuple) -> None:
    """x_min < x_max and y_min < y_max are strict: a box with no area is refused."""
    root = _folder(tmp_path / "data", box)
    with pytest.raises(ValueError, match=r"line 3: box has [xy]_min=.* >= [xy]_max="):
        AnnotatedFolder(root)


@pytest.mark.parametrize(
    "box",
    [
        (-0.5, 1, 5, 6),  # x_min < 0
        (1, -0.5, 5, 6),  # y_min < 0
        (1, 1, WIDTH + 0.5, 6),  # x_max > width
        (1, 1, 5, HEIGHT + 0.5),  # y_max > height (still < width: a swap would accept it)
    ],
    ids=["x_min", "y_min", "x_max", "y_max"],
)
@pytest.mark.parametrize("verify", [True, False])
def test_each_side_outside_the_image_is_refused(tmp_path: Path, box: tuple, verify: bool) -> None:
    """Every coordinate must lie in [0, width] x [0, height]; each side is checked alone (a
    coordinate below 0 is outside every image, refused when the row is parsed)."""
    root = _folder(tmp_path / "data", box)
    where = "every image" if min(box) < 0 else r"image img/1\.png"
    with pytest.raises(ValueError, match=rf"line 3: box .* outside {where}"):
        AnnotatedFolder(root, verify_images=verify)[1]


def test_a_box_touching_every_border_is_accepted(tmp_path: Path) -> None:
    """The box (0, 0, width, height) covers every pixel: touching the border is inside."""
    root = _folder(tmp_path / "data", (0, 0, WIDTH, HEIGHT))
    sample = AnnotatedFolder(root)[1]
    assert sample["boxes"].tolist() == [[0.0, 0.0, float(WIDTH), float(HEIGHT)]]
    assert int(sample["mask"].sum()) == WIDTH * HEIGHT


def test_fractional_coordinates_survive_a_write_and_read_exactly(tmp_path: Path) -> None:
    """write_annotations then read_annotations gives back every coordinate bit for bit."""
    boxes = [(0.1, 2.5, 3.75, 4.0), (1.0, 1e-3, 19.999, 11.5), (1 / 3, 2 / 7, 10.0, 11.0)]
    records = [
        ImageRecord("img/1.png", "pos", "train", boxes=list(boxes)),
        ImageRecord("img/0.png", "neg", "train"),
    ]
    path = tmp_path / "annotations.csv"
    write_annotations(path, records)
    back, has_split, has_regions = read_annotations(path)
    assert has_split and has_regions
    assert [r.image for r in back] == ["img/1.png", "img/0.png"]
    assert back[0].boxes == boxes  # float equality: repr() round-trips a float exactly
    assert back[1].boxes == []


@pytest.mark.parametrize(
    ("box", "covers"),
    [
        ((1.6, 3, 2.4, 10), False),  # between the centres 1.5 and 2.5: no pixel
        ((4, 2.6, 9, 3.4), False),
        ((1.5, 3, 2.4, 10), True),  # the centre 1.5 is inside (half-open on the max side)
        ((1.6, 3, 2.6, 10), True),
    ],
)
@pytest.mark.parametrize("verify", [True, False])
def test_a_box_covering_no_pixel_centre_is_refused(
    tmp_path: Path, box: tuple, covers: bool, verify: bool
) -> None:
    """Before: it passed `data check` and gave its image an empty region."""
    root = _folder(tmp_path / "data", box)
    if covers:
        assert int(AnnotatedFolder(root, verify_images=verify)[1]["mask"].sum()) > 0
        return
    with pytest.raises(ValueError, match=r"line 3: box .* covers no pixel centre"):
        AnnotatedFolder(root, verify_images=verify)[1]


@pytest.mark.parametrize("verify", [True, False])
def test_the_pixel_centre_check_takes_the_box_in_float32_as_the_sample(
    tmp_path: Path, verify: bool
) -> None:
    """Before: 3.50000001 passed the check in float64, but the sample holds its boxes in
    float32, where it is 3.5: the box loaded with an empty region (0 mask pixels)."""
    root = _folder(tmp_path / "a", (3, 3, 3.50000001, 3.50000001))
    message = (
        r"line 3: box \(3\.0, 3\.0, 3\.50000001, 3\.50000001\) of image img/1\.png is "
        r"\(3\.0, 3\.0, 3\.5, 3\.5\) in float32 \(the precision of a sample's boxes\) and "
        r"covers no pixel centre"
    )
    with pytest.raises(ValueError, match=message):
        AnnotatedFolder(root, verify_images=verify)[1]
    # just above 3.5 in float32 too: taken, and its region is the pixel (3, 3)
    sample = AnnotatedFolder(
        _folder(tmp_path / "b", (3, 3, 3.5000005, 3.5000005)), verify_images=verify
    )[1]
    assert sample["mask"].nonzero().tolist() == [[3, 3]]
    assert sample["boxes"].dtype == torch.float32


def test_digit_separators_and_control_characters_are_refused(tmp_path: Path) -> None:
    """Before: "1_0" was read as 10 (Python's float), and a NUL in a label made a new class."""
    root = _folder(tmp_path / "data", (1, 1, 5, 6))
    text = (root / "annotations.csv").read_text()
    (root / "annotations.csv").write_text(
        text.replace("img/1.png,pos,train,1,", "img/1.png,pos,train,1_0,")
    )
    with pytest.raises(ValueError, match=r"line 3: x_min is '1_0', not a number"):
        AnnotatedFolder(root)
    (root / "annotations.csv").write_text(text.replace(",neg,", ",n\x00eg,"))
    with pytest.raises(ValueError, match=r"line 2: label 'n\\x00eg' holds a control character"):
        AnnotatedFolder(root)


@pytest.mark.parametrize(
    ("text", "line", "end", "lines"),
    [
        ('image,label,split\n"a.png,x,train\nb.png,y,train\n', 2, "the end of the file", 2),
        ('image,label,split\r\n\r\n"a.png,x,train\r\n\r\nb.png,y,train\r\n', 3,
         "the end of the file", 3),
        ('image,label,split\n\n"a.png\n",x,train\nb.png,y,train\n', 3, "line 4", 2),
        ('image,label,split\na.png,x,train\nb.png,"y\nc.png,y,train', 3, "the end of the file", 2),
    ],
)  # fmt: skip
def test_an_unclosed_quote_is_named_at_the_line_it_opens(
    tmp_path: Path, text: str, line: int, end: str, lines: int
) -> None:
    """Before: the reader named the line where the quoted field ended (the file's last), with a
    field count that hid the quote. Blank lines before the row do not shift the count."""
    path = tmp_path / "annotations.csv"
    path.write_bytes(text.encode())
    match = rf"line {line}: a quote opened here runs to {end} \(a quoted field over {lines} lines\)"
    with pytest.raises(ValueError, match=match):
        read_annotations(path)


def test_blank_lines_are_no_quoted_field(tmp_path: Path) -> None:
    path = tmp_path / "annotations.csv"
    path.write_text("image,label,split\n\na.png,x,train\n\n\nb.png,y,train\n")
    records, has_split, _ = read_annotations(path)
    assert [r.image for r in records] == ["a.png", "b.png"] and has_split


def test_an_image_path_that_is_no_file_says_what_it_is(tmp_path: Path) -> None:
    """Before: a folder, a dangling link or a FIFO at an image path was "not found"."""
    import os

    root = _folder(tmp_path / "data", (1, 1, 5, 6))
    target = root / "img/1.png"
    cases = {
        "is a folder": target.mkdir,
        "is a link to nothing or a link loop": lambda: target.symlink_to(root / "nowhere.png"),
        "is not a regular file": lambda: os.mkfifo(target),
    }
    for said, make in cases.items():
        if target.is_dir() and not target.is_symlink():
            target.rmdir()
        elif target.exists() or target.is_symlink():
            target.unlink()
        make()
        with pytest.raises(FileNotFoundError, match=rf"line 3: image file .*1\.png {said}"):
            AnnotatedFolder(root)
