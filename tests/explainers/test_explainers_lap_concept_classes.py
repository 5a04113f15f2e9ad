"""Concept sets may name classes the model does not predict (a run's sets for more classes
than its head outputs): those entries are skipped, from the first class past the model's
last (``num_classes`` itself) on, and the predicted classes keep their heads."""

from __future__ import annotations

import pytest
import torch

from torchlap.explainers.lap import select_lap_map
from torchlap.layers.lap import LapMaps


@pytest.mark.parametrize("extra", [2, 3])
def test_a_class_past_the_models_last_is_skipped(extra: int) -> None:
    generator = torch.Generator().manual_seed(0)
    maps = LapMaps(torch.rand(3, 4, 5, 5, generator=generator), torch.rand(3, 1, 5, 5))
    target = torch.tensor([1, 0, 1])
    sets = {0: [0], 1: [1], extra: [2, 3]}  # two classes predicted; class `extra` is not
    got = select_lap_map(maps, target, 2, concept_sets=sets)
    expected = torch.stack([maps.concepts[i, int(c)] for i, c in enumerate(target)])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
