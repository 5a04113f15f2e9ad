"""LIME faithfulness (paper 002, 4.3): refusals at their boundaries and the target's resolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.metrics.lime_faithfulness import (
    cell_means,
    lime_cell_scores,
    lime_patch_scores,
    lime_spearman,
    patch_feature_mask,
    resolve_target,
)

MASK = patch_feature_mask(8, 8, 4)  # a 2x2 grid of 4x4 squares
IMAGES = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))


class Counting(nn.Module):
    """A 3-class model (one logit per channel mean) that records the batch size of each pass."""

    def __init__(self, out_dims: int = 2) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.out_dims = out_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        logits = x.mean(dim=(2, 3)) * torch.tensor([1.0, -2.0, 3.0])
        return logits if self.out_dims == 2 else logits[:, 0]


def test_patch_feature_mask_refuses_a_zero_patch() -> None:
    with pytest.raises(ValueError, match=r"patch must be"):
        patch_feature_mask(8, 8, 0)


def with_id(value: int) -> torch.Tensor:
    mask = MASK.clone()
    mask[0, 0] = value
    return mask


@pytest.mark.parametrize(
    ("maps", "mask", "grid", "message"),
    [
        (
            [[[0.0]]],
            MASK,
            (2, 2),
            r"maps must be a floating \(B, h, w\) tensor, got <class 'list'>",
        ),
        (
            torch.rand(1, 8, 8),
            MASK.tolist(),
            (2, 2),
            r"integer \(H, W\) tensor.*got <class 'list'>",
        ),
        (torch.rand(1, 8, 8), MASK[:0], (2, 2), r"integer \(H, W\) tensor of cell ids, non-empty"),
        (torch.rand(1, 8, 8), with_id(4), (2, 2), r"must lie in \[0, 4\) .* ids from 0 to 4"),
        (torch.rand(1, 8, 8), MASK * 0, (3, 3), r"cell\(s\) \[1, 2, 3, 4, 5\] have no pixel"),
    ],
)
def test_cell_means_refusals_at_their_boundaries(maps, mask, grid, message) -> None:
    with pytest.raises(ValueError, match=message):
        cell_means(maps, mask, grid)


def test_a_one_pixel_mask_is_one_cell() -> None:
    maps = torch.rand(2, 3, 3)
    mask = torch.zeros(1, 1, dtype=torch.long)
    # resized to 1x1 (bilinear, align_corners=False): the sample at the centre pixel
    torch.testing.assert_close(cell_means(maps, mask, (1, 1)), maps[:, 1, 1, None])


def test_non_square_grid_maps_pass_through_in_row_major_order() -> None:
    mask = patch_feature_mask(8, 12, 4)  # 2 rows, 3 columns
    maps = torch.rand(2, 2, 3)
    assert torch.equal(cell_means(maps, mask, (2, 3)), maps.flatten(1))


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (MASK - 1, r"cell ids must be 0..n_cells-1, each used, got 4 distinct ids from -1 to 2"),
        (MASK * 2, r"cell ids must be 0..n_cells-1, each used, got 4 distinct ids from 0 to 6"),
    ],
)
def test_lime_cell_scores_refuses_masks_with_unused_or_negative_ids(mask, message) -> None:
    model = Counting()
    with pytest.raises(ValueError, match=message):
        lime_cell_scores(model, IMAGES, mask, n_samples=4)
    assert model.batches == []


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_samples": 0}, ValueError, r"n_samples must be"),
        ({"perturbations_per_eval": 0}, ValueError, r"perturbations_per_eval must be"),
        ({"score": "rank"}, ValueError, r"score must be 'probability' or 'logit', got 'rank'"),
        ({"weighting": "gauss"}, ValueError, r"weighting must be one of .*got 'gauss'"),
    ],
)
def test_lime_cell_scores_refuses_bad_options_before_any_pass(kwargs, error, message) -> None:
    model = Counting()
    with pytest.raises(error, match=message):
        lime_cell_scores(model, IMAGES, MASK, **{"n_samples": 4, **kwargs})
    assert model.batches == []


def test_lime_patch_scores_refuses_images_that_are_not_a_tensor() -> None:
    with pytest.raises(TypeError, match=r"images must be a torch.Tensor of shape \(B, C, H, W\)"):
        lime_patch_scores(Counting(), IMAGES.tolist(), patch=4)


def test_no_target_means_each_images_predicted_class() -> None:
    model = Counting()
    images = IMAGES.clone()
    images[1, 1] = -1.0  # make the images disagree so an image's class must be its own
    predicted = (images.mean(dim=(2, 3)) * torch.tensor([1.0, -2.0, 3.0])).argmax(dim=1)
    assert len(set(predicted.tolist())) > 1
    assert torch.equal(resolve_target(model, images, None), predicted)
    assert model.batches == [3]
    scores = lime_cell_scores(model, images, MASK, n_samples=6)
    assert torch.equal(scores, lime_cell_scores(model, images, MASK, predicted, n_samples=6))


def test_a_given_target_is_checked_on_one_image() -> None:
    model = Counting()
    assert torch.equal(resolve_target(model, IMAGES, 2), torch.full((3,), 2))
    assert model.batches == [1]


@pytest.mark.parametrize("target", [None, 1])
def test_resolve_target_refuses_a_model_without_class_scores(target) -> None:
    with pytest.raises(TypeError, match=r"class scores of shape \(B, n_classes\)"):
        resolve_target(Counting(out_dims=1), IMAGES, target)


def test_resolve_target_refuses_a_two_dimensional_target() -> None:
    model = Counting()
    with pytest.raises(ValueError, match=r"integer tensor of 1 or 3 class indices"):
        resolve_target(model, IMAGES, torch.tensor([[0], [1], [2]]))
    assert model.batches == []


MAPS = torch.rand(3, 8, 8)
LIME = torch.rand(3, 4)


@pytest.mark.parametrize(
    ("images", "maps", "scores", "error", "message"),
    [
        (IMAGES.tolist(), MAPS, LIME, TypeError, r"images must be a torch.Tensor"),
        (
            IMAGES,
            MAPS[:, None].expand(3, 2, 8, 8),
            LIME,
            ValueError,
            r"\(B, 1, h, w\), got \(3, 2,",
        ),
        (IMAGES, MAPS[0], LIME, ValueError, r"explanation_maps must be a \(B, h, w\) tensor"),
        (IMAGES, MAPS.tolist(), LIME, ValueError, r"explanation_maps must be a \(B, h, w\) tensor"),
        (IMAGES, MAPS[:2], LIME, ValueError, r"2 explanation maps for 3 images"),
        (
            IMAGES,
            MAPS,
            LIME[:, :3],
            ValueError,
            r"lime_scores has shape \(3, 3\), expected \(3, 4\)",
        ),
    ],
)
def test_lime_spearman_refuses_bad_input_before_any_pass(images, maps, scores, error, message):
    model = Counting()
    with pytest.raises(error, match=message):
        lime_spearman(model, images, maps, patch=4, lime_scores=scores)
    assert model.batches == []


def test_the_fit_covers_every_image_when_it_runs_one_image_at_a_time() -> None:
    from torchlap.metrics.lime_faithfulness import _weighted_fit

    # 2 samples of 2**21 + 1 cells: the design is too large for more than one image per chunk,
    # and there are more images (3) than samples
    patterns = torch.zeros(2, 2**21 + 1, dtype=torch.bool)
    patterns[0, ::2] = True
    outputs = torch.tensor([[1.0, 3.0], [2.0, 0.0], [5.0, 5.0]])
    fitted = _weighted_fit(patterns, outputs, torch.ones(3, 2))
    assert fitted.shape == (3, 2**21 + 1)
    for image in range(3):
        alone = _weighted_fit(patterns, outputs[image : image + 1], torch.ones(1, 2))
        torch.testing.assert_close(fitted[image : image + 1], alone)
