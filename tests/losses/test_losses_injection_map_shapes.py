"""``InjectionLoss`` names the layer whose maps are malformed: a discriminative map of another
shape than its concept map was refused as ``selector must be a tensor of the same shape as
probs`` (an argument the caller never passed), after the scorer's loss was computed; a concept
map that is not a tensor raised ``AttributeError``."""

from __future__ import annotations

import pytest
import torch

from torchlap.layers import LapMaps
from torchlap.losses import ConceptSets, InjectionLoss

LABELS = torch.tensor([0, 1])


def test_a_discriminative_map_of_another_shape_is_refused_naming_the_layer() -> None:
    concepts = torch.rand(2, 1, 8, 8)
    maps = {"layer4": LapMaps(concepts, concepts, torch.rand(2, 1, 4, 4))}
    loss = InjectionLoss(ConceptSets.default(2, 1))
    with pytest.raises(ValueError, match=r"maps\['layer4'\].discriminative must have the shape"):
        loss(maps, LABELS)


def test_concepts_that_are_not_a_4d_tensor_are_refused() -> None:
    loss = InjectionLoss(ConceptSets.default(2, 1), use_discriminative=False)
    for concepts in ([[0.5]], torch.rand(2, 8, 8)):
        with pytest.raises(ValueError, match=r"maps\['lap'\].concepts must be a tensor \(B, h"):
            loss({"lap": LapMaps(concepts, None, None)}, LABELS)
