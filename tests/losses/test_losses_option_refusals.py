"""Options of the injection losses refused at their boundary, each naming the option and what
is accepted (found by mutation testing: deleting each of these checks left every test green)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.losses import (
    ConceptSets,
    InjectionLoss,
    enable_discriminative_scorers,
    expert_supervision_loss,
    ratio_count,
)


def test_enable_discriminative_scorers_refuses_a_model_without_lap_layers() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(ValueError, match="the model has no LAP layer; put some in with"):
        enable_discriminative_scorers(model)


@pytest.mark.parametrize("pool", ["mean", "MAX", "", None])
def test_injection_loss_refuses_an_unknown_concordance_pool(pool) -> None:
    with pytest.raises((ValueError, TypeError), match="concordance_pool") as info:
        InjectionLoss(ConceptSets.default(2, 2), concordance_pool=pool)
    assert "max" in str(info.value) and "avg" in str(info.value)  # what is accepted


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_injection_loss_takes_both_concordance_pools(pool: str) -> None:
    assert InjectionLoss(ConceptSets.default(2, 2), concordance_pool=pool).concordance_pool == pool


@pytest.mark.parametrize("ratio", [1.0000001, 1.2, 1.5])
def test_ratio_count_refuses_a_ratio_above_one(ratio: float) -> None:
    """A fraction of the pixels is at most 1 (1 itself is every pixel)."""
    assert ratio_count(1.0, 10) == 10
    with pytest.raises(ValueError, match=r"ratio must be a fraction of the pixels in \[0, 1\]"):
        ratio_count(ratio, 10)


def test_expert_loss_refuses_an_unknown_positive_ranking() -> None:
    probs = torch.full((1, 1, 4, 4), 0.5)
    args = (probs, torch.ones(1, 4, 4), torch.tensor([[True]]), torch.tensor([True]))
    with pytest.raises(ValueError, match="positive_ranking") as info:
        expert_supervision_loss(*args, positive_ranking="scores")
    assert "'concepts', 'selector'" in str(info.value)


@pytest.mark.parametrize("weights", [[("cross_entropy", 1.0)], "cross_entropy=1", 1.0])
def test_injection_loss_refuses_weights_that_are_not_a_dict(weights) -> None:
    with pytest.raises(TypeError, match=r"weights must be a dict \{term: float\}"):
        InjectionLoss(ConceptSets.default(2, 2), weights=weights)


@pytest.mark.parametrize("value", [torch.rand(2, 2, 4, 4), {"concepts": torch.rand(2, 2, 4, 4)}])
def test_injection_loss_refuses_maps_that_are_not_lap_maps(value) -> None:
    """A bare tensor (or a dict) where ``attention_maps`` gives a ``LapMaps``: named, not an
    ``AttributeError`` from inside the loss."""
    loss = InjectionLoss(ConceptSets.default(2, 2))
    with pytest.raises(TypeError, match=r"maps\['layer'\] must be a LapMaps, got "):
        loss({"layer": value}, torch.tensor([0, 1]))
