"""The ``annotations.csv`` of an annotated dataset folder: reading, validating, writing.

The annotated folder format (one folder, one ``annotations.csv``)::

    image,label,split,x_min,y_min,x_max,y_max,mask
    images/0001.png,pneumonia,train,12,30,40,61,masks/0001.png
    images/0001.png,pneumonia,train,50,8,63,20,masks/0001.png
    images/0002.png,normal,val,,,,,

* ``image``: path relative to the folder (PNG, JPEG, ... or DICOM ``.dcm``); ``label``: class
  name. Classes are the sorted label names; the label index is the position in that list.
* ``split`` (optional): ``train``, ``val`` or ``test``. Without it a seeded split, stratified
  by class, is made and recorded in ``dataset.split_assignment`` (``save_annotations`` writes
  it out).
* ``x_min,y_min,x_max,y_max`` (optional, all four or none): one box per row in pixel-edge
  coordinates, so an image with three boxes has three rows; empty fields for no box.
* ``mask`` (optional): a PNG of the image's size, nonzero = region.

A CSV with box or mask columns has regions: an image without boxes or mask then has a known
empty region (a negative). A CSV of ``image,label[,split]`` alone has no regions (class labels
only), which :func:`write_annotations` keeps: it writes the region columns only for data with
regions. The file must be UTF-8 (a byte-order mark is fine); another encoding is refused naming
the line of the first byte that is not UTF-8.

Boxes outside the image are **rejected** (never clipped): every coordinate must lie in
``[0, width] x [0, height]`` of the image file, otherwise loading fails naming the file and
line. Every problem is reported before anything is loaded: a dataset either loads whole or
raises.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchlap._checks import check_bool
from torchlap.data._base import SPLITS, number_list
from torchlap.io import as_path, atomic_write, read_file

__all__ = [
    "ANNOTATIONS",
    "BOX_COLUMNS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "ImageRecord",
    "check_box",
    "check_record",
    "check_records",
    "check_row_length",
    "csv_errors_named",
    "inside_path",
    "parse_number",
    "read_annotations",
    "read_utf8",
    "write_annotations",
]

logger = logging.getLogger(__name__)

ANNOTATIONS = "annotations.csv"
BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")
REQUIRED_COLUMNS = ("image", "label")
OPTIONAL_COLUMNS = ("split", *BOX_COLUMNS, "mask")


@dataclass
class ImageRecord:
    """One image of an annotated dataset, gathered from its CSV row(s).

    ``source`` names where it came from (e.g. ``annotations.csv line 7``) for error messages;
    ``box_sources`` does the same per box.
    """

    image: str
    label: str
    split: str | None = None
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    box_sources: list[str] = field(default_factory=list)
    mask: str | None = None
    source: str = ""

    def named_boxes(self) -> list[tuple[tuple[float, float, float, float], str]]:
        """Each box with where it came from: ``box_sources``, or the record's ``source`` for
        every box when it names none (a record built by hand); ValueError when ``box_sources``
        does not pair with ``boxes``."""
        if self.box_sources and len(self.box_sources) != len(self.boxes):
            raise ValueError(
                f"{self.source or 'a record'}: the record of image {self.image!r} has "
                f"{len(self.boxes)} boxes but {len(self.box_sources)} box_sources; box_sources "
                "names where each box came from: one per box, or none (the record's source is used)"
            )
        names = self.box_sources or [self.source or f"image {self.image}"] * len(self.boxes)
        return list(zip(self.boxes, names, strict=True))


def parse_number(value: str, column: str, where: str) -> float:
    """The CSV field ``value`` of ``column`` as a finite float, written plainly (ASCII digits:
    not ``1_0`` or fullwidth digits, which ``float()`` reads as numbers); ValueError naming
    ``where`` (file and line) otherwise."""
    try:
        if "_" in value or not value.isascii():  # float() reads "1_0" as 10, "１" as 1
            raise ValueError
        number = float(value)
    except ValueError:
        raise ValueError(f"{where}: {column} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: {column} is {value!r}; box coordinates must be finite")
    return number


def check_box(
    box: Sequence[float], where: str, image: str | None = None
) -> tuple[float, float, float, float]:
    """Validate one XYXY box: finite, no coordinate below 0 (outside every image, refused
    before any image header is read) and ``x_min < x_max``, ``y_min < y_max``. The upper bounds
    need the image's size: the dataset checks them when it reads the header. ``image`` (its
    path, when known) is named in the message of a coordinate below 0."""
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x_min, y_min, x_max, y_max)):
        raise ValueError(f"{where}: box {list(box)} has a non-finite coordinate")
    if min(x_min, y_min, x_max, y_max) < 0:
        outside = f"image {image}" if image is not None else "every image"
        raise ValueError(
            f"{where}: box ({x_min:g}, {y_min:g}, {x_max:g}, {y_max:g}) lies outside {outside}"
            ": a coordinate is below 0; boxes are in pixel-edge coordinates, "
            "0 <= x <= width and 0 <= y <= height of the image, and are rejected, not clipped"
        )
    if x_min >= x_max:
        raise ValueError(f"{where}: box has x_min={x_min:g} >= x_max={x_max:g}; need x_min < x_max")
    if y_min >= y_max:
        raise ValueError(f"{where}: box has y_min={y_min:g} >= y_max={y_max:g}; need y_min < y_max")
    return x_min, y_min, x_max, y_max


def read_utf8(path: Path, what: str = "file") -> str:
    """The text of ``path``, which must be UTF-8 (a byte-order mark is fine; it is dropped).

    The one reader of torchlap's text inputs (annotations.csv, the RSNA and CelebA label
    files): a file in another encoding (Latin-1, UTF-16, ...) raises ValueError naming the file,
    the line of the first byte that is not UTF-8 and the accepted encoding, instead of Python's
    bare ``'utf-8' codec can't decode byte``. ``what`` names the file in the message."""
    data = read_file(path, f"the {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path} line {line}: byte 0x{data[error.start]:02x} is not UTF-8; the {what} must "
            "be UTF-8 (a BOM is fine): save it as UTF-8 (a spreadsheet's 'CSV UTF-8', or "
            "iconv -f <its encoding> -t utf-8)"
        ) from None


def read_annotations(csv_path: Path) -> tuple[list[ImageRecord], bool, bool]:
    """Parse and validate an ``annotations.csv``; group rows by image.

    Returns ``(records in order of first appearance, has_split_column, has_region_columns)``.
    Raises FileNotFoundError if the file is missing, ValueError naming the file and line for
    any malformed row or for a file that is not UTF-8 (:func:`read_utf8`).
    """
    csv_path = as_path(csv_path, "csv_path")
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{csv_path} not found: an annotated dataset folder needs an {ANNOTATIONS} with "
            f"columns {', '.join(REQUIRED_COLUMNS)} and optionally {', '.join(OPTIONAL_COLUMNS)}"
        )
    name = str(csv_path)
    handle = io.StringIO(read_utf8(csv_path, ANNOTATIONS), newline="")
    reader = csv.DictReader(handle, skipinitialspace=True)
    records: dict[str, ImageRecord] = {}
    with csv_errors_named(reader, name):
        columns = _read_header(reader, name)
        for row in reader:
            where = f"{name} line {reader.line_num}"
            _check_one_line(row, handle, name, reader.line_num)
            check_row_length(row, columns, where)
            values = {k: (v or "").strip() for k, v in row.items()}
            _add_row(records, values, where, columns)
    has_boxes = BOX_COLUMNS[0] in columns
    if not records:
        raise ValueError(f"{name} has a header but no rows")
    return list(records.values()), "split" in columns, has_boxes or "mask" in columns


def _check_one_line(row: dict[Any, Any], handle: io.StringIO, name: str, last: int) -> None:
    """A row whose quoted field runs over several lines: no field of an annotations.csv holds
    a line break, so it is an unclosed quote, named at the line it opens (the reader reports
    the line where the row ends, the file's last for a quote never closed)."""
    values = [v for value in row.values() for v in (value if isinstance(value, list) else [value])]
    fields = [v for v in values if isinstance(v, str)]  # (a short row's missing ones are None)
    breaks = sum(v.count("\n") + v.count("\r") - v.count("\r\n") for v in fields)
    at_end = handle.tell() == len(handle.getvalue())
    if at_end and fields and fields[-1].endswith(("\n", "\r")):
        breaks -= 1  # an unclosed quote took the last line's own line break too
    if not breaks:
        return
    end = "the end of the file" if at_end else f"line {last}"
    raise ValueError(
        f"{name} line {last - breaks}: a quote opened here runs to {end} (a quoted field over "
        f"{breaks + 1} lines); close it on its line, fields hold no line breaks"
    )


def check_unique_columns(columns: Sequence[str], name: str) -> None:
    """ValueError when a CSV header names a column twice: ``csv.DictReader`` keeps the last of
    equal names, so a second ``label`` (or RSNA ``x``) column would silently win."""
    if repeated := sorted({c for c in columns if columns.count(c) > 1}):
        raise ValueError(
            f"{name}: column(s) {', '.join(repeated)} appear more than once in the header "
            f"({', '.join(columns)}); each column may appear once"
        )


def _read_header(reader: csv.DictReader, name: str) -> list[str]:
    """The stripped column names; the required ones and the four box columns together."""
    if reader.fieldnames is None:
        raise ValueError(f"{name} is empty: the first line must be the header")
    columns = [c.strip() for c in reader.fieldnames]
    reader.fieldnames = columns
    check_unique_columns(columns, name)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    present_boxes = [c for c in BOX_COLUMNS if c in columns]
    if present_boxes and len(present_boxes) != len(BOX_COLUMNS):
        missing += [c for c in BOX_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {', '.join(missing)} (found {', '.join(columns)}); "
            f"required: {', '.join(REQUIRED_COLUMNS)}; optional: split, the four box "
            "columns x_min,y_min,x_max,y_max together, mask"
        )
    unknown = [c for c in columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        logger.warning("%s: ignoring unknown column(s) %s", name, ", ".join(unknown))
    return columns


def _row_box(values: dict[str, str], where: str) -> tuple[float, float, float, float] | None:
    """The row's box, or None when its four fields are empty."""
    fields = [values[c] for c in BOX_COLUMNS]
    if any(fields) and not all(fields):
        raise ValueError(
            f"{where}: box fields must be all filled or all empty, got "
            + ", ".join(f"{c}={v!r}" for c, v in zip(BOX_COLUMNS, fields, strict=True))
        )
    if not all(fields):
        return None
    numbers = [parse_number(v, c, where) for c, v in zip(BOX_COLUMNS, fields, strict=True)]
    return check_box(numbers, where)


def inside_path(value: str, column: str, where: str) -> str:
    """``value`` as a POSIX path relative to the dataset folder; absolute paths and paths that
    climb out of the folder (a ``..`` part) are refused, so a CSV cannot make torchlap read
    files outside the dataset it describes."""
    path = Path(value)
    if os.path.isabs(value) or path.anchor:
        raise ValueError(
            f"{where}: {column} path {value!r} is absolute; paths are relative to the folder"
        )
    if ".." in path.parts or ".." in Path(value.replace("\\", "/")).parts:
        raise ValueError(
            f"{where}: {column} path {value!r} leaves the dataset folder ('..'); paths are "
            "relative to the folder and stay inside it"
        )
    return path.as_posix()


def _check_fields(image: str, label: str, split: str | None, where: str) -> str:
    """The image path (returned as :func:`inside_path` gives it), label and split of a row or
    record: a non-empty path inside the folder, a non-empty printable label, a known split."""
    if not image:
        raise ValueError(f"{where}: empty image path")
    image = inside_path(image, "image", where)
    if not label:
        raise ValueError(f"{where}: empty label for image {image!r}")
    if not label.isprintable():  # a NUL or a control character would make a class of its own
        raise ValueError(f"{where}: label {label!r} holds a control character; labels are text")
    if split is not None and split not in SPLITS:
        raise ValueError(f"{where}: unknown split value {split!r}; accepted: {', '.join(SPLITS)}")
    return image


def check_record(record: ImageRecord, where: str) -> str:
    """Run ``record`` through the checks :func:`read_annotations` makes of a row: a non-empty
    image path inside the folder, a non-empty printable label, a known split (or None), boxes
    of four finite numbers, none below 0, ``x_min < x_max`` and ``y_min < y_max``, a mask path
    inside the folder. ``where`` names the record in the messages (a box by its own entry of
    ``box_sources`` when they pair with the boxes). Returns the image path as reading gives it
    (:func:`inside_path`); ValueError (TypeError for a field of the wrong type) otherwise."""
    for name in ("image", "label", "mask"):
        value = getattr(record, name)
        if not isinstance(value, str) and (value is not None or name != "mask"):
            raise TypeError(
                f"{where}: {name} must be a str (a path relative to the dataset folder, or "
                f"the class name), got {type(value).__name__}"
            )
    image = _check_fields(record.image, record.label, record.split, where)
    paired = len(record.box_sources) == len(record.boxes)
    for box, box_where in zip(
        record.boxes, record.box_sources if paired else [where] * len(record.boxes), strict=True
    ):
        numbers = number_list(box, f"{box_where}: box", "(x_min, y_min, x_max, y_max)")
        if len(numbers) != len(BOX_COLUMNS):
            raise ValueError(
                f"{box_where}: box {list(box)} has {len(numbers)} number(s); a box is 4: "
                f"({', '.join(BOX_COLUMNS)})"
            )
        check_box(numbers, box_where, image=image)
    if record.mask is not None:
        inside_path(record.mask, "mask", where)
    return image


def check_records(
    records: Sequence[ImageRecord], source: str | None = None, for_writing: bool = False
) -> None:
    """:func:`check_record` of every record, and one record per image (an image's boxes are
    one record's: two records of it would be read back as one, or refused). A record is named
    by its ``source``, else by its number and image after ``source`` (``SOURCE: record 3
    (image 'a.png')``); ``for_writing``: by its number and image first (``record 3 (image
    'a.png') from <its source>``)."""
    first: dict[str, str] = {}
    for number, record in enumerate(records, start=1):
        numbered = f"record {number} (image {record.image!r})"
        if for_writing:
            where = numbered + (f" from {record.source}" if record.source else "")
        else:
            where = record.source or (f"{source}: {numbered}" if source else numbered)
        image = check_record(record, where)
        if image in first:
            raise ValueError(
                f"{where}: image {image!r} has a record already ({first[image]}); one record "
                "per image, holding all its boxes"
            )
        first[image] = where


def _add_row(
    records: dict[str, ImageRecord], values: dict[str, str], where: str, columns: list[str]
) -> None:
    """Validate one row and add it to the record of its image (a new one, or the one of an
    earlier row of the same image, which must agree on label, split and mask)."""
    label = values["label"]
    split = values["split"] if "split" in columns else None
    image = _check_fields(values["image"], label, split, where)
    box = _row_box(values, where) if BOX_COLUMNS[0] in columns else None
    mask = (values["mask"] or None) if "mask" in columns else None
    if mask is not None:
        mask = inside_path(mask, "mask", where)
    record = records.get(image)
    if record is None:
        record = records[image] = ImageRecord(image, label, split, mask=mask, source=where)
    else:
        _check_same_image(record, where, image, label, split, mask)
        record.mask = record.mask or mask
    if box is not None:
        record.boxes.append(box)
        record.box_sources.append(where)


def _check_same_image(
    record: ImageRecord, where: str, image: str, label: str, split: str | None, mask: str | None
) -> None:
    """A later row of an image agrees with its first row on label, split and mask."""
    if record.label != label:
        raise ValueError(
            f"{where}: image {image!r} has label {label!r} but {record.label!r} at "
            f"{record.source}; one image has one label"
        )
    if record.split != split:
        raise ValueError(
            f"{where}: image {image!r} is in split {split!r} but in "
            f"{record.split!r} at {record.source}; one image has one split"
        )
    if mask is not None and record.mask not in (None, mask):
        raise ValueError(
            f"{where}: image {image!r} has mask {mask!r} but {record.mask!r} at "
            f"{record.source}; one image has one mask"
        )


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_annotations(
    path: Path,
    records: Iterable[ImageRecord],
    *,
    regions: bool = True,
    overwrite: bool = False,
) -> None:
    """Write records as an ``annotations.csv`` (one row per box), atomically.

    ``regions`` (True or False): whether the data has regions. True (default) writes the
    columns ``image,label,split,x_min,y_min,x_max,y_max,mask`` (an image without boxes or mask
    is then read back as a known empty region: a negative); False writes ``image,label,split``
    only, so class-only data reads back without regions (records with boxes or a mask are then
    refused). ``overwrite`` (True or False): an existing ``path`` is refused
    (FileExistsError) unless True. Every record has a split (``train``, ``val`` or ``test``),
    or none has one: the file then has no split column (reading it makes the seeded split);
    other splits are refused (ValueError) before anything is written, as is every record
    :func:`read_annotations` would refuse or read back changed (:func:`check_records`: a NaN,
    inverted, negative or 3-number box, an empty label, a path leaving the folder, two records
    of one image; spaces around a path or label, a line break in one).
    """
    path = as_path(path)
    check_bool(overwrite, "overwrite")
    check_bool(regions, "regions")
    records = list(records)
    with_split = _check_record_splits(records)
    check_records(records, for_writing=True)  # what reading it back would refuse
    for number, record in enumerate(records, start=1):
        _check_text_reads_back(record, f"record {number} (image {record.image!r})")
    if not regions and (with_regions := [r for r in records if r.boxes or r.mask]):
        raise ValueError(
            f"regions=False, but {len(with_regions)} record(s) have boxes or a mask (first: "
            f"{with_regions[0].image}); pass regions=True to write them"
        )
    _check_file_path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:  # a link to nothing too
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it (its rows and any "
            "columns torchlap does not read would be lost), or choose another path"
        )
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    region_columns = [*BOX_COLUMNS, "mask"] if regions else []
    writer.writerow(["image", "label", *(["split"] if with_split else []), *region_columns])
    for record in records:
        tail = [record.mask or ""]
        head = [record.image, record.label, *([record.split] if with_split else [])]
        if not regions:
            writer.writerow(head)
        elif not record.boxes:
            writer.writerow([*head, "", "", "", "", *tail])
        for box in record.boxes:
            writer.writerow([*head, *(_format_number(v) for v in box), *tail])
    # the usual file mode, fsync, temp cleaned on error; without overwrite, a file that
    # appeared meanwhile is refused, not replaced
    atomic_write(path, text.getvalue(), replace=overwrite)


def _check_text_reads_back(record: ImageRecord, where: str) -> None:
    """ValueError for a text field that reading the file would change: spaces around it
    (stripped: ``' a.png'`` reads as another file, ``' cat '`` as ``'cat'``) or a line break
    (a field over two lines, refused)."""
    for name in ("image", "label", "mask"):
        value = getattr(record, name) or ""
        if value != value.strip() or "\n" in value or "\r" in value:
            raise ValueError(
                f"{where}: {name} {value!r} has spaces around it or a line break, which "
                f"{ANNOTATIONS} cannot hold (reading strips the spaces around a field, and a "
                "field holds no line break): rename it without them"
            )


def _check_record_splits(records: list[ImageRecord]) -> bool:
    """Whether the records have splits (all of them); ValueError for a split the file cannot
    hold (another name, or records with and without one, which reading would refuse)."""
    for number, record in enumerate(records, start=1):
        if record.split is not None and record.split not in SPLITS:
            raise ValueError(
                f"record {number} ({record.image}) has split {record.split!r}; accepted: "
                f"{', '.join(SPLITS)} (or None for all)"
            )
    given = [k for k, r in enumerate(records) if r.split is not None]
    if given and len(given) != len(records):
        first_none = next(k for k, r in enumerate(records) if r.split is None)
        named = records[given[0]]
        raise ValueError(
            f"record {first_none + 1} ({records[first_none].image}) has no split but record "
            f"{given[0] + 1} ({named.image}) has {named.split!r}; every record has a split "
            "(train, val or test) or none has one (the file then has no split column)"
        )
    return bool(given)


def _check_file_path(path: Path) -> None:
    """FileExistsError when ``path`` is a folder (``""`` is ``.``) or lies under a file: no
    CSV can be written there, whatever ``overwrite`` says."""
    if path.is_dir():
        raise FileExistsError(
            f"{path} is a folder; pass the path of the CSV file to write, e.g. {path / ANNOTATIONS}"
        )
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise FileExistsError(
            f"{blocking} is a file, so {path} cannot be written under it; pass a path whose "
            "parent folders are folders (or do not exist yet)"
        )


@contextlib.contextmanager
def csv_errors_named(reader: csv.DictReader, name: str) -> Iterator[None]:
    """csv's own refusals while ``reader`` reads (a field over its limit of 131072
    characters, which said only ``field larger than field limit (131072)``) as a ValueError
    naming the file ``name`` and the line."""
    try:
        yield
    except csv.Error as error:  # (DictReader's line_num counts the rows it returned only)
        raise ValueError(
            f"{name} line {reader.reader.line_num}: {error}; the fields of this file are short "
            "texts (paths, labels, numbers): is it the right file, or was a quote left open?"
        ) from None


def check_row_length(row: dict[Any, Any], columns: list[str], where: str) -> None:
    """ValueError for a ``csv.DictReader`` row with more or fewer fields than the header."""
    if None in row:  # csv gathers a long row's extra fields under the key None
        raise ValueError(f"{where}: more fields than the {len(columns)} header columns")
    if None in row.values():  # and fills the columns past a short row's end with None
        given = sum(value is not None for value in row.values())
        raise ValueError(
            f"{where}: {given} field(s) for the {len(columns)} header columns "
            f"({', '.join(columns)}); leave a field empty (a comma with nothing) for none"
        )
