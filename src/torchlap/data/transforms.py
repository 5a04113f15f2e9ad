"""Default box- and mask-aware transforms (torchvision ``transforms.v2``).

Transforms act on the whole sample dict, so ``BoundingBoxes`` and ``Mask`` follow every resize,
crop and flip of the image. Images stay float in [0, 1]: normalization is recorded with the
model (``dataset.mean`` / ``dataset.std``) and applied there, not in the data pipeline.

Masks are resized with ``NEAREST_EXACT`` (pixel centres aligned, as the image's bilinear
resize and the boxes are): torchvision's default for a ``Mask`` is ``NEAREST``, which samples
the top-left corner of each output pixel and moves a mask up to one output pixel right and
down against its image (an IoU of 0.88 with the scaled box at 480x640 -> 48x64).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from torchlap._checks import check_bool, check_channels

# ImageNet statistics: the conventional choice for RGB images and for backbones pretrained on
# ImageNet; for grayscale images their channel average (the usual way to feed gray X-rays to
# such a backbone after averaging its first convolution's input channels).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_MEAN = (0.449,)
GRAY_STD = (0.226,)


def default_normalization(n_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Default (mean, std) for ``n_channels`` 1 (grayscale, e.g. X-ray) or 3 (RGB)."""
    if check_channels(n_channels, "n_channels") == 1:
        return GRAY_MEAN, GRAY_STD
    return IMAGENET_MEAN, IMAGENET_STD


MAX_IMAGE_SIDE = 8192


def _resize_mask_exact(mask: Any, size: Any, max_size: int | None = None) -> Any:
    """A ``tv_tensors.Mask`` (..., H, W) resized to ``size`` with ``NEAREST_EXACT``. Done here:
    torchvision's mask kernels ignore the interpolation asked (always ``NEAREST`` through
    ``resized_crop``, and through ``resize`` before 0.22)."""
    tensor = mask.as_subclass(torch.Tensor)
    squeeze = tensor.ndim < 3
    tensor = tensor[None] if squeeze else tensor
    out = F.resize_image(
        tensor, size, interpolation=InterpolationMode.NEAREST_EXACT, max_size=max_size
    )
    return tv_tensors.wrap(out[0] if squeeze else out, like=mask)


class _ExactMaskResize:
    """Mixin for a resizing ``v2`` transform (``Resize``, ``RandomResizedCrop``): a
    ``tv_tensors.Mask`` is resized with ``NEAREST_EXACT`` (centre-aligned), everything else
    by the transform itself."""

    def _call_kernel(self, functional: Any, inpt: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            if functional is F.resize:
                size = args[0] if args else kwargs["size"]
                return _resize_mask_exact(inpt, size, kwargs.get("max_size"))
            if functional is F.resized_crop:
                box = (kwargs["top"], kwargs["left"], kwargs["height"], kwargs["width"])
                return _resize_mask_exact(F.crop(inpt, *box), kwargs["size"])
        return super()._call_kernel(functional, inpt, *args, **kwargs)  # type: ignore[misc]


class MaskAlignedResize(_ExactMaskResize, v2.Resize):
    """``v2.Resize`` whose masks stay aligned with the image (``NEAREST_EXACT`` for masks)."""


class MaskAlignedRandomResizedCrop(_ExactMaskResize, v2.RandomResizedCrop):
    """``v2.RandomResizedCrop`` whose masks stay aligned with the image (``NEAREST_EXACT``)."""


def size_pair(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``image_size`` (int or (height, width)) as a (height, width) pair of ints from 1 to
    ``MAX_IMAGE_SIDE`` (8192): a larger side is refused up front rather than failing at the
    first sample with an allocation of gigabytes."""
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        pair: tuple = (image_size, image_size)
    elif isinstance(image_size, str):
        pair = ()
    else:
        try:
            pair = tuple(image_size)  # type: ignore[arg-type]
        except TypeError:  # not iterable: 3.5, None, ...
            pair = ()
    if (
        len(pair) != 2
        or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in pair)
        or min(pair) < 1
    ):  # 3.5 is refused, not truncated to 3
        raise ValueError(
            f"image_size must be a positive int or (height, width) of positive ints, got "
            f"{image_size!r}"
        )
    if max(pair) > MAX_IMAGE_SIDE:
        raise ValueError(
            f"image_size must be at most {MAX_IMAGE_SIDE} per side (torchlap's limit: a "
            f"{MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} float image already takes 768 MB with 3 "
            f"channels), got {image_size!r}"
        )
    return (int(pair[0]), int(pair[1]))


def default_transforms(
    image_size: int | Sequence[int] | None, n_channels: int, train: bool = False
) -> v2.Compose | None:
    """Sensible defaults per image type, all box/mask aware.

    Evaluation: resize to ``image_size`` (None: keep the native size, return None).
    Masks are resized with ``NEAREST_EXACT`` in every pipeline (see the module docstring).
    Training (``train=True``):
      * grayscale (X-ray-like, ``n_channels == 1``): a mild random affine (5 degrees, 5 %
        shift, 0.9-1.1 scale) and brightness/contrast jitter of 0.1, no flips (anatomy has
        a left and a right);
      * RGB: random resized crop keeping 80-100 % of the area, horizontal flip, colour jitter.
    """
    check_channels(n_channels, "n_channels")
    check_bool(train, "train")
    if image_size is None:
        if train:
            raise ValueError("training transforms need an image_size")
        return None
    size = size_pair(image_size)
    if not train:
        return v2.Compose([MaskAlignedResize(size, antialias=True)])
    if n_channels == 1:
        return v2.Compose(
            [
                MaskAlignedResize(size, antialias=True),
                v2.RandomAffine(degrees=5.0, translate=(0.05, 0.05), scale=(0.9, 1.1)),
                v2.ColorJitter(brightness=0.1, contrast=0.1),
            ]
        )
    return v2.Compose(
        [
            MaskAlignedRandomResizedCrop(size, scale=(0.8, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        ]
    )
