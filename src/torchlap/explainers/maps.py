"""The maps every explainer shares: bilinear upsampling to the input resolution and min-max
normalisation (re-exported by :mod:`torchlap.explainers.base` and the package)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from torchlap._checks import check_size_pair

__all__ = ["check_float_maps", "minmax_normalize", "score_dtype", "upsample"]


def check_float_maps(maps: object, name: str, shape: str) -> Tensor:
    """``maps`` if it is a floating tensor with as many dimensions as ``shape`` names (e.g.
    ``"(B, h, w)"``), else ``TypeError``/``ValueError`` naming ``name``. No device sync: the
    values are not read (the helpers using it run on every explanation)."""
    ndim = shape.count(",") + 1
    if not isinstance(maps, Tensor):
        got = type(maps).__name__
        raise TypeError(f"{name} must be a floating torch.Tensor {shape}, got {got}")
    if maps.dim() != ndim:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor {shape}, got dtype {maps.dtype}")
    return maps


def score_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the explainers score and sum in for tensors of ``dtype``: float32 for half
    precision and integer or bool tensors (their sums would round or overflow), the dtype
    itself from float32 up (a float64 model's maps keep float64)."""
    return torch.promote_types(dtype, torch.float32)


def upsample(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Resize maps ``(B, h, w)`` to ``size = (H, W)`` by bilinear interpolation.

    ``align_corners=False`` (pixel centres aligned, as ``torchvision`` and captum do). Every
    explainer brings its maps to the input resolution with this helper (and the masks of
    Score-CAM, RISE and SISE, and Guided Grad-CAM's Grad-CAM factor unless its
    ``interpolate_mode`` says ``"nearest"``, use the same interpolation), so methods are
    compared on the same footing.

    ``maps``: a floating tensor; ``size``: two positive ints (a ``torch.Size`` too).
    """
    if not isinstance(maps, Tensor) or maps.dim() != 3 or 0 in maps.shape[1:]:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"upsample expects maps of shape (B, h, w), h, w >= 1, got {shape}")
    if not maps.is_floating_point():
        raise TypeError(f"maps must be a floating tensor (B, h, w), got dtype {maps.dtype}")
    size = check_size_pair(size, "size")
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]


def minmax_normalize(maps: Tensor, dims: Sequence[int] = (-2, -1)) -> Tensor:
    """Rescale each map to [0, 1] over ``dims`` (a constant map becomes all zeros).

    ``maps``: a floating tensor (its values are not checked: a map holding a NaN becomes all
    NaN, so callers that count non-finite results count it, instead of scoring it as a
    constant map; an infinite value gives NaN pixels). A spread below the dtype's smallest
    normal number (subnormal) is still divided by exactly, so the map reaches 1.
    """
    if not isinstance(maps, Tensor) or not maps.is_floating_point():
        got = maps.dtype if isinstance(maps, Tensor) else type(maps).__name__
        raise TypeError(f"maps must be a floating torch.Tensor, got {got}")
    try:
        sizes = [maps.shape[d] for d in dims]
    except (IndexError, TypeError):
        raise ValueError(
            f"dims must be dimensions of maps {tuple(maps.shape)}, got {dims!r}"
        ) from None
    if 0 in sizes:
        raise ValueError(
            f"maps must have pixels over dims {tuple(dims)}, got shape {tuple(maps.shape)}"
        )
    low = maps.amin(dim=tuple(dims), keepdim=True)
    high = maps.amax(dim=tuple(dims), keepdim=True)
    span = high - low
    spread = span > 0
    scaled = torch.where(spread, (maps - low) / torch.where(spread, span, 1.0), 0.0)
    return torch.where(span.isnan(), float("nan"), scaled)  # a NaN anywhere: the map is NaN
