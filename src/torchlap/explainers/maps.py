"""The maps every explainer shares: bilinear upsampling to the input resolution and min-max
normalisation (re-exported by :mod:`torchlap.explainers.base` and the package)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["minmax_normalize", "upsample"]


def upsample(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Resize maps ``(B, h, w)`` to ``size = (H, W)`` by bilinear interpolation.

    ``align_corners=False`` (pixel centres aligned, as ``torchvision`` and captum do). Every
    explainer brings its maps to the input resolution with this helper (and the masks of
    Score-CAM, RISE and SISE, and Guided Grad-CAM's Grad-CAM factor unless its
    ``interpolate_mode`` says ``"nearest"``, use the same interpolation), so methods are
    compared on the same footing.
    """
    if not isinstance(maps, Tensor) or maps.dim() != 3:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"upsample expects maps of shape (B, h, w), got {shape}")
    size = (int(size[0]), int(size[1]))
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]


def minmax_normalize(maps: Tensor, dims: Sequence[int] = (-2, -1)) -> Tensor:
    """Rescale each map to [0, 1] over ``dims`` (a constant map becomes all zeros)."""
    low = maps.amin(dim=tuple(dims), keepdim=True)
    high = maps.amax(dim=tuple(dims), keepdim=True)
    span = high - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), 0.0)
