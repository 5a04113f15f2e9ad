"""LAP All (paper 000, Algorithm 1) when probabilities sit exactly at 0.5 ("r >= 0.5",
"p >= 0.5"), and the concept-head choice for a class whose only head is the common one."""

from types import SimpleNamespace

import pytest
import torch
from explainer_references import reference_lap_all

from torchlap.explainers.lap import lap_all, select_lap_map


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lap_all_counts_exactly_half_as_active(seed: int) -> None:
    """Maps drawn from {0, 0.25, 0.5, 0.75, 1}: pixels at exactly 0.5 are active (>= 0.5)."""
    generator = torch.Generator().manual_seed(seed)
    sizes = [(8, 8), (4, 4), (2, 2)]
    maps = [torch.randint(0, 5, (2, *size), generator=generator).float() / 4 for size in sizes]
    assert any(bool((m == 0.5).any()) for m in maps[:-1])
    torch.testing.assert_close(lap_all(maps, decay=0.8), reference_lap_all(maps, decay=0.8))


def test_lap_all_single_window_at_exactly_half() -> None:
    """Hand case: r = 1 over a window [0.5, 0.25; 0, 0]: only the 0.5 pixel keeps max(r, p d)."""
    coarse = torch.tensor([[[1.0]]])
    fine = torch.tensor([[[0.5, 0.25], [0.0, 0.0]]])
    expected = torch.tensor([[[1.0, 0.25 * 0.8], [0.0, 0.0]]])
    torch.testing.assert_close(lap_all([fine, coarse], decay=0.8), expected)


def test_class_whose_only_head_is_common_keeps_that_head() -> None:
    """Heads 0, 1 own to classes 0, 1; head 2 is in every class: class 2 still gets head 2."""
    generator = torch.Generator().manual_seed(0)
    concepts = torch.rand(3, 3, 4, 4, generator=generator)
    score = torch.rand(3, 1, 4, 4, generator=generator)
    maps = SimpleNamespace(concepts=concepts, score=score)
    sets = {0: [0, 2], 1: [1, 2], 2: [2]}
    target = torch.tensor([0, 1, 2])
    chosen = select_lap_map(maps, target, 3, None, sets, include_common=False)
    torch.testing.assert_close(chosen[0], concepts[0, 0])
    torch.testing.assert_close(chosen[1], concepts[1, 1])
    torch.testing.assert_close(chosen[2], concepts[2, 2])
    with_common = select_lap_map(maps, target, 3, None, sets, include_common=True)
    torch.testing.assert_close(with_common[0], torch.maximum(concepts[0, 0], concepts[0, 2]))
    torch.testing.assert_close(with_common[2], concepts[2, 2])
