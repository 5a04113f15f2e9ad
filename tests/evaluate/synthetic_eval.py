"""Shared pieces of the evaluate tests: a synthetic split and a recorder of stability's noise."""

from __future__ import annotations

import pytest
import torch

import torchlap.metrics.noise_stability as noise_stability
from torchlap.evaluate.core import EvalData


def split(n: int, seed: int) -> EvalData:
    """``n`` random 3-channel 12x12 images of 3 classes, each with the same box region."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, 12, 12, dtype=torch.bool)
    masks[:, 2:8, 3:9] = True
    return EvalData(
        images=torch.rand(n, 3, 12, 12, generator=generator),
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
