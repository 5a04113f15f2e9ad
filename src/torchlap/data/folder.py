"""User datasets: the annotated folder format, plain ImageFolder layouts, image/mask readers.

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

Boxes outside the image are **rejected** (never clipped): every coordinate must lie in
``[0, width] x [0, height]`` of the image file, otherwise loading fails naming the file and
line. Every problem is reported before anything is loaded: a dataset either loads whole or
raises.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from torchlap.data._base import (
    SPLITS,
    RegionDataset,
    Sample,
    apply_transform,
    boxes_to_mask,
    check_split,
    check_split_fractions,
    make_sample,
    split_counts,
)
from torchlap.data.transforms import default_normalization, default_transforms, size_pair
from torchlap.io import atomic_write

logger = logging.getLogger(__name__)

ANNOTATIONS = "annotations.csv"
BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")
REQUIRED_COLUMNS = ("image", "label")
OPTIONAL_COLUMNS = ("split", *BOX_COLUMNS, "mask")
DICOM_SUFFIXES = (".dcm", ".dicom")
_GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}


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


# --------------------------------------------------------------------------------------------
# reading images, DICOM and masks
# --------------------------------------------------------------------------------------------


def _is_dicom(path: Path) -> bool:
    return path.suffix.lower() in DICOM_SUFFIXES


def _import_pydicom() -> Any:
    try:
        import pydicom
    except ImportError as error:  # optional extra
        raise ImportError(
            "reading DICOM images needs pydicom: pip install 'torchlap[dicom]' (or pydicom)"
        ) from error
    return pydicom


def image_header(path: Path) -> tuple[int, int, int]:
    """(width, height, channels) of an image or DICOM file without decoding its pixels.

    Raises ValueError if the file is not a readable image.
    """
    if _is_dicom(path):
        pydicom = _import_pydicom()
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            return int(header.Columns), int(header.Rows), int(getattr(header, "SamplesPerPixel", 1))
        except Exception as error:  # pydicom raises many types for broken files
            raise ValueError(f"not a readable DICOM file: {error}") from error
    try:
        with Image.open(path) as image:
            width, height = image.size
            return width, height, 1 if image.mode in _GRAY_MODES else 3
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"not a readable image: {error}") from error


def _array_to_unit(array: np.ndarray, mode: str) -> np.ndarray:
    """Pixel array -> float32 in [0, 1] by the value range its mode implies."""
    if mode.startswith("I;16") or array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if mode == "I":
        return np.clip(array.astype(np.float32), 0, 65535) / 65535.0
    if mode == "F":
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    if array.dtype == bool:
        return array.astype(np.float32)
    return array.astype(np.float32) / 255.0


def read_image(path: Path, channels: int) -> Tensor:
    """Decode an image (PIL) or DICOM (pydicom) to a float32 (channels, H, W) tensor in [0, 1].

    Grayscale 8/16-bit images are scaled by their bit depth; RGB is converted to one channel
    by PIL's luma transform when ``channels == 1``; grayscale is repeated for ``channels == 3``.
    """
    if _is_dicom(path):
        array = _read_dicom(path)
    else:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("1", "LA"):
                image = image.convert("L")
                mode = "L"
            elif mode not in _GRAY_MODES:
                image = image.convert("RGB")
                mode = "RGB"
            array = _array_to_unit(np.asarray(image), mode)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    if tensor.shape[0] == channels:
        return tensor.contiguous()
    if channels == 3:
        return tensor.expand(3, -1, -1).contiguous()
    # RGB -> luma with ITU-R 601-2 weights, as PIL's convert("L")
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=tensor.dtype)[:, None, None]
    return (tensor[:3] * weights).sum(dim=0, keepdim=True)


def _read_dicom(path: Path) -> np.ndarray:
    """DICOM pixels scaled to [0, 1] by BitsStored; MONOCHROME1 is inverted."""
    pydicom = _import_pydicom()
    dataset = pydicom.dcmread(path)
    array = dataset.pixel_array.astype(np.float32)
    bits = int(getattr(dataset, "BitsStored", 8))
    if int(getattr(dataset, "PixelRepresentation", 0)) == 1:  # signed: shift to unsigned
        array = array + float(2 ** (bits - 1))
    array = np.clip(array / float(2**bits - 1), 0.0, 1.0)
    if str(getattr(dataset, "PhotometricInterpretation", "")) == "MONOCHROME1":
        array = 1.0 - array
    return array


def load_image(
    path: str | os.PathLike[str], channels: int, image_size: int | None = None
) -> Tensor:
    """The one image decoder of torchlap: :func:`read_image` (bit-depth scaling, DICOM) then,
    with ``image_size``, the evaluation resize of :func:`default_transforms` (bilinear,
    antialiased). Data loading and ``torchlap explain`` both read images through it.

    Raises FileNotFoundError for a missing file, ValueError naming the file when it cannot be
    decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} not found")
    try:
        image = read_image(path, channels)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable image: {error}") from None
    if image_size is None:
        return image
    from torchvision.transforms.v2.functional import resize

    return resize(image, list(size_pair(image_size)), antialias=True)


def read_mask(path: Path) -> Tensor:
    """A mask PNG as a (H, W) uint8 tensor with 1 where the file is nonzero."""
    with Image.open(path) as image:
        array = np.asarray(image)
    if array.ndim == 3:
        array = array.any(axis=-1)
    return torch.from_numpy(np.ascontiguousarray(array != 0)).to(torch.uint8)


# --------------------------------------------------------------------------------------------
# the CSV
# --------------------------------------------------------------------------------------------


def _parse_float(value: str, column: str, where: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{where}: {column} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: {column} is {value!r}; box coordinates must be finite")
    return number


def check_box(box: Sequence[float], where: str) -> tuple[float, float, float, float]:
    """Validate one XYXY box: finite and ``x_min < x_max``, ``y_min < y_max``."""
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x_min, y_min, x_max, y_max)):
        raise ValueError(f"{where}: box {list(box)} has a non-finite coordinate")
    if x_min >= x_max:
        raise ValueError(f"{where}: box has x_min={x_min:g} >= x_max={x_max:g}; need x_min < x_max")
    if y_min >= y_max:
        raise ValueError(f"{where}: box has y_min={y_min:g} >= y_max={y_max:g}; need y_min < y_max")
    return x_min, y_min, x_max, y_max


def read_annotations(csv_path: Path) -> tuple[list[ImageRecord], bool, bool]:
    """Parse and validate an ``annotations.csv``; group rows by image.

    Returns ``(records in order of first appearance, has_split_column, has_region_columns)``.
    Raises FileNotFoundError if the file is missing, ValueError naming the file and line for
    any malformed row.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{csv_path} not found: an annotated dataset folder needs an {ANNOTATIONS} with "
            f"columns {', '.join(REQUIRED_COLUMNS)} and optionally {', '.join(OPTIONAL_COLUMNS)}"
        )
    name = str(csv_path)
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, skipinitialspace=True)
        if reader.fieldnames is None:
            raise ValueError(f"{name} is empty: the first line must be the header")
        columns = [c.strip() for c in reader.fieldnames]
        reader.fieldnames = columns
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
        has_split = "split" in columns
        has_boxes = bool(present_boxes)
        has_mask = "mask" in columns
        records: dict[str, ImageRecord] = {}
        for row in reader:
            where = f"{name} line {reader.line_num}"
            if None in row:
                raise ValueError(f"{where}: more fields than the {len(columns)} header columns")
            values = {k: (v or "").strip() for k, v in row.items()}
            image = values["image"]
            if not image:
                raise ValueError(f"{where}: empty image path")
            if os.path.isabs(image):
                raise ValueError(
                    f"{where}: image path {image!r} is absolute; paths are relative to the folder"
                )
            image = Path(image).as_posix()
            label = values["label"]
            if not label:
                raise ValueError(f"{where}: empty label for image {image!r}")
            split = None
            if has_split:
                split = values["split"]
                if split not in SPLITS:
                    raise ValueError(
                        f"{where}: unknown split value {split!r}; accepted: {', '.join(SPLITS)}"
                    )
            box = None
            if has_boxes:
                fields = [values[c] for c in BOX_COLUMNS]
                if any(fields) and not all(fields):
                    raise ValueError(
                        f"{where}: box fields must be all filled or all empty, got "
                        + ", ".join(f"{c}={v!r}" for c, v in zip(BOX_COLUMNS, fields, strict=True))
                    )
                if all(fields):
                    numbers = [
                        _parse_float(v, c, where) for c, v in zip(BOX_COLUMNS, fields, strict=True)
                    ]
                    box = check_box(numbers, where)
            mask = (values["mask"] or None) if has_mask else None
            if mask is not None:
                if os.path.isabs(mask):
                    raise ValueError(f"{where}: mask path {mask!r} is absolute; use a relative one")
                mask = Path(mask).as_posix()
            record = records.get(image)
            if record is None:
                record = records[image] = ImageRecord(image, label, split, mask=mask, source=where)
            else:
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
                record.mask = record.mask or mask
            if box is not None:
                record.boxes.append(box)
                record.box_sources.append(where)
    if not records:
        raise ValueError(f"{name} has a header but no rows")
    return list(records.values()), has_split, has_boxes or has_mask


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_annotations(path: Path, records: Iterable[ImageRecord]) -> None:
    """Write records as an ``annotations.csv`` (one row per box), atomically."""
    path = Path(path)
    header = ["image", "label", "split", *BOX_COLUMNS, "mask"]
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    for record in records:
        tail = [record.mask or ""]
        head = [record.image, record.label, record.split or ""]
        if not record.boxes:
            writer.writerow([*head, "", "", "", "", *tail])
        for box in record.boxes:
            writer.writerow([*head, *(_format_number(v) for v in box), *tail])
    atomic_write(path, text.getvalue())  # the usual file mode, fsync, temp cleaned on error


# --------------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------------


def seeded_split(
    records: Sequence[ImageRecord], fractions: Sequence[float], seed: int
) -> dict[str, str]:
    """Assign each image to train/val/test, stratified by label, reproducibly from ``seed``.

    Per class (in sorted order), images sorted by path are shuffled by a torch.Generator
    seeded with ``seed`` and cut by ``split_counts``; every class with at least one image
    gets at least one training image. Returns ``{image path: split}``.
    """
    fractions = check_split_fractions(fractions)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    by_label: dict[str, list[str]] = {}
    for record in records:
        by_label.setdefault(record.label, []).append(record.image)
    assignment: dict[str, str] = {}
    for label in sorted(by_label):
        images = sorted(by_label[label])
        order = torch.randperm(len(images), generator=generator).tolist()
        n_train, n_val, _ = split_counts(len(images), fractions)
        if n_train == 0:  # tiny class: take its training image from val (or else test)
            n_train, n_val = 1, max(0, n_val - 1)
        for position, k in enumerate(order):
            split = (
                "train" if position < n_train else "val" if position < n_train + n_val else "test"
            )
            assignment[images[k]] = split
    return assignment


class AnnotatedFolder(RegionDataset):
    """A dataset in the annotated folder format (see the module docstring).

    Args:
        root: the folder holding ``annotations.csv`` and the images.
        split: ``train``, ``val`` or ``test``.
        transform: a ``transforms.v2`` transform applied to the whole sample dict (boxes and
            masks follow it). Default: ``default_transforms(image_size, n_channels,
            train=augment and split == "train")``.
        image_size: resize to this size (int or (H, W)); None keeps the native size.
        channels: 1 or 3; None infers it (1 if every image is grayscale, else 3).
        split_fractions, seed: the seeded split used when the CSV has no ``split`` column.
        mean, std: normalization statistics to record with a model; default
            ``default_normalization(n_channels)``.
        verify_images: open every image's (and mask's) header up front to check that it is
            readable and that boxes and masks fit (about 0.1 ms per image). With False only
            the files' existence is checked and the rest happens when a sample is loaded.
        augment: use the default training augmentation on the train split.
        n_images: keep only the first ``n_images`` images of the split.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Sample], Sample] | None = None,
        image_size: int | Sequence[int] | None = None,
        channels: int | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        verify_images: bool = True,
        augment: bool = False,
        n_images: int | None = None,
    ) -> None:
        root_path = Path(root)
        if not root_path.is_dir():
            raise FileNotFoundError(f"dataset folder {root_path} does not exist")
        records, has_split, has_regions = read_annotations(root_path / ANNOTATIONS)
        self._setup(
            root_path,
            records,
            source=str(root_path / ANNOTATIONS),
            has_regions=has_regions,
            split_given=has_split,
            split=split,
            transform=transform,
            image_size=image_size,
            channels=channels,
            split_fractions=split_fractions,
            seed=seed,
            mean=mean,
            std=std,
            verify_images=verify_images,
            augment=augment,
            n_images=n_images,
            classes=None,
        )

    @classmethod
    def from_records(
        cls,
        root: str | os.PathLike[str],
        records: Sequence[ImageRecord],
        *,
        source: str,
        has_regions: bool,
        split: str = "train",
        classes: Sequence[str] | None = None,
        **options: Any,
    ) -> AnnotatedFolder:
        """Build the dataset from records made by an importer (RSNA, CelebA, ImageFolder...).

        Records without a split get the seeded split. ``classes`` fixes the class list (e.g.
        all ImageNet classes while records list only one split); otherwise it is the sorted
        set of labels and every class must have training images.
        """
        dataset = cls.__new__(cls)
        split_given = bool(records) and all(r.split is not None for r in records)
        if not split_given and any(r.split is not None for r in records):
            raise ValueError(f"{source}: either every image has a split or none has one")
        dataset._setup(
            Path(root),
            list(records),
            source=source,
            has_regions=has_regions,
            split_given=split_given,
            split=split,
            classes=classes,
            **options,
        )
        return dataset

    # ---------------------------------------------------------------------------------------

    def _setup(
        self,
        root: Path,
        records: list[ImageRecord],
        *,
        source: str,
        has_regions: bool,
        split_given: bool,
        split: str,
        classes: Sequence[str] | None,
        transform: Callable[[Sample], Sample] | None = None,
        image_size: int | Sequence[int] | None = None,
        channels: int | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        verify_images: bool = True,
        augment: bool = False,
        n_images: int | None = None,
    ) -> None:
        self.split = check_split(split)
        self.root = root
        self.source = source
        self.has_regions = bool(has_regions)
        if not records:
            raise ValueError(f"{source}: no images")
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None (infer), got {channels!r}")
        if n_images is not None and (isinstance(n_images, bool) or int(n_images) < 1):
            raise ValueError(f"n_images must be a positive integer or None, got {n_images!r}")

        # 1. splits
        self.split_given = split_given
        if split_given:
            self.split_assignment = {r.image: r.split for r in records}  # type: ignore[misc]
            self.split_seed = None
        else:
            self.split_assignment = seeded_split(records, split_fractions, seed)
            self.split_seed = seed
            records = [replace(r, split=self.split_assignment[r.image]) for r in records]
        self.records_all = records

        # 2. classes: sorted names; every class needs training images
        labels = sorted({r.label for r in records})
        if classes is None:
            in_train = {r.label for r in records if r.split == "train"}
            for label in labels:
                if label not in in_train:
                    first = next(r for r in records if r.label == label)
                    where = sorted({r.split for r in records if r.label == label})
                    raise ValueError(
                        f"{first.source}: label {label!r} appears only in the "
                        f"{' and '.join(where)} split(s), never in train; a model cannot "
                        "learn a class it never sees (add training images or drop the label)"
                    )
            self.classes = labels
        else:
            self.classes = list(classes)
            unknown = [label for label in labels if label not in set(self.classes)]
            if unknown:
                first = next(r for r in records if r.label == unknown[0])
                raise ValueError(f"{first.source}: unknown label {unknown[0]!r}")
        self.class_to_index = {name: i for i, name in enumerate(self.classes)}

        # 3. files: existence for all, headers when verifying; boxes and masks must fit
        self._sizes: dict[str, tuple[int, int]] = {}
        modes_gray = True
        for k, record in enumerate(records):
            path = root / record.image
            if not path.is_file():
                raise FileNotFoundError(f"{record.source}: image file {path} not found")
            if record.mask is not None and not (root / record.mask).is_file():
                raise FileNotFoundError(
                    f"{record.source}: mask file {root / record.mask} not found"
                )
            if verify_images or (channels is None and k == 0):
                width, height, n = self._header(path, record)
                modes_gray = modes_gray and n == 1
                if verify_images:
                    self._check_fits(record, width, height)
        self.verified = bool(verify_images)
        self.n_channels = channels if channels is not None else (1 if modes_gray else 3)

        # 4. this split
        self.records = [r for r in records if r.split == self.split]
        if n_images is not None:
            self.records = self.records[: int(n_images)]
        if not self.records:
            raise ValueError(f"{source}: the {self.split!r} split has no images")

        # 5. size, transform, normalization
        if image_size is not None:
            self.image_size = size_pair(image_size)
        else:
            native = {self._sizes.get(r.image) for r in self.records}
            self.image_size = (
                (next(iter(native))[1], next(iter(native))[0])
                if len(native) == 1 and None not in native
                else None
            )
        if transform is None:
            train = augment and self.split == "train"
            if train and image_size is None:
                raise ValueError("augment=True needs an image_size")
            transform = default_transforms(image_size, self.n_channels, train)
        self.transform = transform
        default_mean, default_std = default_normalization(self.n_channels)
        self._mean = tuple(float(m) for m in (mean if mean is not None else default_mean))
        self._std = tuple(float(s) for s in (std if std is not None else default_std))
        if len(self._mean) != self.n_channels or len(self._std) != self.n_channels:
            raise ValueError(
                f"mean and std need {self.n_channels} value(s), got {self._mean}, {self._std}"
            )
        if any(s <= 0 for s in self._std):
            raise ValueError(f"std values must be positive, got {self._std}")

    def _header(self, path: Path, record: ImageRecord) -> tuple[int, int, int]:
        try:
            width, height, n = image_header(path)
        except ValueError as error:
            raise ValueError(f"{record.source}: image file {path} is unreadable: {error}") from None
        self._sizes[record.image] = (width, height)
        return width, height, n

    def _check_fits(self, record: ImageRecord, width: int, height: int) -> None:
        """Boxes inside the image (rejected otherwise, never clipped); mask of the same size."""
        for box, where in zip(record.boxes, record.box_sources, strict=True):
            x_min, y_min, x_max, y_max = box
            if x_min < 0 or y_min < 0 or x_max > width or y_max > height:
                raise ValueError(
                    f"{where}: box ({x_min:g}, {y_min:g}, {x_max:g}, {y_max:g}) lies outside "
                    f"image {record.image} of width {width} and height {height}; boxes outside "
                    "the image are rejected, not clipped: coordinates must satisfy "
                    f"0 <= x <= {width} and 0 <= y <= {height}"
                )
        if record.mask is not None:
            mask_path = self.root / record.mask
            try:
                mask_width, mask_height, _ = image_header(mask_path)
            except ValueError as error:
                raise ValueError(
                    f"{record.source}: mask file {mask_path} is unreadable: {error}"
                ) from None
            if (mask_width, mask_height) != (width, height):
                raise ValueError(
                    f"{record.source}: mask {record.mask} is {mask_width}x{mask_height} but image "
                    f"{record.image} is {width}x{height} (width x height); they must match"
                )

    # ---------------------------------------------------------------------------------------

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel normalization mean recorded with a model."""
        return self._mean

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel normalization standard deviation recorded with a model."""
        return self._std

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self.records) <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} images")
        index = index % len(self.records)
        record = self.records[index]
        path = self.root / record.image
        try:
            image = read_image(path, self.n_channels)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise ValueError(f"{record.source}: image file {path} is unreadable: {error}") from None
        height, width = image.shape[-2:]
        if not self.verified:
            self._check_fits(record, width, height)
        boxes = torch.tensor(record.boxes, dtype=torch.float32).reshape(-1, 4)
        if record.mask is not None:
            mask = read_mask(self.root / record.mask)
        else:
            mask = boxes_to_mask(boxes, height, width)
        sample = make_sample(
            image=image,
            label=self.class_to_index[record.label],
            boxes=boxes,
            mask=mask,
            has_region=self.has_regions,
            index=index,
        )
        return apply_transform(sample, self.transform)

    def metadata(self) -> dict[str, Any]:
        """Classes, channels, size, normalization and where the data and its split came from."""
        out = super().metadata()
        out.update(dataset=str(self.root), split_seed=self.split_seed)
        return out

    def save_annotations(self, path: str | os.PathLike[str]) -> None:
        """Write all images with their (given or seeded) split as an annotations.csv."""
        write_annotations(Path(path), self.records_all)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"len={len(self)}, classes={len(self.classes)})"
        )


def image_folder(
    root: str | os.PathLike[str], split: str = "train", **options: Any
) -> AnnotatedFolder:
    """A plain ImageFolder layout (class subfolders, no regions) as an ``AnnotatedFolder``.

    Two layouts: ``root/<class>/<image>`` (a seeded split is made), or
    ``root/{train,val,test}/<class>/<image>`` (the split folders; ``train`` must exist).
    Files are listed with torchvision's ``make_dataset`` (its image extensions).
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    root_path = Path(root)
    if not root_path.is_dir():
        raise FileNotFoundError(f"dataset folder {root_path} does not exist")
    layout = [n for n in ("images", "masks", "dataset.json") if (root_path / n).exists()]
    if "images" in layout and len(layout) > 1:
        # torchlap's annotated layout (data export) without its CSV: read as an ImageFolder it
        # would have the classes "images" and "masks" and train to a meaningless 100 %
        raise FileNotFoundError(
            f"{root_path} looks like an annotated dataset folder ({', '.join(layout)}) but has "
            f"no {ANNOTATIONS}; restore it (columns {', '.join(REQUIRED_COLUMNS)}, optionally "
            f"{', '.join(OPTIONAL_COLUMNS)}) and run `torchlap data check {root_path}`"
        )
    try:
        next(iter(root_path.iterdir()), None)
    except PermissionError as error:
        raise PermissionError(f"dataset folder {root_path} is not readable: {error}") from None
    split_dirs = [s for s in SPLITS if (root_path / s).is_dir()]
    records: list[ImageRecord] = []
    if split_dirs:
        if "train" not in split_dirs:
            raise ValueError(
                f"{root_path} has split folder(s) {split_dirs} but no train folder; use "
                "root/train/<class>/..., root/val/<class>/..., root/test/<class>/..."
            )
        folders = [(root_path / s, s) for s in split_dirs]
    else:
        folders = [(root_path, None)]
    for folder, split_name in folders:
        try:
            folder_classes, class_to_idx = find_classes(str(folder))
        except FileNotFoundError as error:
            raise ValueError(f"{folder}: no class subfolders ({error})") from None
        samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
        for file, target in samples:
            relative = Path(file).relative_to(root_path).as_posix()
            records.append(
                ImageRecord(
                    image=relative,
                    label=folder_classes[target],
                    split=split_name,
                    source=f"{root_path} image {relative}",
                )
            )
    return AnnotatedFolder.from_records(
        root_path, records, source=str(root_path), has_regions=False, split=split, **options
    )
