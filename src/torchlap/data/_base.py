"""The sample contract shared by every torchlap dataset, and box/mask helpers.

Every dataset yields a dict::

    {"image": tv_tensors.Image float32 (C, H, W) in [0, 1],
     "label": int,
     "boxes": tv_tensors.BoundingBoxes float32 (N, 4) XYXY in pixels (N may be 0),
     "mask": tv_tensors.Mask uint8 (H, W) with values {0, 1},
     "has_region": bool,
     "index": int}

Conventions (documented once here, used everywhere in ``torchlap.data``):

* Box coordinates are pixel *edges*: pixel (row r, column c) covers ``[c, c+1) x [r, r+1)``,
  so a box ``(x_min, y_min, x_max, y_max)`` covers the pixels whose centre ``(c + 0.5, r + 0.5)``
  satisfies ``x_min <= c + 0.5 < x_max`` and ``y_min <= r + 0.5 < y_max``. A box may touch the
  image border (``x_max == W``) but never cross it.
* ``mask`` is the region ground truth: the given mask, or the union of the boxes when only boxes
  are annotated. Built-in benchmarks give the exact footprint of the class-defining objects.
* ``has_region`` says that the region ground truth of this sample is *known*: True for every
  sample of a dataset that carries boxes or masks (an empty mask then means "no region", e.g. a
  negative X-ray), False for class-only data (ImageFolder, CelebA), whose mask is all zeros.
* ``index`` is the position of the sample in its dataset (the argument of ``__getitem__``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from torchlap._checks import check_bool, check_has_values, check_positive_int, check_seed, is_int
from torchlap.data.transforms import size_pair

SPLITS: tuple[str, str, str] = ("train", "val", "test")

Sample = dict[str, Any]


def check_split(split: str) -> str:
    """Return ``split`` if it is one of ``train``, ``val``, ``test``; raise ValueError otherwise."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; accepted splits are {', '.join(SPLITS)}")
    return split


def number_list(values: object, name: str, example: str) -> tuple[float, ...]:
    """``values`` (a list or tuple of numbers) as floats; TypeError naming ``name`` for a text
    (``"0.8,0.1,0.1"``), a single number, or an entry that is a text or a bool, which
    ``float()`` would bend (``float("0.5")``, ``float(True)``). ``example`` shows an accepted
    value in the message. Finiteness and ranges are the caller's."""
    entries = None if isinstance(values, (str, bytes)) else _entries(values)
    if entries is None:
        raise TypeError(
            f"{name} must be a list or tuple of numbers, e.g. {example}, got {values!r}"
        )
    try:
        if any(isinstance(v, (str, bytes)) or _is_bool(v) for v in entries):
            raise TypeError
        return tuple(float(v) for v in entries)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must hold numbers (not texts or bools), e.g. {example}, got {values!r}"
        ) from None


def _entries(values: object) -> list[Any] | None:
    """The entries of an iterable, or None for a value that is not one (a number, None)."""
    try:
        return list(values)  # type: ignore[call-overload]
    except TypeError:
        return None


def _is_bool(value: object) -> bool:
    """A Python or numpy bool (``float(True)`` is 1.0, not a number someone meant)."""
    kind = type(value)
    return isinstance(value, bool) or (
        kind.__module__ == "numpy" and kind.__name__ in ("bool_", "bool")
    )


def check_split_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, val, test) fractions: three non-negative numbers summing to 1, train > 0."""
    values = number_list(fractions, "split_fractions", "(0.8, 0.1, 0.1)")
    if len(values) != 3:
        raise ValueError(
            f"split_fractions must have 3 entries (train, val, test), got {len(values)}: {values}"
        )
    if any(not (f >= 0.0) for f in values) or abs(sum(values) - 1.0) > 1e-6 or values[0] <= 0:
        raise ValueError(
            "split_fractions must be three non-negative numbers (train, val, test) summing to 1 "
            f"with train > 0, got {values}"
        )
    return values  # type: ignore[return-value]


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Split ``n`` items into (train, val, test) counts by ``fractions`` (rounding val and test)."""
    _, f_val, f_test = check_split_fractions(fractions)
    n_val = round(n * f_val)
    n_test = round(n * f_test)
    n_train = n - n_val - n_test
    if n_train < 0:  # only possible through rounding on tiny n
        n_test += n_train
        n_train = 0
    return n_train, n_val, n_test


def boxes_to_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """Rasterize (N, 4) XYXY pixel-edge boxes into one (H, W) uint8 union mask.

    A pixel belongs to a box when its centre lies inside it (half-open on the max side), the
    convention of this module's docstring. Vectorized over boxes and pixels. ``boxes``: a
    tensor (N, 4) of finite ``(x_min, y_min, x_max, y_max)`` with ``0 <= x_min <= x_max <=
    width`` and ``0 <= y_min <= y_max <= height`` (a box may touch the border, never cross
    it); ``height``, ``width``: positive ints.
    """
    check_positive_int(height, "height")
    check_positive_int(width, "width")
    if not isinstance(boxes, Tensor):
        raise TypeError(f"boxes must be a torch.Tensor (N, 4), got {type(boxes).__name__}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"boxes must hold pixel coordinates (numbers), got dtype {boxes.dtype}")
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {tuple(boxes.shape)}")
    check_has_values(boxes, "boxes")
    if boxes.shape[0]:
        x0, y0, x1, y1 = boxes.to(torch.float64).unbind(1)
        bad = ~(
            torch.isfinite(boxes).all(1)
            & (x0 >= 0) & (y0 >= 0) & (x0 <= x1) & (y0 <= y1) & (x1 <= width) & (y1 <= height)
        )  # fmt: skip
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten()[:5].tolist()
            raise ValueError(
                f"boxes {rows} (rows) are not inside a {width}x{height} image as (x_min, y_min, "
                f"x_max, y_max) with 0 <= x_min <= x_max <= {width} and 0 <= y_min <= y_max <= "
                f"{height}, finite: e.g. {boxes[rows[0]].tolist()}"
            )
    device = boxes.device
    if boxes.shape[0] == 0:
        return torch.zeros(height, width, dtype=torch.uint8, device=device)
    boxes = boxes.to(torch.float64)
    xs = torch.arange(width, device=device, dtype=torch.float64) + 0.5
    ys = torch.arange(height, device=device, dtype=torch.float64) + 0.5
    inside_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])  # (N, W)
    inside_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])  # (N, H)
    union = (inside_y[:, :, None] & inside_x[:, None, :]).any(dim=0)
    return union.to(torch.uint8)


#: why a box that holds no pixel centre is refused (its region would be empty)
NO_PIXEL = (
    "covers no pixel centre, so its region would be empty: a pixel (row r, column c) is inside "
    "when x_min <= c + 0.5 < x_max and y_min <= r + 0.5 < y_max; widen the box or drop the row"
)


def box_covers_a_pixel(box: Sequence[float]) -> bool:
    """Whether an XYXY pixel-edge box holds a pixel centre (:func:`boxes_to_mask`'s rule: its
    mask is not empty)."""
    x_min, y_min, x_max, y_max = box
    # the first centre k + 0.5 at or after the low edge, inside before the high edge
    return math.ceil(x_min - 0.5) + 0.5 < x_max and math.ceil(y_min - 0.5) + 0.5 < y_max


def masks_to_tight_boxes(masks: Tensor) -> tuple[Tensor, Tensor]:
    """Tight pixel-edge XYXY boxes of boolean masks (..., H, W).

    Returns ``(boxes (..., 4) float32, nonempty (...) bool)``; the box of an empty mask is zeros.
    Unlike ``torchvision.ops.masks_to_boxes`` (inclusive pixel indices) the max side is the edge
    after the last pixel, so ``boxes_to_mask`` of the box covers exactly the mask's extent.
    """
    if not isinstance(masks, Tensor) or masks.dim() < 2:
        got = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise TypeError(f"masks must be a bool torch.Tensor (..., H, W), got {got}")
    height, width = masks.shape[-2:]
    if height == 0 or width == 0:
        raise ValueError(f"masks must have H, W >= 1, got shape {tuple(masks.shape)}")
    cols = masks.any(dim=-2)  # (..., W)
    rows = masks.any(dim=-1)  # (..., H)
    nonempty = cols.any(dim=-1)
    x_min = cols.to(torch.uint8).argmax(dim=-1)
    x_max = width - cols.flip(-1).to(torch.uint8).argmax(dim=-1)
    y_min = rows.to(torch.uint8).argmax(dim=-1)
    y_max = height - rows.flip(-1).to(torch.uint8).argmax(dim=-1)
    boxes = torch.stack([x_min, y_min, x_max, y_max], dim=-1).to(torch.float32)
    boxes = torch.where(nonempty[..., None], boxes, torch.zeros_like(boxes))
    return boxes, nonempty


def make_sample(
    image: Tensor,
    label: int,
    boxes: Tensor,
    mask: Tensor,
    has_region: bool,
    index: int,
) -> Sample:
    """Wrap plain tensors into the sample dict (see the module docstring for the contract)."""
    height, width = image.shape[-2:]
    return {
        "image": tv_tensors.Image(image),
        "label": int(label),
        "boxes": tv_tensors.BoundingBoxes(
            boxes.to(torch.float32).reshape(-1, 4), format="XYXY", canvas_size=(height, width)
        ),
        "mask": tv_tensors.Mask(mask.to(torch.uint8)),
        "has_region": bool(has_region),
        "index": int(index),
    }


_SANITIZE = v2.Compose([v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(labels_getter=None)])


def apply_transform(sample: Sample, transform: Callable[[Sample], Sample] | None) -> Sample:
    """Apply a ``transforms.v2`` transform to the whole sample so boxes and masks follow it.

    Afterwards boxes are clamped to the new canvas and boxes that lost all area are dropped
    (``ClampBoundingBoxes`` + ``SanitizeBoundingBoxes``); the image must stay a float image.
    """
    if transform is None:
        return sample
    out = transform(sample)
    missing = [key for key in sample if key not in out] if isinstance(out, dict) else None
    if missing is None or missing:
        got = type(out).__name__ if missing is None else f"a dict without {missing}"
        raise TypeError(
            "the transform must take and return the whole sample dict (image, label, boxes, "
            f"mask, has_region, index), as torchvision.transforms.v2 transforms do; got {got}"
        )
    out = _SANITIZE(out)
    image = out["image"]
    if not isinstance(image, Tensor) or image.ndim != 3:
        raise TypeError(
            "the transform must return the sample dict with 'image' a (C, H, W) tensor; got "
            f"{type(image).__name__} {getattr(image, 'shape', '')}"
        )
    if not image.is_floating_point():
        raise TypeError(
            f"the transform turned the image into {image.dtype}; images must stay float in [0, 1] "
            "(add v2.ToDtype(torch.float32, scale=True) at the end of the transform)"
        )
    if not isinstance(out["mask"], tv_tensors.Mask):
        out["mask"] = tv_tensors.Mask(out["mask"])
    if not isinstance(image, tv_tensors.Image):
        out["image"] = tv_tensors.Image(image)
    return out


def collate_regions(batch: Sequence[Sample]) -> dict[str, Any]:
    """DataLoader ``collate_fn``: stack images, labels, masks; keep boxes as a list.

    Returns ``{"image": (B, C, H, W) float, "label": (B,) int64, "boxes": list of B
    BoundingBoxes, "mask": (B, H, W) uint8, "has_region": (B,) bool, "index": (B,) int64}``.
    """
    if isinstance(batch, (Tensor, str, bytes)) or not isinstance(batch, Sequence):
        raise TypeError(f"batch must be a list of sample dicts, got {type(batch).__name__}")
    if len(batch) == 0:
        raise ValueError("collate_regions got an empty batch")
    if not all(isinstance(sample, Mapping) for sample in batch):
        kinds = sorted({type(sample).__name__ for sample in batch})
        raise TypeError(f"batch must be a list of sample dicts (a dataset's items), got {kinds}")
    shapes = {tuple(sample["image"].shape) for sample in batch}
    if len(shapes) != 1:
        raise ValueError(
            f"images in a batch must share one shape, got {sorted(shapes)}; give the dataset an "
            "image_size (or a Resize transform) so all images have the same size"
        )
    return {
        "image": torch.stack([sample["image"].as_subclass(Tensor) for sample in batch]),
        "label": torch.tensor([sample["label"] for sample in batch], dtype=torch.int64),
        "boxes": [sample["boxes"] for sample in batch],
        "mask": torch.stack([sample["mask"].as_subclass(Tensor) for sample in batch]),
        "has_region": torch.tensor([sample["has_region"] for sample in batch], dtype=torch.bool),
        "index": torch.tensor([sample["index"] for sample in batch], dtype=torch.int64),
    }


class RegionDataset(Dataset):
    """Base class of torchlap datasets: the sample dict contract plus dataset metadata.

    Subclasses set ``classes`` (sorted class names; label = position), ``n_channels``,
    ``image_size`` ((H, W) of the yielded images, or None when a user transform decides it),
    ``mean`` and ``std`` (per-channel normalization statistics that a trained model records).
    The images themselves stay in [0, 1]; normalization is the model's business.
    """

    classes: list[str]
    n_channels: int
    image_size: tuple[int, int] | None
    split: str

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean used to normalize inputs of a model trained on this data."""
        raise NotImplementedError

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation used to normalize inputs."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    def metadata(self) -> dict[str, Any]:
        """What a trained model must record to use this data again: classes, channels, stats."""
        return {
            "classes": list(self.classes),
            "n_channels": int(self.n_channels),
            "image_size": None if self.image_size is None else list(self.image_size),
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
        }

    def normalize_transform(self) -> v2.Normalize:
        """``v2.Normalize`` with this dataset's mean/std (for the model's input, not the sample)."""
        return v2.Normalize(mean=list(self.mean), std=list(self.std))


# the options of AnnotatedFolder (and image_folder) that _check_options knows, with defaults
_OPTION_NAMES = (
    "transform", "image_size", "channels", "split_fractions", "seed", "mean", "std",
    "verify_images", "augment", "n_images",
)  # fmt: skip


def check_transform(transform: object) -> None:
    """TypeError unless ``transform`` is None or a callable on the sample dict; a transform of
    ``torchvision.transforms`` (v1), which takes an image, not the dict, is named as such."""
    if transform is not None and not callable(transform):
        raise TypeError(
            "transform must be a callable taking and returning the sample dict (e.g. a "
            f"torchvision transforms.v2 transform) or None (the default), got {transform!r}"
        )
    if type(transform).__module__ == "torchvision.transforms.transforms":
        raise TypeError(
            f"transform {transform!r} is of torchvision.transforms (v1), which takes an image; "
            "torchlap's transforms take the sample dict so that boxes and masks follow the "
            "image: use the same transform from torchvision.transforms.v2"
        )


def check_folder_options(
    split: str,
    transform: Callable[[Sample], Sample] | None = None,
    image_size: int | Sequence[int] | None = None,
    channels: int | None = None,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    verify_images: bool = True,
    augment: bool = False,
    n_images: int | None = None,
    **others: Any,
) -> None:
    """Check a folder dataset's options before any file is listed or read (the errors say
    what is accepted). ``mean`` and ``std`` are checked with the data's channels, later."""
    unknown = sorted(set(others) - set(_OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"unknown folder dataset option(s) {', '.join(unknown)}; accepted: "
            f"split, {', '.join(_OPTION_NAMES)}"
        )
    check_split(split)
    if channels is not None and (not is_int(channels) or channels not in (1, 3)):
        error = ValueError if is_int(channels) else TypeError
        raise error(f"channels must be 1, 3 or None (infer), got {channels!r}")
    if n_images is not None:
        check_positive_int(n_images, "n_images")
    check_seed(seed)
    check_bool(verify_images, "verify_images")
    check_bool(augment, "augment")
    check_transform(transform)
    if image_size is not None:
        size_pair(image_size)
    check_split_fractions(split_fractions)  # also when the CSV's split column wins
    for name in ("mean", "std"):  # their count is checked with the data's channels, later
        if others.get(name) is not None:
            number_list(others[name], name, "(0.5,) for one channel, (0.5, 0.5, 0.5) for RGB")
