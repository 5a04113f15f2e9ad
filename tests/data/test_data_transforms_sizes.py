"""``size_pair``, ``default_transforms`` and the mask-aligned resizes, checked against their
definitions: image_size is an int or (height, width) of ints from 1 to 8192; a mask is resized
with ``NEAREST_EXACT``, i.e. output pixel (i, j) of an (h, w) mask resized from (H, W) takes
input pixel (floor((i + 0.5) * H / h), floor((j + 0.5) * W / w)), the pixel under its centre."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from torchlap.data.transforms import (
    MAX_IMAGE_SIDE,
    MaskAlignedRandomResizedCrop,
    MaskAlignedResize,
    default_transforms,
    size_pair,
)


@pytest.mark.parametrize(
    ("size", "pair"),
    [
        (1, (1, 1)),
        (7, (7, 7)),
        ((3, 9), (3, 9)),
        ([9, 3], (9, 3)),
        ((np.int64(4), 5), (4, 5)),
        ((1, 8192), (1, 8192)),
    ],
)
def test_size_pair_accepts_positive_ints(size: object, pair: tuple[int, int]) -> None:
    result = size_pair(size)  # type: ignore[arg-type]
    assert result == pair and all(type(side) is int for side in result)


@pytest.mark.parametrize(
    "size",
    [
        0,
        -3,
        (0, 4),
        (4, 0),
        (4, -1),
        (4,),
        (4, 4, 4),
        (),
        "44",
        "4",
        3.5,
        (3.5, 4),
        (4, 4.0),
        None,
        True,
        (True, 4),
        (4, False),
        ("4", "4"),
    ],
)
def test_size_pair_refuses_what_is_no_positive_int_pair(size: object) -> None:
    expected = (
        f"image_size must be a positive int or (height, width) of positive ints, got {size!r}"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        size_pair(size)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [MAX_IMAGE_SIDE + 1, (MAX_IMAGE_SIDE + 1, 4), (4, 10**6)])
def test_size_pair_refuses_a_side_over_8192(size: object) -> None:
    assert MAX_IMAGE_SIDE == 8192
    with pytest.raises(ValueError, match=rf"^image_size must be at most 8192 per side .*, got "
                       rf"{re.escape(repr(size))}$"):  # fmt: skip
        size_pair(size)  # type: ignore[arg-type]


def _nearest_exact(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The pixel under each output pixel's centre, by loops."""
    rows, cols = mask.shape[-2:]
    out = torch.empty((*mask.shape[:-2], height, width), dtype=mask.dtype)
    for i in range(height):
        for j in range(width):
            source_i = min(rows - 1, math.floor((i + 0.5) * rows / height))
            source_j = min(cols - 1, math.floor((j + 0.5) * cols / width))
            out[..., i, j] = mask[..., source_i, source_j]
    return out


def _stripes(height: int, width: int) -> torch.Tensor:
    """A mask whose every pixel is distinct (so any other sampling shows)."""
    return torch.arange(height * width, dtype=torch.int64).reshape(height, width)


@pytest.mark.parametrize("shape", [(10, 7), (1, 10, 7), (2, 1, 10, 7)])
@pytest.mark.parametrize("out", [(4, 3), (6, 5), (23, 11)])
def test_a_resized_mask_takes_the_pixel_under_each_centre(
    shape: tuple[int, ...], out: tuple[int, int]
) -> None:
    values = _stripes(10, 7).expand(shape).clone()
    resized = MaskAlignedResize(out)(tv_tensors.Mask(values))
    assert isinstance(resized, tv_tensors.Mask)
    torch.testing.assert_close(resized.as_subclass(torch.Tensor), _nearest_exact(values, *out))
    # max_size reaches the mask as it reaches the image: 10x7 with size 6 is 8x6 (short side
    # 6, long int(6 * 10 / 7)), over max_size 7, so capped to 7 x int(7 * 6 / 8) = 7x5
    capped = MaskAlignedResize(6, max_size=7)(tv_tensors.Mask(values))
    torch.testing.assert_close(capped.as_subclass(torch.Tensor), _nearest_exact(values, 7, 5))


def test_a_whole_image_random_resized_crop_resizes_the_mask_by_centres() -> None:
    """scale (1, 1) and the image's own aspect ratio crop the whole 12x8 image: the mask is
    then the centre-sampled resize of all of it (torchvision's own kernel samples corners)."""
    values = _stripes(12, 8)
    crop = MaskAlignedRandomResizedCrop((5, 3), scale=(1.0, 1.0), ratio=(8 / 12, 8 / 12))
    image = tv_tensors.Image(torch.rand(1, 12, 8))
    out = crop({"image": image, "mask": tv_tensors.Mask(values)})
    assert out["image"].shape == (1, 5, 3)
    torch.testing.assert_close(out["mask"].as_subclass(torch.Tensor), _nearest_exact(values, 5, 3))


def test_other_inputs_go_through_the_transform_itself() -> None:
    image = tv_tensors.Image(torch.rand(3, 10, 7))
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([[1.0, 2.0, 5.0, 8.0]]), format="XYXY", canvas_size=(10, 7)
    )
    out = MaskAlignedResize((20, 14))({"image": image, "boxes": boxes})
    torch.testing.assert_close(out["image"], v2.Resize((20, 14))(image))
    torch.testing.assert_close(
        out["boxes"].as_subclass(torch.Tensor), torch.tensor([[2.0, 4.0, 10.0, 16.0]])
    )


def test_default_transforms_follow_the_documented_settings() -> None:
    assert default_transforms(None, 1) is None and default_transforms(None, 3) is None
    with pytest.raises(ValueError, match=r"^training transforms need an image_size$"):
        default_transforms(None, 3, train=True)
    (resize,) = default_transforms(12, 3).transforms
    assert type(resize) is MaskAlignedResize and resize.size == [12, 12]
    resize, affine, jitter = default_transforms((12, 9), 1, train=True).transforms
    assert type(resize) is MaskAlignedResize and resize.size == [12, 9]
    assert affine.degrees == [-5.0, 5.0] and affine.translate == (0.05, 0.05)
    assert affine.scale == (0.9, 1.1)
    assert jitter.brightness == (0.9, 1.1) and jitter.contrast == (0.9, 1.1)
    assert jitter.saturation is None
    crop, flip, jitter = default_transforms(12, 3, train=True).transforms
    assert type(crop) is MaskAlignedRandomResizedCrop and crop.size == (12, 12)
    assert crop.scale == (0.8, 1.0) and flip.p == 0.5
    assert jitter.brightness == jitter.contrast == jitter.saturation == (0.8, 1.2)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        default_transforms(0, 3)


@pytest.mark.parametrize(
    ("size", "channels", "train", "error", "message"),
    [
        (None, 2, False, ValueError, "n_channels must be 1 (grayscale) or 3 (RGB), got 2"),
        (12, 4, True, ValueError, "n_channels must be 1 (grayscale) or 3 (RGB), got 4"),
        (None, 1, "yes", TypeError, "train must be True or False, got 'yes'"),
        (12, 3, 0, TypeError, "train must be True or False, got 0"),
    ],
)
def test_default_transforms_refuses_channels_and_flags_before_anything(
    size: int | None, channels: int, train: object, error: type[Exception], message: str
) -> None:
    """Checked up front, also where the answer would not need them (no size: no pipeline)."""
    with pytest.raises(error) as caught:
        default_transforms(size, channels, train=train)  # type: ignore[arg-type]
    assert str(caught.value) == message


def _antialiased_row(values: list[float], out: int) -> list[float]:
    """A row shrunk by an integer factor s with the antialiased bilinear (triangle) filter:
    output pixel i is the average of the input pixels j weighted by
    max(0, 1 - |(j + 0.5) - (i + 0.5) * s| / s), the weights normalised to sum 1."""
    scale = len(values) // out
    row = []
    for i in range(out):
        centre = (i + 0.5) * scale
        weights = [max(0.0, 1 - abs(j + 0.5 - centre) / scale) for j in range(len(values))]
        row.append(sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights))
    return row


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("train", [False, True])
def test_the_default_resize_antialiases_a_shrunk_image(channels: int, train: bool) -> None:
    """A 1x12 row of 0/1 stripes shrunk to 1x4 (factor 3): without antialiasing each output
    pixel would be one input pixel (0 or 1), with it the triangle-weighted average."""
    stripes = [float(k % 2) for k in range(12)]
    image = tv_tensors.Image(torch.tensor(stripes).reshape(1, 1, 12).expand(channels, 1, 12))
    pipeline = default_transforms((1, 4), channels, train=train)
    resize = pipeline.transforms[0]
    if type(resize) is MaskAlignedRandomResizedCrop:  # RGB training: the crop is random
        resize = MaskAlignedResize(resize.size, antialias=resize.antialias)
    expected = torch.tensor(_antialiased_row(stripes, 4)).expand(channels, 1, 4)
    torch.testing.assert_close(resize(image).as_subclass(torch.Tensor), expected)
