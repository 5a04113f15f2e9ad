"""Strict comparisons at the boundary: a probability equal to the classification threshold is
negative, and an unchanged confidence is no Increase (paper 003: sign(0) = 0)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from torchlap.metrics import binary_classification_metrics, drop_increase


@pytest.mark.parametrize("threshold", [0.25, 0.5, 0.75])
def test_binary_probability_equal_to_threshold_is_negative(threshold: float) -> None:
    """A (B,) probability exactly at ``threshold`` is predicted negative ("above" is strict)."""
    probabilities = torch.tensor([threshold, threshold, 0.0, 1.0, threshold, 0.125, 0.875])
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 1])
    predicted = [1 if float(p) > threshold else 0 for p in probabilities]
    correct = [int(p == int(y)) for p, y in zip(predicted, labels, strict=True)]
    positives = [c for c, y in zip(correct, labels, strict=True) if int(y) == 1]
    negatives = [c for c, y in zip(correct, labels, strict=True) if int(y) == 0]
    results = binary_classification_metrics(probabilities, labels, threshold)
    assert results["accuracy"].value == pytest.approx(sum(correct) / len(correct))
    assert results["sensitivity"].value == pytest.approx(sum(positives) / len(positives))
    assert results["specificity"].value == pytest.approx(sum(negatives) / len(negatives))


class _ConstantLogits(nn.Module):
    """A classifier that ignores its input: every perturbed image keeps its confidence."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.arange(num_classes, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.logits.expand(x.shape[0], -1)


@pytest.mark.parametrize("ties", ["random", "index"])
@pytest.mark.parametrize("fraction", [0.15, 1.0])
def test_unchanged_confidence_is_neither_drop_nor_increase(ties: str, fraction: float) -> None:
    """Ψ(I ⊙ T) = Ψ(I) counts as no increase (sign(0) = 0) and no drop."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(5, 2, 4, 4, generator=generator, dtype=torch.float64)
    maps = torch.rand(5, 4, 4, generator=generator, dtype=torch.float64)
    result = drop_increase(_ConstantLogits(), images, maps, fraction=fraction, ties=ties)
    assert result["increase_pct"].value == 0.0
    assert result["drop_pct"].value == 0.0
    torch.testing.assert_close(
        result["increase_pct"].per_sample, torch.zeros(5, dtype=torch.float64)
    )
