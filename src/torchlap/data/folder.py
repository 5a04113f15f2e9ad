"""User datasets: the annotated folder format as a dataset; ``annotations.csv`` is read and
written by :mod:`torchlap.data.annotations`, the images by :mod:`torchlap.data.images` (the one
decoder), plain ImageFolder layouts become such datasets in :mod:`torchlap.data.plain_folder`."""

from __future__ import annotations

import copy
import errno
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from PIL import UnidentifiedImageError

from torchlap._checks import check_bool
from torchlap.data._base import (
    NO_PIXEL,
    RegionDataset,
    Sample,
    apply_transform,
    box_covers_a_pixel,
    boxes_to_mask,
    check_folder_options,
    check_split,
    make_sample,
)
from torchlap.data._subsets import check_cut_keeps_classes, seeded_split, split_records
from torchlap.data.annotations import (
    ANNOTATIONS,
    ImageRecord,
    check_records,
    read_annotations,
    write_annotations,
)
from torchlap.data.images import (
    image_header,
    not_a_file,
    read_image_with_orientation,
    read_mask,
    said_unreadable,
)
from torchlap.data.transforms import default_normalization, default_transforms, size_pair
from torchlap.io import fitting_path

__all__ = ["AnnotatedFolder", "seeded_split"]

logger = logging.getLogger(__name__)


class AnnotatedFolder(RegionDataset):
    """A dataset in the annotated folder format (see the module docstring).

    Args:
        root: the folder holding ``annotations.csv`` and the images.
        split: ``train``, ``val`` or ``test``.
        transform: a callable (e.g. a ``transforms.v2`` transform) applied to the whole sample
            dict (boxes and masks follow it), or None: ``default_transforms(image_size,
            n_channels, train=augment and split == "train")``.
        image_size: resize to this size (int or (H, W), at most 8192 per side); None keeps the
            native size. Not used with a ``transform`` of your own, which decides the size:
            the dataset's ``image_size`` is then None.
        channels: 1 or 3; None infers it from the image headers: 1 if every image is
            grayscale, else 3 (without ``verify_images`` the headers are read up to the first
            colour image, about 0.06 ms each: an all-grayscale dataset has all of them read).
        split_fractions, seed: the seeded split (``seed`` an int) used when the CSV has no
            ``split`` column.
        mean, std: normalization statistics to record with a model; default
            ``default_normalization(n_channels)``.
        verify_images: open every image's (and mask's) header up front to check that it is
            readable and that boxes and masks fit (about 0.1 ms per image), and decode the
            masks of this split's images with boxes (after the ``n_images`` cut) to refuse an
            empty one (0.2-0.6 ms per 256-512 px mask, 5-18 ms at 1-2k px). With False only
            the files' existence is checked and the rest happens when a sample is loaded.
            True or False.
        augment: use the default training augmentation on the train split (True or False).
        n_images: None (all) or an int >= 1: keep at most ``n_images`` images of the split,
            a class-stratified cut seeded by ``seed`` (see :func:`stratified_cut`; the same
            images for the same seed, whatever the CSV's row order). A cut training split
            that would lose a class is refused (ValueError).

    Images are read as stored: an EXIF orientation tag is not applied (as torchvision does
    not), so boxes and masks are in stored-pixel coordinates; a warning, once per dataset,
    names the first image with an orientation other than 1. A sample whose annotated region has
    no pixel left after the transform (a small region at a small ``image_size``) is said by a
    warning, once per dataset, naming the image and the size.
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
        options = dict(
            transform=transform, image_size=image_size, channels=channels,
            split_fractions=split_fractions, seed=seed, mean=mean, std=std,
            verify_images=verify_images, augment=augment, n_images=n_images,
        )  # fmt: skip
        check_folder_options(split=split, **options)  # before the CSV is read
        records, has_split, has_regions = read_annotations(root_path / ANNOTATIONS)
        self._setup(
            root_path,
            records,
            source=str(root_path / ANNOTATIONS),
            has_regions=has_regions,
            split_given=has_split,
            split=split,
            classes=None,
            **options,
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
        set of labels and every class must have training images. Every record goes through the
        checks annotations.csv's rows get (:func:`check_records`: finite boxes of four numbers,
        a non-empty label, ..., one record per image), ValueError naming it otherwise.
        """
        check_folder_options(split=split, **options)  # the options of every path reach it
        dataset = cls.__new__(cls)
        for record in records:  # box_sources that do not pair with the boxes: refused first
            record.named_boxes()
        check_records(records, source)  # as annotations.csv refuses: a NaN box, an empty label
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
        # the options were checked (check_folder_options) by __init__ or from_records
        self.root = root
        self.source = source
        self.has_regions = bool(has_regions)
        if not records:
            raise ValueError(f"{source}: no images")
        self._orientation_warned = False
        self._region_loss_warned = False
        self.split_given = split_given
        self.records_all = records = self._assign_splits(records, split_fractions, seed)
        self.classes = self._classes(records, classes)
        self.class_to_index = {name: i for i, name in enumerate(self.classes)}
        self._cut = (n_images, seed, image_size, transform, augment)  # (what a split depends on)
        self._select(split)
        self.n_channels = self._check_files(records, channels, verify_images)
        self._set_size_and_transform(image_size, transform, augment)
        self._set_normalization(mean, std)

    def _select(self, split: str) -> None:
        """``self.records``: the images of ``split``, cut to ``n_images``; refused when none."""
        n_images, seed = self._cut[:2]
        self.split = split
        self.records = split_records(self.records_all, split, n_images, seed)
        if not self.records:
            raise ValueError(f"{self.source}: the {split!r} split has no images")
        if split == "train" and n_images is not None:
            in_split = split_records(self.records_all, split, None, seed)
            check_cut_keeps_classes(in_split, self.records, n_images, self.source)

    def with_split(self, split: str) -> AnnotatedFolder:
        """The ``split`` split (``train``, ``val`` or ``test``) of the same data with the same
        options, as loading it anew would give, from what this dataset read: ``annotations.csv``
        is not parsed again and no image header is opened again (with ``verify_images``, the
        masks of that split's images with boxes are decoded, once each, to refuse an empty
        one). Refused (ValueError) as loading it: an empty split, a cut training split that
        loses a class."""
        check_split(split)
        view = copy.copy(self)
        view._select(split)
        if view.verified:  # the headers were read (and checked) for every image already
            for record in view.records:
                if record.mask is not None and record.boxes:
                    view._check_mask_not_empty(record, view._read_mask(record))
        view._set_size_and_transform(*view._cut[2:])
        return view

    def _assign_splits(
        self, records: list[ImageRecord], fractions: Sequence[float], seed: int
    ) -> list[ImageRecord]:
        """The records with their split: the given one, or the seeded split."""
        if self.split_given:
            self.split_assignment = {r.image: r.split for r in records}  # type: ignore[misc]
            self.split_seed = None
            return records
        self.split_assignment = seeded_split(records, fractions, seed)
        self.split_seed = seed
        return [replace(r, split=self.split_assignment[r.image]) for r in records]

    @staticmethod
    def _classes(records: list[ImageRecord], classes: Sequence[str] | None) -> list[str]:
        """Sorted label names (every one needs training images), or the given class list."""
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
            return labels
        known = set(classes)
        unknown = [label for label in labels if label not in known]
        if unknown:
            first = next(r for r in records if r.label == unknown[0])
            shown = ", ".join(list(classes)[:10]) + (", ..." if len(classes) > 10 else "")
            raise ValueError(
                f"{first.source}: unknown label {unknown[0]!r}; the {len(classes)} known "
                f"classes are {shown}"
            )
        return list(classes)

    def _check_files(
        self, records: list[ImageRecord], channels: int | None, verify_images: bool
    ) -> int:
        """Every image and mask exists; with ``verify_images`` their headers are read and
        boxes and masks must fit. Returns the number of channels (inferred when None)."""
        self._sizes: dict[str, tuple[int, int]] = {}
        kept = {r.image for r in self.records}
        modes_gray = True
        rotated: list[tuple[Path, int]] = []
        for record in records:
            # paths inside the folder: checked as annotations.csv was read, or, for the records
            # of importers (RSNA's patient ids, CelebA's names), by from_records' check_records
            path = self.root / record.image
            mask = record.mask and self.root / record.mask
            for kind, file in (("image", path), ("mask", mask)):
                if file and not _is_file(file, kind, record):
                    why = not_a_file(file)
                    raise FileNotFoundError(f"{record.source}: {kind} file {file} {why}")
            # inferred channels: 1 only if every header is grayscale, so without verification
            # headers are read until the first colour image (one gray image decides nothing);
            # an unreadable one is then left to fail when its sample loads, as verification is off
            if verify_images or (channels is None and modes_gray):
                try:
                    width, height, n, orientation = self._header(path, record)
                except ValueError:
                    if verify_images:
                        raise
                    continue
                modes_gray = modes_gray and n == 1
                if orientation != 1:
                    rotated.append((path, orientation))
                if verify_images:  # masks decoded for this split's images only (once each)
                    decode = record.image in kept
                    self._check_fits(record, width, height, decode, orientation)
        self.verified = bool(verify_images)
        if rotated:
            self._warn_orientation(*rotated[0], count=len(rotated))
        return channels if channels is not None else (1 if modes_gray else 3)

    def _warn_orientation(self, path: Path, orientation: int, count: int = 1) -> None:
        """Say once per dataset that EXIF orientation tags are not applied."""
        if getattr(self, "_orientation_warned", False):
            return
        self._orientation_warned = True
        counted = f"{count} image(s) have an EXIF orientation other than 1, " if count > 1 else ""
        logger.warning(
            "%s has EXIF orientation %d (%sa viewer shows it rotated or flipped): torchlap "
            "reads the stored pixels, as torchvision does, so boxes and masks must be in "
            "stored-pixel coordinates, not in those of the image a viewer shows (said once "
            "per dataset)",
            path,
            orientation,
            counted,
        )

    def _set_size_and_transform(
        self,
        image_size: int | Sequence[int] | None,
        transform: Callable[[Sample], Sample] | None,
        augment: bool,
    ) -> None:
        """``image_size`` (None: the split's native size if all images share it) and the
        transform (default: :func:`default_transforms`). With a transform of the user's, the
        transform decides the size of the samples, which the dataset does not know: its
        ``image_size`` (and ``metadata()["image_size"]``) is None, whatever was passed."""
        if transform is not None:
            self.image_size = None
        elif image_size is not None:
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

    def _set_normalization(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        default_mean, default_std = default_normalization(self.n_channels)
        self._mean = tuple(float(m) for m in (mean if mean is not None else default_mean))
        self._std = tuple(float(s) for s in (std if std is not None else default_std))
        if len(self._mean) != self.n_channels or len(self._std) != self.n_channels:
            raise ValueError(
                f"mean and std need {self.n_channels} value(s), got {self._mean}, {self._std}"
            )
        if not all(math.isfinite(m) for m in self._mean) or not all(
            math.isfinite(s) and s > 0 for s in self._std
        ):  # NaN compares False both ways: checked as "finite" first
            raise ValueError(
                f"mean must be finite and std finite and positive, got {self._mean}, {self._std}"
            )

    def _header(self, path: Path, record: ImageRecord) -> tuple[int, int, int, int]:
        """(width, height, channels, EXIF orientation) of an image, its size recorded."""
        try:
            header = image_header(path)
        except ValueError as error:
            why = said_unreadable(error)
            raise ValueError(f"{record.source}: image file {path} {why}") from None
        self._sizes[record.image] = (header.width, header.height)
        return header.width, header.height, header.channels, header.orientation

    def _check_fits(
        self,
        record: ImageRecord,
        width: int,
        height: int,
        decode_mask: bool = False,
        orientation: int = 1,
    ) -> None:
        """Boxes inside the image (never clipped) holding a pixel; mask of the same size and,
        with ``decode_mask``, not empty when the image has boxes. A box holds a pixel as a
        sample holds it, in float32 (``3.50000001`` is 3.5 there). A box outside an image of
        EXIF ``orientation`` other than 1 is refused saying that boxes are in stored pixels."""
        stored = _box_tensor(record).tolist()
        for (box, where), kept in zip(record.named_boxes(), stored, strict=True):
            x_min, y_min, x_max, y_max = box
            if x_min < 0 or y_min < 0 or x_max > width or y_max > height:
                raise ValueError(
                    f"{where}: box ({x_min:g}, {y_min:g}, {x_max:g}, {y_max:g}) lies outside image "
                    f"{record.image} of width {width} and height {height}; boxes outside the "
                    f"image are rejected, not clipped: 0 <= x <= {width} and 0 <= y <= {height}"
                    + _rotated_hint(record, width, height, orientation)
                )
            if record.mask is None and not box_covers_a_pixel(kept):
                rounded = (
                    f" is {tuple(kept)} in float32 (the precision of a sample's boxes) and"
                    if box_covers_a_pixel(box)
                    else ""
                )
                raise ValueError(f"{where}: box {box} of image {record.image}{rounded} {NO_PIXEL}")
        if record.mask is not None:
            mask_path = self.root / record.mask
            try:
                mask_width, mask_height = image_header(mask_path)[:2]
            except ValueError as error:
                raise ValueError(
                    f"{record.source}: mask file {mask_path} {said_unreadable(error)}"
                ) from None
            if (mask_width, mask_height) != (width, height):
                raise ValueError(
                    f"{record.source}: mask {record.mask} is {mask_width}x{mask_height} but image "
                    f"{record.image} is {width}x{height} (width x height); they must match"
                )
            if decode_mask and record.boxes:  # decoded up front: refused before any run
                self._check_mask_not_empty(record, self._read_mask(record))

    def _read_mask(self, record: ImageRecord) -> torch.Tensor:
        """The record's mask (:func:`read_mask`); an undecodable file (truncated, not an image)
        is a ValueError naming the file and the CSV line, up front or when a sample loads."""
        mask_path = self.root / str(record.mask)
        try:
            return read_mask(mask_path)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise ValueError(
                f"{record.source}: mask file {mask_path} {said_unreadable(error)}"
            ) from None

    def _check_mask_not_empty(self, record: ImageRecord, mask: torch.Tensor) -> None:
        """An image with boxes needs a mask that marks some region (its boxes' region)."""
        if not bool(mask.any()):
            raise ValueError(
                f"{record.source}: mask file {self.root / record.mask} is empty but the "
                f"image has {len(record.boxes)} box(es); the mask marks the region the "
                "boxes enclose: fix the mask, or leave its field empty to use the boxes"
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
            image, orientation = read_image_with_orientation(path, self.n_channels)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            why = said_unreadable(error)
            raise ValueError(f"{record.source}: image file {path} {why}") from None
        if orientation != 1:
            self._warn_orientation(path, orientation)
        height, width = image.shape[-2:]
        if not self.verified:
            self._check_fits(record, width, height, orientation=orientation)
        boxes = _box_tensor(record)
        if record.mask is not None:
            mask = self._read_mask(record)
            if record.boxes and not self.verified:
                self._check_mask_not_empty(record, mask)
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
        out = apply_transform(sample, self.transform)
        if (record.boxes or record.mask) and not bool(out["mask"].any()):
            self._warn_region_lost(path, record, mask, out["mask"].shape[-2:])
        return out

    def _warn_region_lost(
        self, path: Path, record: ImageRecord, mask: torch.Tensor, size: Sequence[int]
    ) -> None:
        """Say once per dataset that a sample's annotated region (``mask``, at the file's
        size) has no pixel left after the transform, at ``size`` (its mask is then empty, read
        as no region)."""
        if getattr(self, "_region_loss_warned", False) or not bool(mask.any()):
            return
        self._region_loss_warned = True
        logger.warning(
            "%s (%s): its annotated region (%d pixel(s) of the %dx%d image, height x width) has "
            "no pixel left at %dx%d after the transform (a region this small falls between "
            "the pixels of the smaller image, or a random crop left it out), so the sample's "
            "mask is empty and its boxes are dropped, read as no region; pass a larger "
            "image_size (torchlap train --image-size) to keep small regions (said once per "
            "dataset)",
            path,
            record.source,
            int(mask.sum()),
            mask.shape[-2],
            mask.shape[-1],
            size[0],
            size[1],
        )

    def metadata(self) -> dict[str, Any]:
        """Classes, channels, size, normalization and where the data and its split came from."""
        out = super().metadata()
        out.update(dataset=str(self.root), split_seed=self.split_seed)
        return out

    def region_known(self, record: ImageRecord) -> bool:
        """Whether ``record``'s region is known (its samples' ``has_region``): the dataset's
        ``has_regions`` here; an importer may say it per image (RSNA: images with boxes)."""
        return self.has_regions

    def save_annotations(self, path: str | os.PathLike[str], overwrite: bool = False) -> None:
        """Write all images with their (given or seeded) split as an annotations.csv.

        Data without regions as ``image,label,split``, with regions with the box and mask
        columns. ``overwrite`` (True or False): an existing file at ``path`` is refused
        (FileExistsError) unless True (it would be replaced whole). Refused (ValueError) too:
        data with regions where some images have ``has_region=False`` (RSNA's normal images),
        which the format cannot express (such a row reads back as a known empty region)."""
        check_bool(overwrite, "overwrite")
        unknown = [r for r in self.records_all if self.has_regions and not self.region_known(r)]
        if unknown:
            raise ValueError(
                f"{len(unknown)} of the {len(self.records_all)} images (first: "
                f"{unknown[0].image}) have has_region=False (no region annotated, e.g. RSNA's "
                "normal images), which annotations.csv cannot express: in a file with box or "
                "mask columns an image without them reads back as a known empty region "
                "(has_region=True, a negative for expert supervision and the localization "
                "metrics). Read the data with its importer instead, or write them as "
                "negatives on purpose with torchlap.data.write_annotations(path, "
                "dataset.records_all)"
            )
        write_annotations(
            Path(path), self.records_all, regions=self.has_regions, overwrite=overwrite
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"len={len(self)}, classes={len(self.classes)})"
        )


def _is_file(file: Path, kind: str, record: ImageRecord) -> bool:
    """Whether the record's image or mask ``file`` (``kind``) is a file; a path the file system
    cannot hold (a name over 255 bytes: pathlib's bare ``[Errno 36] File name too long``) or
    cannot look up is a ValueError naming the record's CSV line."""
    fitting_path(getattr(record, kind), f"{record.source}: {kind} path")
    try:
        return file.is_file()
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:  # the folder and the path together
            fitting_path(file, f"{record.source}: {kind} file")
        raise ValueError(
            f"{record.source}: {kind} file {file} cannot be looked up ({error.strerror or error})"
            "; torchlap needs to reach it: check the path and the permissions of its folders"
        ) from None


def _rotated_hint(record: ImageRecord, width: int, height: int, orientation: int) -> str:
    """The end of the refusal of a box outside an image of EXIF orientation 1 (none) or more."""
    if orientation == 1:
        return ""
    return (
        f"; image {record.image} has EXIF orientation {orientation}, so a viewer shows it "
        "rotated or flipped, but torchlap reads its stored pixels (as torchvision does): boxes "
        f"are in the coordinates of the stored {width}x{height} (width x height) pixels, not "
        "in those of the image a viewer shows"
    )


def _box_tensor(record: ImageRecord) -> torch.Tensor:
    """The record's boxes as its sample holds them: a float32 (N, 4) tensor."""
    return torch.tensor(record.boxes, dtype=torch.float32).reshape(-1, 4)
