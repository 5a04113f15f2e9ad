"""Grid pointing game: the metric against a slow reference, hand-built grids, the builder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.data.grid import (
    build_grid_set,
    build_grids,
    confident_images,
    resolve_grid_shape,
    tile_grid,
)
from torchlap.metrics.grid_pointing import (
    cell_masks,
    grid_pointing_game,
    grid_pointing_scores,
    grid_pointing_summary,
)


def slow_share(m: torch.Tensor, cell: int, rows: int, cols: int) -> float:
    """Positive attribution inside the cell over all positive attribution, pixel by pixel."""
    height, width = m.shape
    inside = total = 0.0
    for y in range(height):
        for x in range(width):
            value = max(float(m[y, x]), 0.0)
            total += value
            if (y // (height // rows)) * cols + (x // (width // cols)) == cell:
                inside += value
    return inside / total if total > 0 else 1.0 / (rows * cols)


def test_known_answer_on_a_hand_built_map():
    m = torch.zeros(8, 8)
    m[:4, :4] = 3.0 / 16  # cell 0 holds 3
    m[:4, 4:] = 1.0 / 16  # cell 1 holds 1
    m[4:, :4] = -5.0  # negative attribution is ignored
    maps = m.expand(4, 8, 8)
    scores, zero = grid_pointing_scores(maps, torch.tensor([0, 1, 2, 3]), (2, 2))
    torch.testing.assert_close(scores, torch.tensor([0.75, 0.25, 0.0, 0.0], dtype=torch.float64))
    assert not zero.any()


def test_matches_the_slow_reference_and_defines_zero_maps():
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(6, 6, 9, generator=generator)
    maps[4] = 0.0
    maps[5] = -1.0
    cells = torch.tensor([0, 1, 2, 3, 4, 5])
    scores, zero = grid_pointing_scores(maps, cells, (2, 3))
    expected = torch.tensor([slow_share(maps[i], int(cells[i]), 2, 3) for i in range(6)])
    torch.testing.assert_close(scores, expected.double())
    assert zero.tolist() == [False] * 4 + [True, True]
    result = grid_pointing_game(maps, cells, (2, 3))
    assert result.higher_is_better and result.n == 6
    assert result.value == pytest.approx(float(expected.mean()))
    summary = grid_pointing_summary(scores, zero, (2, 3))
    assert summary["n_zero_maps"] == 2 and summary["chance"] == pytest.approx(1 / 6)
    assert summary["distribution"]["min"] <= summary["distribution"]["median"]


def test_cell_masks_partition_the_image():
    masks = cell_masks((2, 2), (4, 6))
    assert masks.shape == (4, 4, 6) and torch.equal(
        masks.sum(0), torch.ones(4, 6, dtype=torch.long)
    )
    assert masks[1, 0, 3] and masks[2, 2, 0]
    with pytest.raises(ValueError, match="equal cells"):
        cell_masks((2, 2), (5, 6))


def test_bad_inputs_are_refused():
    maps = torch.rand(2, 4, 4)
    with pytest.raises(ValueError, match="cell indices"):
        grid_pointing_scores(maps, torch.tensor([0, 4]), (2, 2))
    with pytest.raises(ValueError, match="grid shape"):
        grid_pointing_scores(maps, torch.tensor([0, 1]), (1, 1))
    # an all-NaN map scored chance (nan_to_num), an infinite one NaN
    for bad in (float("nan"), float("inf")):
        broken = maps.clone()
        broken[1] = bad
        with pytest.raises(ValueError, match=r"maps \[1\] .*NaN or infinite"):
            grid_pointing_game(broken, torch.tensor([0, 1]), (2, 2))
    with pytest.raises(ValueError, match="distinct classes"):
        resolve_grid_shape("2x2", 3)
    assert resolve_grid_shape("auto", 2) == (1, 2)
    assert resolve_grid_shape("auto", 10) == (2, 2)
    assert resolve_grid_shape("3x1", 5) == (3, 1)


def class_images(n_per_class: int, num_classes: int, size: int = 4):
    """Image i is constant, equal to (its class + 1) / 10: a cell's class is readable."""
    labels = torch.arange(num_classes).repeat(n_per_class)
    images = ((labels.float() + 1) / 10).view(-1, 1, 1, 1).expand(-1, 1, size, size).clone()
    return images, labels


def test_builder_is_deterministic_distinct_and_tiles_the_sources():
    images, labels = class_images(3, 5)
    eligible = torch.ones_like(labels, dtype=torch.bool)
    eligible[labels == 4] = False  # class 4 never appears
    grids = build_grids(images, labels, eligible, (2, 2), n_grids=6, seed=7)
    again = build_grids(images, labels, eligible, (2, 2), n_grids=6, seed=7)
    assert torch.equal(grids.images, again.images) and torch.equal(
        grids.cell_sources, again.cell_sources
    )
    assert grids.images.shape == (6, 1, 8, 8)
    for g in range(6):
        classes = grids.cell_classes[g].tolist()
        assert len(set(classes)) == 4 and 4 not in classes
        for cell, source in enumerate(grids.cell_sources[g].tolist()):
            assert labels[source] == classes[cell] and eligible[source]
            y, x = divmod(cell, 2)
            assert torch.equal(
                grids.images[g, :, 4 * y : 4 * y + 4, 4 * x : 4 * x + 4], images[source]
            )
    other = build_grids(images, labels, eligible, (2, 2), n_grids=6, seed=8)
    assert not torch.equal(other.cell_classes, grids.cell_classes)
    with pytest.raises(ValueError, match="needs 4 classes"):
        build_grids(images, labels, labels < 3, (2, 2), n_grids=2)


def test_tile_grid_row_major():
    cells = torch.arange(6.0).view(1, 6, 1, 1, 1)
    assert tile_grid(cells, (2, 3))[0, 0].tolist() == [[0, 1, 2], [3, 4, 5]]


class ReadClass(nn.Module):
    """Logits from the mean pixel value: class c where the image is (c + 1) / 10."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.centres = nn.Parameter(
            (torch.arange(num_classes).float() + 1) / 10, requires_grad=False
        )

    def forward(self, x):
        return -100 * (x.mean(dim=(1, 2, 3))[:, None] - self.centres).abs()


def test_confident_images_and_an_oracle_explainer_scores_one():
    images, labels = class_images(2, 4)
    labels_wrong = labels.clone()
    labels_wrong[0] = 3  # misclassified: not eligible
    model = ReadClass(4)
    model.train()
    eligible, confidence = confident_images(model, images, labels_wrong, 0.9)
    assert model.training  # flags restored
    assert not eligible[0] and eligible[1:].all() and confidence[1] > 0.9
    grid_set = build_grid_set(model, images, labels, 4, "auto", n_grids=3, seed=1)
    grids, cells, targets = grid_set.queries()
    # an oracle pointing at the pixels showing the target class finds every cell
    value = (targets.float() + 1) / 10
    maps = (grid_set.images[grids, 0] - value[:, None, None]).abs().lt(1e-6).float()
    scores, _ = grid_pointing_scores(maps, cells, grid_set.shape)
    torch.testing.assert_close(scores, torch.ones(12, dtype=torch.float64))
    # a class-blind map (the same for every class) scores chance on average
    blind = grid_set.images[grids, 0]
    assert grid_pointing_game(blind, cells, grid_set.shape).value == pytest.approx(0.25)
