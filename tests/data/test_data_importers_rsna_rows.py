"""The RSNA labels file read row by row, checked against the challenge's format by hand: a row
``patientId,x,y,width,height,Target`` holds one box whose corners are (x, y) and
(x + width, y + height) in pixels, and the image of a patient is ``<patientId>.dcm`` or
``<patientId>.png`` in the image folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from torchlap.data import rsna_pneumonia

HEADER = "patientId,x,y,width,height,Target\n"


def _rsna(root: Path, rows: list[str], detailed: str | None = None) -> Path:
    """The labels file (header and ``rows``) and six 40x32 (width x height) images p0..p5."""
    (root / "stage_2_train_images").mkdir(parents=True)
    (root / "stage_2_train_labels.csv").write_text(HEADER + "".join(r + "\n" for r in rows))
    for k in range(6):
        Image.new("L", (40, 32), 10 * k).save(root / "stage_2_train_images" / f"p{k}.png")
    if detailed is not None:
        (root / "detailed.csv").write_text(detailed)
    return root


ROWS = ["p0,2,3,10,8,1", "p1,,,,,0", "p2,0,0,40,32,1", "p3,,,,,0", "p4,5,5,4,4,1", "p5,,,,,0"]


def _all(root: Path, **options: object) -> dict[str, object]:
    """patient -> record, over a single training split of every patient."""
    dataset = rsna_pneumonia(root, split_fractions=(1.0, 0.0, 0.0), **options)
    return {Path(r.image).stem: r for r in dataset.records}


def test_boxes_are_x_y_plus_width_height(tmp_path: Path) -> None:
    """x,y,width,height = 2.5,3,10,8.25 is the box from (2.5, 3) to (12.5, 11.25); labels by
    Target (0 normal, 1 pneumonia); boxes of a patient in row order; sources name the lines."""
    rows = ["p0,2.5,3,10,8.25,1", "p1,,,,,0", "p0,20,20,12,10,1", *ROWS[2:]]
    records = _all(_rsna(tmp_path / "rsna", rows))
    assert records["p0"].boxes == [(2.5, 3.0, 12.5, 11.25), (20.0, 20.0, 32.0, 30.0)]
    assert [s.rsplit(" ", 2)[1:] for s in records["p0"].box_sources] == [
        ["line", "2"],
        ["line", "4"],
    ]
    assert records["p2"].boxes == [(0.0, 0.0, 40.0, 32.0)]  # the whole 40x32 image
    assert records["p4"].boxes == [(5.0, 5.0, 9.0, 9.0)]
    assert {p: r.label for p, r in records.items()} == {
        "p0": "pneumonia",
        "p1": "normal",
        "p2": "pneumonia",
        "p3": "normal",
        "p4": "pneumonia",
        "p5": "normal",
    }
    assert records["p1"].boxes == [] and records["p1"].box_sources == []


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("p0,2,3,10,8,2", r"line 2: Target is '2'; accepted: 0 or 1"),
        ("p0,2,3,10,8,", r"line 2: Target is ''; accepted: 0 or 1"),
        ("p0,2,3,,8,1", r"line 2: Target 1 \(pneumonia\) needs x, y, width and height"),
        ("p0,,,,8,0", r"line 2: Target 0 \(normal\) must have empty box fields"),
        (",2,3,10,8,1", r"line 2: empty patientId"),
        ("p0,2,3,10,inf,1", r"line 2: height is 'inf'; box coordinates must be finite"),
        # x + width overflows to infinity: the sum is refused, not taken as a box
        ("p0,1e308,3,1e308,8,1", r"line 2: box \[1e\+308, 3\.0, inf, 11\.0\] has a non-finite"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, row: str, message: str) -> None:
    root = _rsna(tmp_path / "rsna", [row, *ROWS[1:]])
    with pytest.raises(ValueError, match=message):
        rsna_pneumonia(root)


def test_a_patient_with_targets_0_and_1_is_refused(tmp_path: Path) -> None:
    root = _rsna(tmp_path / "rsna", [*ROWS, "p1,1,1,4,4,1"])
    with pytest.raises(ValueError, match=r"line 8: patient p1 has rows with Target 0 and 1"):
        rsna_pneumonia(root)


@pytest.mark.parametrize("patient", ["{abs}", "../stage_2_train_images/p1"])
def test_a_patient_id_that_is_a_path_out_of_the_folder_is_named(
    tmp_path: Path, patient: str
) -> None:
    """before: an absolute patientId whose image existed raised pathlib's bare "is not in the
    subpath of" (no file, no line); one climbing with '..' read a file outside the image
    folder before its path was refused."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("L", (40, 32)).save(outside / "p9.png")
    patient = patient.format(abs=outside / "p9")
    root = _rsna(tmp_path / "rsna", [*ROWS, f"{patient},,,,,0"])
    expected = (
        f"line 8: patientId {patient!r} is a path, not a patient id; the image of a patient is "
        "<patientId>.dcm or <patientId>.png in the image folder "
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        rsna_pneumonia(root)


def test_excluded_patients_are_those_of_the_third_class_only(tmp_path: Path) -> None:
    """Only "No Lung Opacity / Not Normal" drops a patient (paper Sec. 4.A); the class names
    and ids are stripped of spaces as the labels file's are."""
    detailed = (
        "patientId,class\n p1 , Normal \np3,No Lung Opacity / Not Normal\n"
        "p0,Lung Opacity\n p5 ,No Lung Opacity / Not Normal\n"
    )
    root = _rsna(tmp_path / "rsna", ROWS, detailed=detailed)
    records = _all(root, detailed_class_info="detailed.csv")
    assert sorted(records) == ["p0", "p1", "p2", "p4"]
    with pytest.raises(FileNotFoundError, match=r"RSNA detailed class info file .*none\.csv not"):
        rsna_pneumonia(root, detailed_class_info="none.csv")


def test_a_header_without_a_column_names_each_missing_one(tmp_path: Path) -> None:
    root = _rsna(tmp_path / "rsna", [])
    (root / "stage_2_train_labels.csv").write_text("patientId,x,w,Target\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) y, width, height \(found patientI"):
        rsna_pneumonia(root)
    (root / "stage_2_train_labels.csv").write_text(HEADER)
    with pytest.raises(ValueError, match=r"stage_2_train_labels\.csv: no patients$"):
        rsna_pneumonia(root)


@pytest.mark.parametrize("images_dir", ["stage_2_train_images/..", "x/../stage_2_train_images"])
def test_an_images_dir_with_a_dot_dot_part_is_refused(tmp_path: Path, images_dir: str) -> None:
    """Any '..' part is refused, even one that stays in the root once normalised."""
    root = _rsna(tmp_path / "rsna", ROWS)
    (root / "x").mkdir()
    with pytest.raises(ValueError) as caught:
        rsna_pneumonia(root, images_dir=images_dir)
    assert str(caught.value).startswith(
        f"images_dir {images_dir!r} is not a folder inside the root {root} (it is absolute "
        "outside it, or climbs with '..'); the images are read by paths relative to the root"
    )


@pytest.mark.parametrize(
    ("file", "header", "repeated"),
    [
        ("stage_2_train_labels.csv", "patientId,x,y,width,height,Target,x", "x"),
        ("detailed.csv", "patientId,class,class", "class"),
    ],
)
def test_a_column_named_twice_is_refused(
    tmp_path: Path, file: str, header: str, repeated: str
) -> None:
    """before: csv.DictReader kept the last of two equal names, so a second x column silently
    replaced the box's x (as annotations.csv, each column may appear once)."""
    root = _rsna(tmp_path / "rsna", ROWS, detailed="patientId,class\np1,Normal\n")
    path = root / file
    lines = path.read_text().splitlines()
    path.write_text("\n".join([header, *(f"{line},1" for line in lines[1:])]) + "\n")
    with pytest.raises(ValueError) as caught:
        rsna_pneumonia(root, detailed_class_info="detailed.csv")
    assert str(caught.value) == (
        f"{path}: column(s) {repeated} appear more than once in the header "
        f"({', '.join(header.split(','))}); each column may appear once"
    )


def test_a_one_pixel_box_is_a_box(tmp_path: Path) -> None:
    """width and height need only be > 0: 1 x 1 at (5, 5) is the box (5, 5)-(6, 6), the
    pixel whose centre is (5.5, 5.5)."""
    root = _rsna(tmp_path / "rsna", [*ROWS[:4], "p4,5,5,1,1,1", ROWS[5]])
    assert _all(root)["p4"].boxes == [(5.0, 5.0, 6.0, 6.0)]
