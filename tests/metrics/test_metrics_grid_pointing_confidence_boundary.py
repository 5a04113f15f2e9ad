"""The grid pointing game's confident images: correct and with probability of the label
``>= min_confidence`` (README: "cells classified correctly with p >= 0.9"), at the boundary."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from torchlap.data.grid import confident_images


class _FixedLogits(nn.Module):
    """Returns the given logits row per image, whatever the image."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        return self.logits[: x.shape[0]] + 0 * self.anchor


@pytest.mark.parametrize("classes", [1, 2])
def test_a_probability_equal_to_the_minimum_is_confident(classes: int) -> None:
    """p = 0.5 exactly (sigmoid(0), softmax of equal logits) counts at min_confidence 0.5."""
    logits = torch.zeros(3, classes)
    if classes == 2:
        logits[2] = torch.tensor([0.0, 1.0])  # label 0 with p < 0.5: wrong and not confident
    labels = torch.tensor([0, 0, 0])  # equal logits: argmax picks class 0, p = 0.5
    eligible, confidence = confident_images(
        _FixedLogits(logits), torch.rand(3, 1, 2, 2), labels, 0.5
    )
    assert confidence[:2].tolist() == [0.5, 0.5]
    assert eligible.tolist() == [True, True, classes == 1]


def test_a_confident_but_wrong_image_is_not_eligible() -> None:
    """The label's probability above the minimum is not enough: the prediction must be right."""
    p = torch.tensor([[0.4, 0.6, 0.0], [0.6, 0.4, 0.0], [0.2, 0.3, 0.5]])
    logits = torch.log(p.clamp_min(1e-12))
    labels = torch.tensor([0, 0, 1])  # right only for image 1
    eligible, confidence = confident_images(
        _FixedLogits(logits), torch.rand(3, 1, 2, 2), labels, 0.25
    )
    torch.testing.assert_close(confidence, torch.tensor([0.4, 0.6, 0.3]))
    assert eligible.tolist() == [False, True, False]


def test_a_one_logit_model_scores_the_sigmoid_for_class_one() -> None:
    """One logit z: p(class 1) = sigmoid(z), p(class 0) = 1 - sigmoid(z)."""
    logits = torch.tensor([[2.0], [2.0], [-1.0]])
    labels = torch.tensor([1, 0, 0])
    eligible, confidence = confident_images(
        _FixedLogits(logits), torch.rand(3, 1, 2, 2), labels, 0.6
    )
    s2, s1 = 1 / (1 + torch.exp(torch.tensor(-2.0))), 1 / (1 + torch.exp(torch.tensor(1.0)))
    torch.testing.assert_close(confidence, torch.stack([s2, 1 - s2, 1 - s1]))
    assert eligible.tolist() == [True, False, True]
