"""Input checks of the LIME faithfulness metric (paper 002, 4.3): refusals before any LIME."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from torchlap.metrics.lime_faithfulness import (
    cell_means,
    lime_cell_scores,
    mean_spearman,
    patch_feature_mask,
    spearman_correlation,
)

NAN, INF = float("nan"), float("inf")


def test_a_row_with_a_non_finite_value_has_no_correlation_and_is_excluded() -> None:
    maps = torch.tensor([[0.1, NAN, 0.3, 0.2], [0.1, INF, 0.3, 0.2], [0.4, 0.1, 0.3, 0.2]])
    lime = torch.tensor([[1.0, 2, 3, 4], [1.0, 2, 3, 4], [4.0, 1, 3, 2]])
    per_row = spearman_correlation(maps, lime)
    # scipy's default nan_policy="propagate": a NaN in a row gives NaN (before: 0.6404)
    assert math.isnan(spearmanr(maps[0].numpy(), lime[0].numpy()).statistic)
    assert torch.isnan(per_row[:2]).all()
    assert per_row[2].item() == pytest.approx(1.0)
    # the NaN may sit on either side
    assert torch.isnan(spearman_correlation(lime[:1], maps[:1])).all()
    result = mean_spearman(maps, lime)
    assert (result.n, result.n_excluded) == (1, 2) and result.value == pytest.approx(1.0)
    alone = mean_spearman(maps[:1], lime[:1])
    assert (alone.n, alone.n_excluded) == (0, 1) and math.isnan(alone.value)


def test_finite_rows_still_match_scipy() -> None:
    a, b = torch.randn(4, 9, dtype=torch.float64), torch.randn(4, 9, dtype=torch.float64)
    ours = spearman_correlation(a, b)
    for row in range(4):
        expected = spearmanr(a[row].numpy(), b[row].numpy()).statistic
        assert ours[row].item() == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------------------- cell_means

MASK = patch_feature_mask(8, 8, 4)  # a 2x2 grid of 4x4 squares


@pytest.mark.parametrize(
    ("maps", "mask", "grid", "error", "message"),
    [
        (torch.rand(2, 8, 8), MASK, (3, 3), ValueError, r"every cell id 0..8 of the 3x3 grid"),
        (torch.rand(2, 8, 8), MASK, (1, 1), ValueError, r"cell ids must lie in \[0, 1\)"),
        (torch.rand(2, 2, 2), MASK * 0, (2, 2), ValueError, r"cell\(s\) \[1, 2, 3\] have no"),
        (torch.rand(8, 8), MASK, (2, 2), ValueError, r"maps must be a floating \(B, h, w\)"),
        (torch.ones(2, 8, 8, dtype=torch.long), MASK, (2, 2), ValueError, r"floating"),
        (torch.rand(2, 8, 8), MASK.float(), (2, 2), ValueError, r"integer \(H, W\) tensor"),
        (torch.rand(2, 8, 8), MASK > 0, (2, 2), ValueError, r"integer \(H, W\) tensor"),
        (torch.rand(2, 8, 8), MASK[None], (2, 2), ValueError, r"integer \(H, W\) tensor"),
        (torch.rand(2, 8, 8), MASK - 1, (2, 2), ValueError, r"ids from -1 to 2"),
        (torch.rand(2, 8, 8), MASK, (0, 0), ValueError, r"grid must be \(rows, cols\), two"),
        (torch.rand(2, 8, 8), MASK, (-1, 2), ValueError, r"two ints >= 1, got \(-1, 2\)"),
        (torch.rand(2, 8, 8), MASK, (2.0, 2), ValueError, r"two ints >= 1"),
        (torch.rand(2, 8, 8), MASK, 4, ValueError, r"two ints >= 1, got 4"),
    ],
)
def test_cell_means_refuses_inputs_it_cannot_average(maps, mask, grid, error, message) -> None:
    with pytest.raises(error, match=message):
        cell_means(maps, mask, grid)


def test_cell_means_still_averages_and_passes_grid_maps_through() -> None:
    maps = torch.rand(2, 8, 8)
    expected = maps.unfold(1, 4, 4).unfold(2, 4, 4).mean(dim=(-1, -2)).flatten(1)
    torch.testing.assert_close(cell_means(maps, MASK, (2, 2)), expected)
    grid_maps = torch.rand(2, 2, 2)
    assert torch.equal(cell_means(grid_maps, MASK, [2, 2]), grid_maps.flatten(1))


# -------------------------------------------------------------------------- lime_cell_scores


class NoLime(nn.Module):
    """A 3-class model that counts its passes; more than ``allowed`` means LIME ran."""

    def __init__(self, allowed: int = 0) -> None:
        super().__init__()
        self.allowed, self.passes = allowed, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes += 1
        if self.passes > self.allowed:
            raise AssertionError("a model pass that the checks should have prevented")
        return x.mean(dim=(2, 3))  # (B, 3): one logit per channel


IMAGES = torch.rand(2, 3, 8, 8)


@pytest.mark.parametrize(
    ("images", "kwargs", "error", "message"),
    [
        (IMAGES[:0], {}, ValueError, r"images must be non-empty"),
        (IMAGES * NAN, {}, ValueError, r"images \[0, 1\] .* NaN or infinite .* only finite"),
        (IMAGES[0], {}, ValueError, r"floating tensor of shape \(B, C, H, W\)"),
        (IMAGES, {"baseline": NAN}, ValueError, r"baseline must be a finite number .*got nan"),
        (IMAGES, {"baseline": "x"}, TypeError, r"baseline must be a finite number.*got 'x'"),
        (IMAGES, {"baseline": True}, TypeError, r"baseline must be a finite number"),
        (IMAGES, {"seed": -1}, ValueError, r"seed must be an int from 0 to 4294967295, got -1"),
        (IMAGES, {"seed": 2**70}, ValueError, r"seed must be an int from 0 to 4294967295"),
        (IMAGES, {"seed": 1.5}, TypeError, r"seed must be an int from 0"),
        (IMAGES, {"target": True}, ValueError, r"target must be None, an int or an integer"),
        (IMAGES, {"target": torch.tensor([0.0, 1])}, ValueError, r"integer tensor of 1 or 2"),
    ],
)
def test_lime_cell_scores_refuses_bad_input_before_any_pass(images, kwargs, error, message) -> None:
    model = NoLime()
    with pytest.raises(error, match=message):
        lime_cell_scores(model, images, MASK, n_samples=4, **kwargs)
    assert model.passes == 0


@pytest.mark.parametrize(
    ("target", "got"), [(-1, -1), (3, 3), (torch.tensor([0, 5]), 5), (torch.tensor([-2]), -2)]
)
def test_lime_cell_scores_refuses_targets_outside_the_classes_before_lime(target, got) -> None:
    model = NoLime(allowed=1)  # the one forward that reads the model's number of classes
    with pytest.raises(ValueError, match=rf"class indices in \[0, 3\) .*output\), got {got}"):
        lime_cell_scores(model, IMAGES, MASK, target=target, n_samples=4)
    assert model.passes == 1


def test_lime_cell_scores_accepts_the_last_class_and_the_largest_seed() -> None:
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3))
    scores = lime_cell_scores(model, IMAGES, MASK, target=2, n_samples=8, seed=2**32 - 1)
    assert scores.shape == (2, 4) and bool(torch.isfinite(scores).all())
