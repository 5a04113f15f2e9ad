"""Shared pieces of the evaluate tests: a synthetic split and a recorder of stability's noise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchlap.metrics.noise_stability as noise_stability
from torchlap.evaluate.core import EvalData


def split(
    n: int, seed: int, size: int = 12, boxes: list[tuple[int, int, int, int]] | None = None
) -> EvalData:
    """``n`` random 3-channel ``size`` x ``size`` images of 3 classes. Image i holds the box
    region ``boxes[i]`` (top, left, height, width) when there is one, the others none; by
    default every image holds the same box (rows 2-7, columns 3-8 of a 12-pixel image)."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    boxes = [(2, 3, 6, 6)] * n if boxes is None else boxes
    for i, (top, left, height, width) in enumerate(boxes):
        masks[i, top : top + height, left : left + width] = True
    return EvalData(
        images=torch.rand(n, 3, size, size, generator=generator),
        labels=torch.randint(0, 3, (n,), generator=generator),
        masks=masks,
        has_region=masks.flatten(1).any(dim=1),
        classes=["a", "b", "c"],
        name="synthetic",
    )


def recording(patch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Record every noisy batch ``stability`` draws (``noise_stability.salt_and_pepper``)."""
    noised: list[torch.Tensor] = []
    salt_and_pepper = noise_stability.salt_and_pepper

    def recorded(*args, **kwargs):
        out = salt_and_pepper(*args, **kwargs)
        noised.append(out.clone())
        return out

    patch.setattr(noise_stability, "salt_and_pepper", recorded)
    return noised


def channel_model() -> nn.Module:
    """Logit c = mean of channel c (after a ReLU): Grad-CAM of class c highlights the pixels
    bright in channel c, so keeping them keeps class c (a model whose maps and keep-k% depend on
    the class)."""
    conv, linear = nn.Conv2d(3, 3, 1), nn.Linear(3, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.zero_()
        linear.weight.copy_(torch.eye(3))
        linear.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear).eval()
