"""The losses on 16-bit maps (autocast): summed in float32, the value of the float32 maps.

A float16 sum of a few thousand clamped ``ln p`` (13.8 each) passes float16's 65504: the loss
was -inf, and NaN once a masked-out sample multiplied it by 0.
"""

from __future__ import annotations

import pytest
import torch

from torchlap.layers import LapMaps
from torchlap.losses import (
    ConceptSets,
    InjectionLoss,
    concept_discrimination_loss,
    concordance_loss,
    discriminative_scorer_loss,
    expert_supervision_loss,
)

PRESENT = torch.tensor([[True], [False]])


def _saturated_maps(dtype: torch.dtype) -> torch.Tensor:
    """(2, 1, 80, 80): sample 0 (positive) at 0 everywhere, sample 1 (negative) at 1: every
    selected pixel hits the log clamp, 6400 pixels per map."""
    maps = torch.zeros(2, 1, 80, 80)
    maps[1] = 1.0
    return maps.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_discrimination_on_16_bit_maps_equals_float32(dtype: torch.dtype) -> None:
    maps = _saturated_maps(dtype)
    expected = concept_discrimination_loss(maps.float(), PRESENT, min_ar=1.0, max_ar=1.0, iar=1.0)
    got = concept_discrimination_loss(maps, PRESENT, min_ar=1.0, max_ar=1.0, iar=1.0)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_expert_and_concordance_on_16_bit_maps_equal_float32(dtype: torch.dtype) -> None:
    maps = _saturated_maps(dtype)
    regions = torch.zeros(2, 80, 80)
    regions[0] = 1.0  # the whole image: term 1 on 3200 pixels at the clamp
    for kwargs in ({"negative_pixels": "all"}, {"iar": 1.0}):
        expected = expert_supervision_loss(maps.float(), regions, PRESENT, PRESENT[:, 0], **kwargs)
        got = expert_supervision_loss(maps, regions, PRESENT, PRESENT[:, 0], **kwargs)
        torch.testing.assert_close(got, expected)
    coarse = (1 - maps[:, :, :40, :40].float()).to(dtype)
    expected = concordance_loss([maps.float(), coarse.float()], threshold=0.0)
    torch.testing.assert_close(concordance_loss([maps, coarse], threshold=0.0), expected)
    expected = discriminative_scorer_loss(maps.float(), PRESENT)
    torch.testing.assert_close(discriminative_scorer_loss(maps, PRESENT), expected)


def test_injection_loss_on_float16_maps_is_finite_and_trains() -> None:
    concepts = _saturated_maps(torch.float16).requires_grad_(True)
    maps = {"lap": LapMaps(concepts, concepts.amax(1, keepdim=True), None, (80, 80))}
    loss = InjectionLoss(ConceptSets.default(2, 1), 1.0, 1.0, 1.0, use_discriminative=False)
    out = loss(maps, torch.tensor([1, 0]))
    assert torch.isfinite(out["injection"])
    wide = concepts.float()
    reference = loss({"lap": LapMaps(wide, wide, None)}, torch.tensor([1, 0]))
    torch.testing.assert_close(out["injection"], reference["injection"])
    out["injection"].backward()
    assert torch.isfinite(concepts.grad).all()
