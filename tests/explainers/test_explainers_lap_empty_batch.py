"""The LAP map choice on an empty batch: no image, no class index to range-check, so
``select_lap_map`` gives an empty ``(0, H, W)`` map by every head choice (the range check reads
the smallest and largest class, which an empty target does not have: it is skipped, not
failed). A target with images the maps do not have is still refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from torchlap.explainers.lap import select_lap_map


def empty_maps(heads: int) -> SimpleNamespace:
    return SimpleNamespace(concepts=torch.rand(0, heads, 4, 5), score=torch.rand(0, 1, 4, 5))


@pytest.mark.parametrize(
    ("heads", "concept_sets"),
    [(3, None), (1, None), (2, None), (3, {0: [0, 2], 1: [1, 2], 2: [2]})],
    ids=["one head per class", "one head", "score", "concept sets"],
)
def test_an_empty_batch_gives_an_empty_map(heads: int, concept_sets: object) -> None:
    target = torch.zeros(0, dtype=torch.int64)
    got = select_lap_map(empty_maps(heads), target, 3, concept_sets=concept_sets)
    assert got.shape == (0, 4, 5)
    assert got.dtype == torch.float32


def test_an_empty_batch_refuses_a_target_of_one_image() -> None:
    with pytest.raises(ValueError, match=r"integer tensor of 0 class indices .* got shape \(1,\)"):
        select_lap_map(empty_maps(3), torch.tensor([0]), 3)
