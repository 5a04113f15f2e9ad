"""Mutation tables of the file fuzzer (``test_robust_file_fuzz.py``): each table maps a case
label to a function that damages ONE thing of a valid file tree copied for the case.

- :func:`csv_cases`: ``annotations.csv`` of an annotated folder (columns, cells, box geometry,
  paths, encodings, line endings, sizes, repeated rows);
- :func:`picture_cases`: the image and the mask of one annotated row (empty, truncated, text,
  other modes, 1x1, another size, grey mask values);
- :func:`config_cases` / :func:`weights_cases`: a run folder's ``config.json`` and
  ``model.safetensors`` (the weights written with safetensors; ``+rehash`` variants record the
  damaged file's SHA-256 so that the check behind the integrity record is reached);
- :func:`results_cases`: an evaluation's ``results.json``.

Every mutation takes the case's root folder and edits the files below it in place.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

Mutation = Callable[[Path], None]

#: the bad values written into one cell (label -> text)
CELL_VALUES = {
    "empty": "",
    "text": "abc",
    "nan": "nan",
    "inf": "inf",
    "-1": "-1",
    "1e30": "1e30",
    "float": "1.5",
}
#: the values a config.json key is set to (label -> JSON value; "nan" writes a bare NaN)
CONFIG_VALUES: dict[str, Any] = {
    "null": None,
    "string": "abc",
    "list": [1, "x"],
    "dict": {"x": {"y": 1}},
    "nan": float("nan"),
    "-1": -1,
    "huge": 10**30,
}


# ------------------------------------------------------------------------------------------
# annotations.csv
def read_rows(folder: Path) -> list[list[str]]:
    """The rows of ``folder/annotations.csv`` (header first)."""
    return list(csv.reader(io.StringIO((folder / "annotations.csv").read_text())))


def write_rows(folder: Path, rows: list[list[str]]) -> None:
    """Write ``rows`` as ``folder/annotations.csv`` (``\\n`` line ends)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    (folder / "annotations.csv").write_text(buffer.getvalue())


def target_line(rows: list[list[str]]) -> int:
    """The index in ``rows`` of the row the cell mutations edit: the first row with a box and
    a mask whose image has no other row (so that a cell names the image alone)."""
    header = rows[0]
    image, mask, x_min = header.index("image"), header.index("mask"), header.index("x_min")
    counts: dict[str, int] = {}
    for row in rows[1:]:
        counts[row[image]] = counts.get(row[image], 0) + 1
    for index, row in enumerate(rows[1:], start=1):
        if row[mask] and row[x_min] and counts[row[image]] == 1:
            return index
    raise ValueError("the clean folder has no single-row image with a box and a mask")


def _edit_rows(change: Callable[[list[list[str]], int], None]) -> Mutation:
    def mutate(folder: Path) -> None:
        rows = read_rows(folder)
        change(rows, target_line(rows))
        write_rows(folder, rows)

    return mutate


def _set_cell(column: str, value: str | Callable[[Path, list[str], list[str]], str]) -> Mutation:
    def mutate(folder: Path) -> None:
        rows = read_rows(folder)
        line = target_line(rows)
        at = rows[0].index(column)
        rows[line][at] = value(folder, rows[0], rows[line]) if callable(value) else value
        write_rows(folder, rows)

    return mutate


def _column_cases(header: list[str]) -> dict[str, Mutation]:
    cases: dict[str, Mutation] = {}
    for column in header:
        at = header.index(column)

        def delete(rows: list[list[str]], line: int, at: int = at) -> None:
            for row in rows:
                del row[at]

        def rename(rows: list[list[str]], line: int, at: int = at) -> None:
            rows[0][at] = rows[0][at] + "_renamed"

        def duplicate(rows: list[list[str]], line: int, at: int = at) -> None:
            for row in rows:
                row.append(row[at])

        cases[f"column-deleted:{column}"] = _edit_rows(delete)
        cases[f"column-renamed:{column}"] = _edit_rows(rename)
        cases[f"column-duplicated:{column}"] = _edit_rows(duplicate)
    return cases


def _box_value(
    change: Callable[[list[float], int, int], list[float]],
) -> Mutation:
    """Rewrite the target row's box by ``change(box, width, height)``."""

    def mutate(folder: Path) -> None:
        rows = read_rows(folder)
        line = target_line(rows)
        header, row = rows[0], rows[line]
        columns = [header.index(c) for c in ("x_min", "y_min", "x_max", "y_max")]
        with Image.open(folder / row[header.index("image")]) as image:
            width, height = image.size
        box = change([float(row[c]) for c in columns], width, height)
        for column, value in zip(columns, box, strict=True):
            row[column] = f"{value:g}"
        write_rows(folder, rows)

    return mutate


def _absolute_image(folder: Path, header: list[str], row: list[str]) -> str:
    return str((folder / row[header.index("image")]).resolve())


def _absolute_mask(folder: Path, header: list[str], row: list[str]) -> str:
    return str((folder / row[header.index("mask")]).resolve())


def _raw(change: Callable[[bytes], bytes]) -> Mutation:
    def mutate(folder: Path) -> None:
        path = folder / "annotations.csv"
        path.write_bytes(change(path.read_bytes()))

    return mutate


def _replace_target_label(data: bytes, folder: Path, new: bytes) -> bytes:
    rows = read_rows(folder)
    line = target_line(rows)
    lines = data.split(b"\n")
    label = rows[line][rows[0].index("label")].encode()
    lines[line] = lines[line].replace(b"," + label + b",", b"," + new + b",", 1)
    return b"\n".join(lines)


def _raw_label(folder: Path, new: bytes) -> None:
    path = folder / "annotations.csv"
    path.write_bytes(_replace_target_label(path.read_bytes(), folder, new))


def _csv_folder(folder: Path) -> None:
    (folder / "annotations.csv").unlink()
    (folder / "annotations.csv").mkdir()


def _backslashed(folder: Path, header: list[str], row: list[str]) -> str:
    return row[header.index("image")].replace("/", "\\")


def _non_utf8(folder: Path) -> None:
    path = folder / "annotations.csv"
    path.write_bytes(_replace_target_label(path.read_bytes(), folder, b"caf\xe9"))


def _long_line(folder: Path) -> None:
    """A row whose image path is 1 MB long."""
    _set_cell("image", "images/" + "a" * (1 << 20) + ".png")(folder)


def _duplicate_row(rows: list[list[str]], line: int) -> None:
    rows.insert(line + 1, list(rows[line]))


def csv_cases(header: list[str]) -> dict[str, Mutation]:
    """Every mutation of ``annotations.csv`` (``header``: the clean file's columns)."""
    cases = _column_cases(header)
    for column in header:
        for label, value in CELL_VALUES.items():
            cases[f"cell:{column}={label}"] = _set_cell(column, value)
    cases.update({
        "box-outside": _box_value(lambda b, w, h: [b[0], b[1], w + 5, b[3]]),
        "box-negative": _box_value(lambda b, w, h: [-3, b[1], b[2], b[3]]),
        "box-zero-area": _box_value(lambda b, w, h: [b[0], b[1], b[0], b[3]]),
        "box-x2<x1": _box_value(lambda b, w, h: [b[2], b[1], b[0], b[3]]),
        "box-y2<y1": _box_value(lambda b, w, h: [b[0], b[3], b[2], b[1]]),
        "label-unknown-class": _set_cell("label", "no-such-class"),
        "image-missing": _set_cell("image", "images/no-such-image.png"),
        "image-outside": _set_cell("image", "../x.png"),
        "image-absolute": _set_cell("image", _absolute_image),
        "image-directory": _set_cell("image", "images"),
        "mask-missing": _set_cell("mask", "masks/no-such-mask.png"),
        "mask-outside": _set_cell("mask", "../x.png"),
        "mask-directory": _set_cell("mask", "masks"),
        "mask-absolute": _set_cell("mask", _absolute_mask),
        "file-empty": _raw(lambda data: b""),
        "file-header-only": _raw(lambda data: data.split(b"\n", 1)[0] + b"\n"),
        "file-bom": _raw(lambda data: b"\xef\xbb\xbf" + data),
        "file-crlf": _raw(lambda data: data.replace(b"\n", b"\r\n")),
        "file-non-utf8": _non_utf8,
        "file-1mb-line": _long_line,
        "file-nul": lambda folder: _raw_label(folder, b"neg\x00ative"),
        "file-unclosed-quote": lambda folder: _raw_label(folder, b'"positive'),
        "file-utf16": _raw(lambda data: data.decode().encode("utf-16")),
        "file-binary": _raw(lambda data: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
        "file-is-folder": _csv_folder,
        "file-blank-lines": _raw(lambda data: data.replace(b"\n", b"\n\n", 3)),
        "image-backslashes": _set_cell("image", _backslashed),
        "image-spaces": _set_cell("image", lambda f, h, r: f"  {r[h.index('image')]}  "),
        "row-duplicated": _edit_rows(_duplicate_row),
        "row-short": _edit_rows(lambda rows, line: rows[line].pop()),
        "row-long": _edit_rows(lambda rows, line: rows[line].append("extra")),
    })  # fmt: skip
    return cases


# ------------------------------------------------------------------------------------------
# images and masks
def _target_file(folder: Path, column: str) -> Path:
    rows = read_rows(folder)
    return folder / rows[target_line(rows)][rows[0].index(column)]


def _write_picture(column: str, make: Callable[[Path], None]) -> Mutation:
    def mutate(folder: Path) -> None:
        make(_target_file(folder, column))

    return mutate


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _convert(mode: str, form: str = "PNG") -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with Image.open(path) as image:
            image.load()
        grey = np.asarray(image.convert("L"))
        if mode == "I;16":
            converted = Image.fromarray(grey.astype(np.uint16) * 257)
        elif mode == "P-transparent":  # palette index 0 transparent
            converted = image.convert("RGB").convert("P")
        else:
            converted = image.convert(mode)
        options = {"transparency": 0} if mode == "P-transparent" else {}
        buffer = io.BytesIO()
        converted.save(buffer, format=form, **options)
        path.write_bytes(buffer.getvalue())

    return make


def _resized(size: Callable[[int, int], tuple[int, int]]) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with Image.open(path) as image:
            image.resize(size(*image.size), Image.NEAREST).save(path, format="PNG")

    return make


def _grey_values(path: Path) -> None:
    with Image.open(path) as image:
        values = (np.asarray(image.convert("L")) > 0).astype(np.uint8) * 128
    Image.fromarray(values).save(path, format="PNG")


#: the damages of one picture file (label -> a function rewriting the file in place)
PICTURE_MAKERS: dict[str, Callable[[Path], None]] = {
    "zero-bytes": lambda p: p.write_bytes(b""),
    "truncated": _truncated,
    "text": lambda p: p.write_text("not an image\n"),
    "16-bit": _convert("I;16"),
    "cmyk": _convert("CMYK", "TIFF"),
    "la": _convert("LA"),
    "p-transparent": _convert("P-transparent"),
    "1x1": _resized(lambda w, h: (1, 1)),
    "other-size": _resized(lambda w, h: (w + 4, h)),
}


def picture_cases() -> dict[str, Mutation]:
    """Every mutation of the target row's image and mask files."""
    cases = {}
    for column in ("image", "mask"):
        for label, make in PICTURE_MAKERS.items():
            cases[f"{column}:{label}"] = _write_picture(column, make)
    cases["mask:grey-values"] = _write_picture("mask", _grey_values)
    return cases


# ------------------------------------------------------------------------------------------
# a run folder
def _edit_config(change: Callable[[dict[str, Any]], None]) -> Mutation:
    def mutate(folder: Path) -> None:
        path = folder / "config.json"
        config = json.loads(path.read_text())
        change(config)
        path.write_text(json.dumps(config, indent=2))  # NaN written as a bare NaN

    return mutate


def _set_key(keys: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        for key in keys[:-1]:
            config = config[key]
        config[keys[-1]] = value

    return change


def _delete_key(keys: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        for key in keys[:-1]:
            config = config[key]
        del config[keys[-1]]

    return change


def config_key_paths(config: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The keys the config mutations edit: every top-level key, every key of ``model``, of its
    first recorded lapify call and of ``concept_sets``, and ``train.image_size``."""
    return (
        [(k,) for k in config]
        + [("model", k) for k in config["model"]]
        + [("model", "lapify", 0, k) for k in config["model"]["lapify"][0]]
        + [("concept_sets", k) for k in config["concept_sets"]]
        + [("train", "image_size")]
    )


def config_cases(key_paths: list[tuple[Any, ...]]) -> dict[str, Mutation]:
    """Every mutation of a run's ``config.json`` (``key_paths``: the keys edited, as
    :func:`config_key_paths` lists them for the clean file)."""
    cases: dict[str, Mutation] = {}
    for keys in key_paths:
        name = ".".join(map(str, keys))
        cases[f"config-deleted:{name}"] = _edit_config(_delete_key(keys))
        for label, value in CONFIG_VALUES.items():
            cases[f"config:{name}={label}"] = _edit_config(_set_key(keys, value))

    def truncated(folder: Path) -> None:
        text = (folder / "config.json").read_text()
        (folder / "config.json").write_text(text[: len(text) // 2])

    def array(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps([config]))

    cases["config-truncated"] = truncated
    cases["config-array"] = array
    cases["config-empty"] = lambda folder: (folder / "config.json").write_text("")
    return cases


def rehash(folder: Path) -> None:
    """Record ``model.safetensors``' SHA-256 in ``config.json`` as torchlap train does."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    config["integrity"]["model.safetensors"] = {"sha256": digest, "previous": None}
    path.write_text(json.dumps(config, indent=2))


def _edit_tensors(change: Callable[[dict[str, torch.Tensor]], None]) -> Mutation:
    def mutate(folder: Path) -> None:
        path = folder / "model.safetensors"
        tensors = load_file(path)
        change(tensors)
        save_file(tensors, path, metadata={"format": "torchlap-run"})

    return mutate


def _first_weight(tensors: dict[str, torch.Tensor]) -> str:
    return next(k for k in sorted(tensors) if k.endswith(".weight"))


def weights_cases() -> dict[str, Mutation]:
    """Every mutation of ``model.safetensors``, raw and with the integrity record updated."""

    def retype(tensors: dict[str, torch.Tensor]) -> None:
        key = _first_weight(tensors)
        tensors[key] = tensors[key].double()

    def reshape(tensors: dict[str, torch.Tensor]) -> None:
        key = _first_weight(tensors)
        tensors[key] = tensors[key].flatten()

    def drop(tensors: dict[str, torch.Tensor]) -> None:
        del tensors[_first_weight(tensors)]

    def add(tensors: dict[str, torch.Tensor]) -> None:
        tensors["net.extra.weight"] = torch.zeros(3)

    def nonfinite(tensors: dict[str, torch.Tensor]) -> None:
        key = _first_weight(tensors)
        tensors[key] = torch.full_like(tensors[key], float("nan"))

    def truncated(folder: Path) -> None:
        _truncated(folder / "model.safetensors")

    raw: dict[str, Mutation] = {
        "weights-truncated": truncated,
        "weights-empty": lambda folder: (folder / "model.safetensors").write_bytes(b""),
        "weights-text": lambda folder: (folder / "model.safetensors").write_text("{}"),
        "weights-dtype": _edit_tensors(retype),
        "weights-shape": _edit_tensors(reshape),
        "weights-dropped": _edit_tensors(drop),
        "weights-added": _edit_tensors(add),
        "weights-nan": _edit_tensors(nonfinite),
    }
    cases = dict(raw)
    for label, mutate in raw.items():

        def rehashed(folder: Path, mutate: Mutation = mutate) -> None:
            mutate(folder)
            rehash(folder)

        cases[f"{label}+rehash"] = rehashed
    return cases


# ------------------------------------------------------------------------------------------
# results.json
#: the nested results.json entries the mutations edit beyond the top-level keys
RESULTS_NESTED: list[tuple[str, ...]] = [
    *[("localization", "lap", "iou_topk", field)
      for field in ("value", "higher_is_better", "n", "n_excluded")],
    ("faithfulness", "lap", "keep_top_k", "10", "top1_vs_label", "value"),
    ("stability", "lap", "0.1", "change_inc", "value"),
    ("timing", "lap", "seconds"), ("maps", "lap", "n_flat"), ("methods", "lap", "display_name"),
    ("examples", "lap", "best"), ("data", "n_images"), ("data", "label_counts"),
    ("protocol", "metrics_revision"),
]  # fmt: skip


def results_cases(key_paths: list[tuple[str, ...]]) -> dict[str, Mutation]:
    """Every mutation of ``results.json`` (``key_paths``: the keys edited, the top-level ones
    and :data:`RESULTS_NESTED`)."""
    cases: dict[str, Mutation] = {}

    def edit(change: Callable[[dict[str, Any]], None]) -> Mutation:
        def mutate(folder: Path) -> None:
            path = folder / "results.json"
            data = json.loads(path.read_text())
            change(data)
            path.write_text(json.dumps(data))

        return mutate

    for keys in key_paths:
        name = ".".join(keys)
        cases[f"results-deleted:{name}"] = edit(_delete_key(keys))
        for label, value in CONFIG_VALUES.items():
            cases[f"results:{name}={label}"] = edit(_set_key(keys, value))

    def truncated(folder: Path) -> None:
        text = (folder / "results.json").read_text()
        (folder / "results.json").write_text(text[: len(text) // 2])

    def array(folder: Path) -> None:
        text = (folder / "results.json").read_text()
        (folder / "results.json").write_text(f"[{text}]")

    cases["results-truncated"] = truncated
    cases["results-array"] = array
    return cases


# ------------------------------------------------------------------------------------------
# a DICOM image
#: DICOM header elements the mutations edit (element -> the values tried besides deleting it)
DICOM_VALUES: dict[str, list[Any]] = {
    "Rows": [0, 9, 11, 65535],
    "Columns": [0, 13],
    "SamplesPerPixel": [0, 3, 4],
    "PhotometricInterpretation": ["RGB", "PALETTE COLOR", "YBR_FULL", "abc", ""],
    "BitsAllocated": [0, 1, 12, 16, 64],
    "BitsStored": [0, 1, 12, 33],
    "HighBit": [0, 40],
    "PixelRepresentation": [1, 2],
    "PixelData": [b"", b"\0" * 7],
}


def dicom_cases() -> dict[str, Mutation]:
    """Every mutation of ``a.dcm`` (a 10 x 12 grey DICOM image) in the case folder."""
    import pydicom

    def edit(element: str, value: Any, delete: bool = False) -> Mutation:
        def mutate(folder: Path) -> None:
            dataset = pydicom.dcmread(folder / "a.dcm")
            if delete:
                delattr(dataset, element)
            else:
                setattr(dataset, element, value)
            dataset.save_as(folder / "a.dcm")

        return mutate

    cases: dict[str, Mutation] = {}
    for element, values in DICOM_VALUES.items():
        cases[f"dicom-deleted:{element}"] = edit(element, None, delete=True)
        for value in values:
            cases[f"dicom:{element}={value!r}"] = edit(element, value)
    for label, make in (("zero-bytes", PICTURE_MAKERS["zero-bytes"]),
                        ("truncated", _truncated), ("text", PICTURE_MAKERS["text"])):  # fmt: skip
        cases[f"dicom-{label}"] = lambda folder, make=make: make(folder / "a.dcm")
    return cases


# ------------------------------------------------------------------------------------------
# a --concept-sets file
#: the concept sets of the built-in lesions data (2 classes, 1 concept), as a run writes them
CLEAN_CONCEPT_SETS = {"n_classes": 2, "n_concepts": 1, "mapping": {"0": [], "1": [0]}}


def concept_set_cases() -> dict[str, Mutation]:
    """Every mutation of ``sets.json`` (:data:`CLEAN_CONCEPT_SETS`) in the case folder."""

    def edit(change: Callable[[dict[str, Any]], None]) -> Mutation:
        def mutate(folder: Path) -> None:
            sets = json.loads((folder / "sets.json").read_text())
            change(sets)
            (folder / "sets.json").write_text(json.dumps(sets))

        return mutate

    def raw(change: Callable[[bytes], bytes]) -> Mutation:
        def mutate(folder: Path) -> None:
            path = folder / "sets.json"
            path.write_bytes(change(path.read_bytes()))

        return mutate

    cases: dict[str, Mutation] = {}
    for key in CLEAN_CONCEPT_SETS:
        cases[f"concept-sets-deleted:{key}"] = edit(_delete_key((key,)))
        for label, value in CONFIG_VALUES.items():
            cases[f"concept-sets:{key}={label}"] = edit(_set_key((key,), value))
    cases.update({
        "concept-sets-index-out-of-range": edit(_set_key(("mapping", "1"), [5])),
        "concept-sets-class-beyond": edit(_set_key(("mapping", "7"), [0])),
        "concept-sets-class-not-int": edit(_set_key(("mapping", "x"), [0])),
        "concept-sets-more-concepts": edit(_set_key(("n_concepts",), 3)),
        "concept-sets-more-classes": edit(_set_key(("n_classes",), 3)),
        "concept-sets-empty": raw(lambda data: b""),
        "concept-sets-truncated": raw(lambda data: data[: len(data) // 2]),
        "concept-sets-array": raw(lambda data: b"[" + data + b"]"),
        "concept-sets-bom": raw(lambda data: b"\xef\xbb\xbf" + data),
        "concept-sets-non-utf8": raw(lambda data: data[:-1] + b', "caf\xe9": 1}'),
        "concept-sets-crlf": raw(lambda data: data.replace(b", ", b",\r\n")),
        "concept-sets-folder": lambda folder: ((folder / "sets.json").unlink(),
                                               (folder / "sets.json").mkdir()),
    })  # fmt: skip
    return cases
