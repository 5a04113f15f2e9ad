"""Importers for the LAP paper's datasets (Sec. 4), for users who have them locally.

Each reads the dataset's own files (UTF-8, a BOM is fine), validates them, and returns an
``AnnotatedFolder`` (same sample contract, same errors); ``dataset.save_annotations(path)``
writes the result in the annotated folder format, except RSNA's: its normal images have no
known region (``has_region=False``), which that format cannot express (refused, see
:meth:`AnnotatedFolder.save_annotations`). Nothing is downloaded.

* RSNA Pneumonia Detection Challenge: ``stage_2_train_labels.csv``
  (``patientId,x,y,width,height,Target``; one row per box, empty box fields for Target 0)
  and ``<patientId>.dcm`` (DICOM, needs the ``dicom`` extra) or ``<patientId>.png`` images.
  Classes ``normal`` (Target 0) and ``pneumonia`` (Target 1). Paper split 81/9/10. Only
  pneumonia images carry boxes: normal images have ``has_region=False``.
* CelebA: ``list_attr_celeba.txt`` (image count, the 40 attribute names, then one line per
  image with values 1/-1) and an attribute, e.g. ``Smiling``: classes ``not_smiling`` and
  ``smiling``. Paper split 70/10/20, or the official ``list_eval_partition.txt``.
* ImageNet: the folder layout of ``torchvision.datasets.ImageNet`` (``train/<wnid>/*.JPEG``,
  ``val/<wnid>/*.JPEG``, optional ``meta.bin`` with class names). Classes are the sorted wnids,
  i.e. the standard class indices of torchvision's pretrained models.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from torchlap.data._base import Sample, check_split
from torchlap.data.annotations import (
    ImageRecord,
    check_box,
    check_row_length,
    check_unique_columns,
    csv_errors_named,
    parse_number,
    read_utf8,
)
from torchlap.data.folder import AnnotatedFolder

logger = logging.getLogger(__name__)

RSNA_COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
RSNA_CLASSES = ("normal", "pneumonia")


def rsna_pneumonia(
    root: str | os.PathLike[str],
    split: str = "train",
    labels_csv: str = "stage_2_train_labels.csv",
    images_dir: str = "stage_2_train_images",
    detailed_class_info: str | None = None,
    split_fractions: Sequence[float] = (0.81, 0.09, 0.10),
    seed: int = 0,
    **options: Any,
) -> AnnotatedFolder:
    """The RSNA Pneumonia Detection Challenge data as a localization dataset.

    ``detailed_class_info`` (e.g. ``stage_2_detailed_class_info.csv``, columns
    ``patientId,class``): if given, patients of class ``No Lung Opacity / Not Normal`` are
    dropped, keeping healthy and pneumonia patients as in the paper (Sec. 4.A). The split is
    the paper's random 81/9/10 %, stratified and seeded. ``options`` go to ``AnnotatedFolder``.
    """
    root_path, csv_path, images_dir, image_folder = _dataset_paths(
        root, labels_csv, images_dir, "RSNA labels file", "RSNA image folder"
    )
    excluded = _rsna_excluded(root_path / detailed_class_info) if detailed_class_info else set()
    records = _rsna_records(csv_path, image_folder, root_path, excluded)
    return RsnaFolder.from_records(
        root_path,
        records,
        source=str(csv_path),
        has_regions=True,
        split=split,
        split_fractions=split_fractions,
        seed=seed,
        **options,
    )


def _dataset_paths(
    root: str | os.PathLike[str],
    label_file: str,
    images_dir: str | os.PathLike[str],
    label_what: str,
    folder_what: str,
) -> tuple[Path, Path, str, Path]:
    """An importer's root, its label file (which must exist), its image folder's POSIX path
    relative to the root (:func:`_inside_root`) and the image folder (which must exist), as
    ``(root, label file, images_dir, image folder)``. ``label_what`` and ``folder_what`` name
    the file and the folder in the FileNotFoundError (e.g. ``"RSNA labels file"``)."""
    root_path = Path(root)
    label_path = root_path / label_file
    if not label_path.is_file():
        raise FileNotFoundError(f"{label_what} {label_path} not found")
    relative = _inside_root(root_path, images_dir)
    image_folder = root_path / relative
    if not image_folder.is_dir():
        raise FileNotFoundError(f"{folder_what} {image_folder} not found")
    return root_path, label_path, relative, image_folder


def _csv_rows(
    path: Path, what: str, check_header: Callable[[list[str]], None]
) -> Iterator[tuple[str, dict[str, str]]]:
    """The rows of the UTF-8 CSV file ``path`` (``what`` names it, :func:`read_utf8`) as
    ``(where, row)``, ``where`` its file and line; the header's names stripped and passed to
    ``check_header`` (which raises for a file without the columns it needs) before the first
    row. Refused: a column named twice (csv would keep the last), a row with more or fewer
    fields than the header, or one csv cannot read (naming its line)."""
    text = read_utf8(path, what)
    with (
        io.StringIO(text, newline="") as handle,
        csv_errors_named(reader := csv.DictReader(handle), str(path)),
    ):
        columns = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = columns
        check_unique_columns(columns, str(path))
        check_header(columns)
        for row in reader:
            where = f"{path} line {reader.line_num}"
            check_row_length(row, columns, where)
            yield where, row


def _inside_root(root: Path, images_dir: str | os.PathLike[str]) -> str:
    """``images_dir`` as a POSIX path relative to ``root`` (an absolute path inside ``root`` is
    made relative): the dataset's image paths are relative to its root, so an image folder
    outside it is refused here, naming the argument, not at the first image's line."""
    folder = Path(images_dir)
    if folder.is_absolute():
        absolute_root = Path(os.path.abspath(root))
        try:
            folder = Path(os.path.abspath(folder)).relative_to(absolute_root)
        except ValueError:
            folder = Path("..")  # outside: refused below
    if ".." in Path(os.path.normpath(folder)).parts or ".." in folder.parts:
        raise ValueError(
            f"images_dir {os.fspath(images_dir)!r} is not a folder inside the root {root} (it "
            "is absolute outside it, or climbs with '..'); the images are read by paths "
            "relative to the root: pass a root that holds both the label file and the image "
            "folder (and the file and folder names relative to it)"
        )
    return folder.as_posix()


def _rsna_records(
    csv_path: Path, image_folder: Path, root_path: Path, excluded: set[str]
) -> list[ImageRecord]:
    """One record per patient of the labels file (boxes gathered from its rows)."""
    records: dict[str, ImageRecord] = {}
    targets: dict[str, int] = {}

    def check_header(columns: list[str]) -> None:
        missing = [c for c in RSNA_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"{csv_path}: missing column(s) {', '.join(missing)} (found {', '.join(columns)});"
                f" the RSNA labels file has columns {','.join(RSNA_COLUMNS)}"
            )

    for where, row in _csv_rows(csv_path, "RSNA labels file", check_header):
        values = {k: (v or "").strip() for k, v in row.items()}
        patient = values["patientId"]
        if not patient:
            raise ValueError(f"{where}: empty patientId")
        if patient in excluded:
            continue
        if values["Target"] not in ("0", "1"):
            raise ValueError(f"{where}: Target is {values['Target']!r}; accepted: 0 or 1")
        target = int(values["Target"])
        fields = [values[c] for c in ("x", "y", "width", "height")]
        if target == 1 and not all(fields):
            raise ValueError(f"{where}: Target 1 (pneumonia) needs x, y, width and height")
        if target == 0 and any(fields):
            raise ValueError(f"{where}: Target 0 (normal) must have empty box fields")
        if targets.setdefault(patient, target) != target:
            raise ValueError(f"{where}: patient {patient} has rows with Target 0 and 1")
        record = records.get(patient)
        if record is None:
            record = records[patient] = ImageRecord(
                image=_rsna_image(image_folder, patient, where, root_path),
                label=RSNA_CLASSES[target],
                source=where,
            )
        if target == 1:
            record.boxes.append(_rsna_box(values, where))
            record.box_sources.append(where)
    if not records:
        dropped = f" ({len(excluded)} dropped by the detailed class info)" if excluded else ""
        raise ValueError(f"{csv_path}: no patients{dropped}")
    return list(records.values())


def _rsna_box(values: dict[str, str], where: str) -> tuple[float, float, float, float]:
    """A pneumonia row's box (x, y, width, height) as XYXY; plain finite numbers (as in
    annotations.csv: not ``1_0``), width and height > 0."""
    x, y, width, height = (parse_number(values[c], c, where) for c in ("x", "y", "width", "height"))
    for name, size in (("width", width), ("height", height)):
        if size <= 0:
            raise ValueError(
                f"{where}: {name} is {values[name]!r}; a box's width and height must be > 0"
            )
    return check_box((x, y, x + width, y + height), where)


class RsnaFolder(AnnotatedFolder):
    """RSNA as an :class:`AnnotatedFolder` whose samples say which images hold boxes.

    Only pneumonia images were annotated with boxes: a normal image's ``has_region`` is
    ``False`` (no region to supervise or to localize), a pneumonia image's ``True``. The
    dataset-level ``has_regions`` stays ``True`` (the data has regions).
    """

    def region_known(self, record: ImageRecord) -> bool:
        """Only pneumonia images (those with boxes) have a known region."""
        return bool(record.boxes)

    def __getitem__(self, index: int) -> Sample:
        sample = super().__getitem__(index)
        sample["has_region"] = self.region_known(self.records[index % len(self.records)])
        return sample


def _rsna_image(folder: Path, patient: str, where: str, root: Path) -> str:
    """The image of ``patient`` relative to ``root``: ``<patient>.dcm`` or ``<patient>.png`` in
    ``folder``; a patient id that is an absolute path or climbs with '..' is refused before
    any file is looked up (it would name a file outside the image folder)."""
    if Path(patient).anchor or ".." in Path(patient.replace("\\", "/")).parts:
        raise ValueError(
            f"{where}: patientId {patient!r} is a path, not a patient id; the image of a patient "
            f"is <patientId>.dcm or <patientId>.png in the image folder {folder}"
        )
    for suffix in (".dcm", ".png"):
        path = folder / f"{patient}{suffix}"
        if path.is_file():
            return path.relative_to(root).as_posix()
    raise FileNotFoundError(f"{where}: no image {patient}.dcm or {patient}.png in {folder}")


#: the classes of stage_2_detailed_class_info.csv; patients of the last are dropped (Sec. 4.A)
RSNA_DETAILED_CLASSES = ("Lung Opacity", "Normal", "No Lung Opacity / Not Normal")


def _rsna_excluded(path: Path) -> set[str]:
    """Patients of class ``No Lung Opacity / Not Normal`` in the detailed class info file.

    Every row must have its two fields and one of the three classes of the challenge: a class
    spelled otherwise would keep the patients the file is given to drop."""
    if not path.is_file():
        raise FileNotFoundError(f"RSNA detailed class info file {path} not found")
    excluded = set()

    def check_header(columns: list[str]) -> None:
        if not {"patientId", "class"} <= set(columns):
            raise ValueError(
                f"{path}: needs the columns patientId,class (found {', '.join(columns)})"
            )

    for where, row in _csv_rows(path, "RSNA detailed class info file", check_header):
        patient, kind = row["patientId"].strip(), row["class"].strip()
        if not patient:
            raise ValueError(f"{where}: empty patientId")
        if kind not in RSNA_DETAILED_CLASSES:
            raise ValueError(
                f"{where}: class is {kind!r}; accepted: "
                + ", ".join(repr(c) for c in RSNA_DETAILED_CLASSES)
            )
        if kind == RSNA_DETAILED_CLASSES[2]:
            excluded.add(patient)
    return excluded


def celeba(
    root: str | os.PathLike[str],
    attribute: str = "Smiling",
    split: str = "train",
    attr_file: str = "list_attr_celeba.txt",
    images_dir: str = "img_align_celeba",
    partition_file: str | None = None,
    split_fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    verify_images: bool = False,
    **options: Any,
) -> AnnotatedFolder:
    """CelebA as a binary task on one attribute (paper: ``Smiling``); no regions.

    Classes ``not_<attribute>`` and ``<attribute>`` (lower case), so the attribute is label 1.
    ``partition_file`` (``list_eval_partition.txt``: image and 0/1/2) selects the official
    split; otherwise the paper's random 70/10/20 % split is made. ``verify_images`` defaults to
    False here (202,599 images): file existence is still checked up front.
    """
    root_path, attr_path, images_dir, _ = _dataset_paths(
        root, attr_file, images_dir, "CelebA attribute file", "CelebA image folder"
    )
    lines = read_utf8(attr_path, "CelebA attribute file").splitlines()
    if len(lines) < 2:
        raise ValueError(f"{attr_path}: needs the image count and the attribute-name line")
    count = lines[0].strip()
    if not (count.isascii() and count.isdigit()):  # int() reads "8_0" as 80, "８" as 8
        raise ValueError(
            f"{attr_path} line 1: expected the number of images (ASCII digits), got {count!r}; "
            "the attribute file is CelebA's list_attr_celeba.txt: the image count, the "
            "attribute names, then one line per image of 1/-1 values, separated by spaces"
        )
    expected = int(count)
    names = lines[1].split()
    if attribute not in names:
        raise ValueError(
            f"unknown CelebA attribute {attribute!r}; {attr_path} has {', '.join(names)}"
        )
    partition = _celeba_partition(root_path / partition_file) if partition_file else None
    records = _celeba_records(lines, attr_path, images_dir, attribute, partition, partition_file)
    if len(records) != expected:
        raise ValueError(f"{attr_path}: line 1 announces {expected} images, found {len(records)}")
    return AnnotatedFolder.from_records(
        root_path,
        records,
        source=str(attr_path),
        has_regions=False,
        split=split,
        split_fractions=split_fractions,
        seed=seed,
        verify_images=verify_images,
        **options,
    )


def _celeba_records(
    lines: list[str],
    attr_path: Path,
    images_dir: str,
    attribute: str,
    partition: dict[str, str] | None,
    partition_file: str | None,
) -> list[ImageRecord]:
    """One record per image line of the attribute file (lines[2:])."""
    names = lines[1].split()
    if repeated := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"{attr_path} line 2: attribute(s) {', '.join(repeated)} named twice")
    column = names.index(attribute)
    negative, positive = f"not_{attribute.lower()}", attribute.lower()
    records = []
    seen: dict[str, str] = {}
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{attr_path} line {number}"
        if len(parts) != len(names) + 1:
            raise ValueError(
                f"{where}: expected an image name and {len(names)} values, got {len(parts)} fields"
            )
        value = parts[1 + column]
        if value not in ("1", "-1"):
            raise ValueError(f"{where}: {attribute} is {value!r}; accepted: 1 or -1")
        image = parts[0]
        if image in seen:  # one record per image, as annotations.csv requires
            raise ValueError(f"{where}: image {image} is listed again (first at {seen[image]})")
        seen[image] = f"line {number}"
        split_name = None
        if partition is not None:
            if image not in partition:
                raise ValueError(f"{where}: image {image} is missing from {partition_file}")
            split_name = partition[image]
        records.append(
            ImageRecord(
                image=(Path(images_dir) / image).as_posix(),
                label=positive if value == "1" else negative,
                split=split_name,
                source=where,
            )
        )
    return records


def _celeba_partition(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise FileNotFoundError(f"CelebA partition file {path} not found")
    partition = {}
    lines = read_utf8(path, "CelebA partition file").splitlines()
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise ValueError(f"{path} line {number}: expected '<image> 0|1|2', got {line!r}")
        if parts[0] in partition:
            raise ValueError(f"{path} line {number}: image {parts[0]} is listed again")
        partition[parts[0]] = ("train", "val", "test")[int(parts[1])]
    return partition


def imagenet_folder(
    root: str | os.PathLike[str],
    split: str = "train",
    verify_images: bool = False,
    **options: Any,
) -> AnnotatedFolder:
    """An ImageNet folder prepared as ``torchvision.datasets.ImageNet`` does.

    ``split`` ``train`` reads ``root/train``; ``val`` and ``test`` both read ``root/val`` (the
    labelled validation set, on which the paper evaluates; ImageNet's test labels are not
    public). The folder is listed as torchvision's ``ImageFolder`` (as ``ImageNet`` does).
    With ``meta.bin`` (written by ``torchvision.datasets.ImageNet``, read here with
    ``torch.load(weights_only=True)``) or the devkit archive ``ILSVRC2012_devkit_t12.tar.gz``
    (from which torchvision writes ``meta.bin``), ``dataset.class_descriptions`` holds the
    human-readable names; meta.bin must name every wnid folder. An extracted
    ``ILSVRC2012_devkit*`` folder without either is refused (torchvision reads the archive).
    Classes are the sorted wnids of the train folder (or of the requested folder when there is
    no train folder).
    """
    check_split(split)
    root_path = Path(root)
    folder_split = "train" if split == "train" else "val"
    if split == "test":
        logger.info("ImageNet has no labelled test split: split='test' reads the val folder")
    folder = root_path / folder_split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"ImageNet folder {folder} not found; expected root/train/<wnid>/*.JPEG and "
            "root/val/<wnid>/*.JPEG as prepared by torchvision.datasets.ImageNet"
        )
    train_folder = root_path / "train"
    # the train folder's wnids are the classes of every split: checked before any listing
    classes = _imagenet_classes(train_folder) if train_folder.is_dir() else None
    listing = _imagenet_listing(folder)
    wnids = list(listing.classes)
    classes = wnids if classes is None else classes
    descriptions = _imagenet_descriptions(root_path, wnids, folder)
    records = [
        ImageRecord(
            image=Path(path).relative_to(root_path).as_posix(),
            label=wnids[target],
            split=split,
            source=f"{folder} image {Path(path).name}",
        )
        for path, target in listing.samples
    ]
    if not records:
        raise ValueError(f"{folder}: no images")
    _refuse_classes_without_train_folder(root_path, folder, wnids, classes)
    dataset = AnnotatedFolder.from_records(
        root_path,
        records,
        source=str(folder),
        has_regions=False,
        split=split,
        classes=classes,
        verify_images=verify_images,
        **options,
    )
    dataset.class_descriptions = {w: descriptions.get(w, (w,)) for w in classes}  # type: ignore[attr-defined]
    return dataset


_LAYOUT = (
    "root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG, as torchvision.datasets.ImageNet "
    "prepares them"
)


def _imagenet_classes(train: Path) -> list[str]:
    """The sorted wnid folders of ``train``, each holding an image file (searched up to the
    first): torchvision's ImageFolder makes every folder a class, so a folder without images
    (``.ipynb_checkpoints``, an empty wnid) would shift or add class indices of the val split
    while the train split is refused."""
    folders = sorted(entry.name for entry in os.scandir(train) if entry.is_dir())
    empty = [name for name in folders if not _holds_an_image(train / name)]
    if empty:
        shown = ", ".join(f"{n}/" for n in empty[:5]) + (", ..." if len(empty) > 5 else "")
        raise ValueError(
            f"{train}: {len(empty)} folder(s) hold no image files ({shown}); every folder of "
            f"train/ is a class (as torchvision's ImageFolder lists them), so the class indices "
            f"would not be ImageNet's: remove them (expected {_LAYOUT})"
        )
    return folders


def _holds_an_image(folder: Path) -> bool:
    """Whether ``folder`` (or a subfolder) holds a file with one of torchvision's image
    extensions; stops at the first."""
    for _, _, files in os.walk(folder, followlinks=True):
        if any(name.lower().endswith(IMG_EXTENSIONS) for name in files):
            return True
    return False


def _imagenet_listing(folder: Path) -> Any:
    """torchvision's ``ImageFolder`` of ``folder``; its refusals (no class folder, a class
    folder without images) with the folder and the layout it expects."""
    try:
        return ImageFolder(str(folder))
    except FileNotFoundError as error:
        loose = [f for f in os.listdir(folder) if Path(f).suffix.lower() in (".jpeg", ".jpg")]
        if loose:
            raise FileNotFoundError(
                f"{folder} holds {len(loose)} image file(s) (e.g. {sorted(loose)[0]}) but no wnid "
                f"folders: the validation images as ILSVRC2012 ships them; sort them into "
                f"{folder}/<wnid>/ (torchvision.datasets.ImageNet(root, split='val') does it with "
                "the devkit archive)"
            ) from None
        raise FileNotFoundError(f"{folder}: {error} (expected {_LAYOUT})") from None


def _refuse_classes_without_train_folder(
    root: Path, folder: Path, wnids: list[str], classes: list[str]
) -> None:
    """ValueError naming the wnid folders of ``folder`` (val) that ``root/train`` lacks: the
    classes are the train folder's wnids, and a model has no output for another one."""
    known = set(classes)
    missing = [w for w in wnids if w not in known]
    if missing:
        shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
        raise ValueError(
            f"{folder / missing[0]}: class {missing[0]!r} has no {root / 'train' / missing[0]} "
            f"folder ({len(missing)} such wnid folder(s)); the classes are the {len(classes)} "
            f"wnids of {root / 'train'}: {shown}. Remove the folder from {folder.name}, or add "
            "its training images"
        )


_DEVKIT_ARCHIVE = "ILSVRC2012_devkit_t12.tar.gz"


def _imagenet_descriptions(
    root: Path, wnids: list[str], folder: Path
) -> dict[str, tuple[str, ...]]:
    """``{wnid: class names}`` from ``root/meta.bin`` (built from the devkit archive by
    torchvision if only the archive is there); ``{}`` when neither nor a devkit is present."""
    meta = root / "meta.bin"
    if not meta.is_file():
        devkit = sorted(p.name for p in root.glob("ILSVRC2012_devkit*"))
        if not devkit:
            return {}
        if _DEVKIT_ARCHIVE not in devkit:
            raise FileNotFoundError(
                f"{root} holds {', '.join(devkit)} but neither meta.bin nor {_DEVKIT_ARCHIVE}: "
                f"the class names are read from meta.bin, which torchvision.datasets.ImageNet "
                f"writes from the archive {_DEVKIT_ARCHIVE} (not from an extracted folder); put "
                "the archive (or a meta.bin) in the root, or remove the devkit to use the wnids "
                "as class names"
            )
        from torchvision.datasets.imagenet import parse_devkit_archive

        try:
            parse_devkit_archive(str(root))
        except Exception as error:  # md5 mismatch, broken tar, scipy missing
            raise ValueError(
                f"{root / _DEVKIT_ARCHIVE}: torchvision could not build meta.bin from it "
                f"({type(error).__name__}: {error}); expected the official ImageNet 2012 devkit"
            ) from None
    return _read_imagenet_meta(meta, wnids, folder)


def _read_imagenet_meta(meta: Path, wnids: list[str], folder: Path) -> dict[str, tuple[str, ...]]:
    """meta.bin read safely (``weights_only=True``) and checked to name every wnid."""
    import torch

    expected = (
        "expected the file torchvision.datasets.ImageNet writes: a pair (dict wnid -> tuple of "
        "class names, list of val wnids); delete it to use the wnids as class names"
    )
    try:
        content = torch.load(meta, weights_only=True, map_location="cpu")
    except Exception as error:  # not a torch file, or one holding arbitrary objects
        raise ValueError(
            f"{meta} cannot be read as an ImageNet meta file (torch.load with weights_only=True "
            f"raised {type(error).__name__}); {expected}"
        ) from None
    mapping = content[0] if isinstance(content, (tuple, list)) and len(content) == 2 else None
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str)
        and (
            isinstance(v, str)
            or (isinstance(v, (tuple, list)) and all(isinstance(c, str) for c in v))
        )
        for k, v in mapping.items()
    ):
        raise ValueError(f"{meta} holds a {type(content).__name__} of another form; {expected}")
    missing = [w for w in wnids if w not in mapping]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ValueError(
            f"{meta} has no class names for {len(missing)} wnid folder(s) of {folder}: {shown} "
            f"(it names {len(mapping)} wnids); rebuild it from {_DEVKIT_ARCHIVE} (delete it and "
            "put the archive in the root) or delete it to use the wnids as class names"
        )
    return {w: (mapping[w],) if isinstance(mapping[w], str) else tuple(mapping[w]) for w in wnids}
