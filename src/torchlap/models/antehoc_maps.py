"""The maps and layers of the ante-hoc model of paper 004 (:mod:`torchlap.models.antehoc`):
soft attention maps, Eq. 1's interpretation map, and the choice of the ``eta`` layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlap._checks import check_size_pair

__all__ = ["interpretation_from_maps", "select_conv_layers", "soft_attention_map"]


def soft_attention_map(activation: Tensor, size: Sequence[int] | None = None) -> Tensor:
    """The soft attention map of one layer's activation (B, C, h, w): (B, 1, H, W).

    Channel mean, softmax over the ``h*w`` positions divided by its maximum (values in (0, 1],
    peak 1), bilinear resize to ``size`` (default: keep h x w; else two ints >= 1). See
    :mod:`torchlap.models.antehoc`.
    """
    if not isinstance(activation, Tensor) or activation.dim() != 4 or 0 in activation.shape[2:]:
        shape = tuple(activation.shape) if isinstance(activation, Tensor) else type(activation)
        raise ValueError(f"activation must be a (B, C, h, w) tensor, h, w >= 1, got {shape}")
    if not activation.is_floating_point():
        raise TypeError(f"activation must be a floating tensor, got dtype {activation.dtype}")
    if size is not None:
        check_size_pair(size, "size")
    batch, _, height, width = activation.shape
    mean = activation.float().mean(dim=1).reshape(batch, height * width)
    soft = torch.softmax(mean, dim=1)
    sam = (soft / soft.amax(dim=1, keepdim=True)).reshape(batch, 1, height, width)
    if size is not None and tuple(size) != (height, width):
        sam = F.interpolate(sam, size=tuple(size), mode="bilinear", align_corners=False)
    return sam.to(activation.dtype)


def interpretation_from_maps(sams: Tensor, weight_maps: Tensor) -> Tensor:
    """Eq. 1: ``I_map = sum_n WM_n * SAM_n`` for (B, eta, H, W) inputs: (B, 1, H, W)."""
    if sams.shape != weight_maps.shape or sams.dim() != 4:
        raise ValueError(
            f"sams and weight_maps must both be (B, eta, H, W), got {tuple(sams.shape)} and "
            f"{tuple(weight_maps.shape)}"
        )
    return (weight_maps * sams).sum(dim=1, keepdim=True)


def select_conv_layers(backbone: nn.Module, eta: int) -> list[str]:
    """Names of ``eta`` convolution layers of ``backbone`` at fixed intervals, first and last
    included: indices ``round(i (L - 1) / (eta - 1))`` of its ``L`` ``nn.Conv2d`` modules in
    registration order (``eta = 1``: the last)."""
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
    if isinstance(eta, bool) or not isinstance(eta, int):
        raise TypeError(f"eta must be a positive int, got {eta!r}")
    if eta < 1:
        raise ValueError(f"eta must be >= 1, got {eta}")
    convs = [name for name, m in backbone.named_modules() if isinstance(m, nn.Conv2d) and name]
    if eta > len(convs):
        raise ValueError(
            f"eta={eta} is larger than the number of convolutional layers of the backbone "
            f"({len(convs)}); use eta <= {len(convs)} or pass layer_names"
        )
    if eta == 1:
        return [convs[-1]]
    step = (len(convs) - 1) / (eta - 1)
    return [convs[int(i * step + 0.5)] for i in range(eta)]
