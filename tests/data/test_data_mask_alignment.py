"""Masks stay aligned with their image through every resize of the default pipelines."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchlap.data import AnnotatedFolder
from torchlap.data._base import boxes_to_mask

BOX = (101, 57, 333, 301)  # x_min, y_min, x_max, y_max on a 640x480 image


def _rectangle_folder(root: Path, rgb: bool, with_mask: bool) -> Path:
    """Two 480x640 images (one per class) with a filled rectangle, annotated with its exact
    pixel-edge box (and with a mask PNG of the rectangle when ``with_mask``)."""
    x0, y0, x1, y1 = BOX
    pixels = np.zeros((480, 640, 3) if rgb else (480, 640), dtype=np.uint8)
    pixels[y0:y1, x0:x1] = 255
    (root / "img").mkdir(parents=True)
    Image.fromarray(pixels).save(root / "img/0.png")
    Image.fromarray(pixels).save(root / "img/1.png")
    Image.fromarray(pixels if not rgb else pixels[..., 0]).save(root / "img/m.png")
    mask = "img/m.png" if with_mask else ""
    with open(root / "annotations.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "split", "x_min", "y_min", "x_max", "y_max", "mask"])
        writer.writerow(["img/0.png", "a", "train", *BOX, mask])
        writer.writerow(["img/1.png", "b", "train", *BOX, mask])
    return root


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    return float((a & b).sum()) / max(1, int((a | b).sum()))


def _box_mask(sample: dict) -> torch.Tensor:
    """The pixels of the sample's (transformed) box."""
    height, width = sample["mask"].shape
    return boxes_to_mask(sample["boxes"].as_subclass(torch.Tensor), height, width)


@pytest.mark.parametrize("rgb", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_resized_mask_covers_the_scaled_box(tmp_path: Path, rgb: bool, with_mask: bool) -> None:
    # NEAREST (torchvision's mask default) moved the mask one pixel right/down: IoU 0.88
    root = _rectangle_folder(tmp_path / "ds", rgb, with_mask)
    sample = AnnotatedFolder(root, split="train", image_size=(48, 64))[0]
    assert sample["boxes"].tolist()[0] == pytest.approx([10.1, 5.7, 33.3, 30.1], abs=1e-4)
    assert _iou(sample["mask"], _box_mask(sample)) >= 0.99


@pytest.mark.parametrize("with_mask", [False, True])
def test_augmented_mask_follows_the_box(tmp_path: Path, with_mask: bool) -> None:
    # RGB augmentation: random resized crop and flip, after which the box stays exact
    root = _rectangle_folder(tmp_path / "ds", rgb=True, with_mask=with_mask)
    dataset = AnnotatedFolder(root, split="train", image_size=(48, 64), augment=True)
    torch.manual_seed(3)
    for _ in range(6):
        sample = dataset[0]
        assert _iou(sample["mask"], _box_mask(sample)) >= 0.99


def test_augmented_grayscale_mask_follows_the_image(tmp_path: Path) -> None:
    # grayscale augmentation: resize then a small random affine; the rotated box is not exact,
    # so the mask is compared with the rectangle's pixels in the transformed image
    root = _rectangle_folder(tmp_path / "ds", rgb=False, with_mask=False)
    dataset = AnnotatedFolder(root, split="train", image_size=(48, 64), augment=True)
    torch.manual_seed(3)
    for _ in range(6):
        sample = dataset[0]
        bright = sample["image"].as_subclass(torch.Tensor)[0] > 0.5
        assert _iou(sample["mask"], bright) >= 0.95


@pytest.mark.parametrize(
    ("boxes", "height", "width", "error", "match"),
    [
        (torch.tensor([[1.0, 1, 3, 3]]), 4.5, 4, TypeError, "height must be an int >= 1"),
        (torch.tensor([[1.0, 1, 3, 3]]), -1, 4, ValueError, "height must be an int >= 1"),
        ([[1, 1, 3, 3]], 4, 4, TypeError, "boxes must be a torch.Tensor"),
        (torch.tensor([[1.0, 1, 5, 3]]), 4, 4, ValueError, r"boxes \[0\] .* not inside a 4x4"),
        (torch.tensor([[0.0, 0, 1, 1], [3.0, 1, 1, 3]]), 4, 4, ValueError, r"boxes \[1\]"),
        (torch.tensor([[-1.0, 0, 1, 1]]), 4, 4, ValueError, r"boxes \[0\]"),
        (torch.tensor([[float("nan"), 0, 1, 1]]), 4, 4, ValueError, "finite"),
    ],
)
def test_boxes_to_mask_refuses_what_is_not_a_box_inside_the_image(
    boxes, height, width, error, match
):
    """Before: a float height gave a 5-row mask, a box outside the image or inverted a clipped
    or empty mask, without complaint."""
    with pytest.raises(error, match=match):
        boxes_to_mask(boxes, height, width)
    # a box touching the border is a box
    assert int(boxes_to_mask(torch.tensor([[0.0, 0, 4, 4]]), 4, 4).sum()) == 16
