"""``band_feature_mask`` on non-square images and grids against the bands written out (band
``i`` of an axis of ``S`` pixels cut in ``n``: ``[floor(i S / n), floor((i + 1) S / n))``, the
cells row-major), its refusals naming the axis that is wrong, and the LIME grid (shape and the
cells' size the results report) of a non-square map, and the LIME check on non-square images."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from torchlap.evaluate import EvaluateOptions
from torchlap.evaluate.bla_comparison import _grid, band_feature_mask, lime_section
from torchlap.models.bla import blaify


@pytest.mark.parametrize(("height", "width", "rows", "cols"), [(10, 7, 3, 4), (5, 9, 5, 2)])
def test_the_cells_are_the_bands_row_major(height: int, width: int, rows: int, cols: int) -> None:
    mask = band_feature_mask(height, width, rows, cols)
    assert mask.shape == (height, width) and mask.dtype == torch.long
    for y in range(height):
        for x in range(width):
            row = [i for i in range(rows) if i * height // rows <= y < (i + 1) * height // rows]
            col = [j for j in range(cols) if j * width // cols <= x < (j + 1) * width // cols]
            assert int(mask[y, x]) == row[0] * cols + col[0], (y, x)


def test_a_bad_axis_is_named() -> None:
    with pytest.raises(ValueError, match=r"^height must be"):
        band_feature_mask(0, 4, 1, 1)
    with pytest.raises(ValueError, match=r"^width must be"):
        band_feature_mask(4, 0, 1, 1)
    with pytest.raises(ValueError, match=r"rows must be an int from 1 to 3"):
        band_feature_mask(3, 8, 4, 2)


def test_the_lime_grid_of_a_non_square_map_and_its_cell_sizes() -> None:
    """The grid of a 3x4 BLA map on a 10x7 image: rows of 3-4 pixels, columns of 1-2, so the
    cells' size reads "1-4"; square patches of 4 pixels: a 3x2 grid whose size reads "4"."""
    grid = _grid(torch.zeros(1, 3, 4), (10, 7), None)
    assert grid.shape == (3, 4) and grid.describe() == "1-4"
    assert torch.equal(grid.mask, band_feature_mask(10, 7, 3, 4))
    squares = _grid(torch.zeros(1, 3, 4), (10, 7), 4)
    assert squares.shape == (3, 2) and squares.describe() == "4"
    assert int(squares.mask[9, 6]) == 5 and int(squares.mask[3, 4]) == 1


def test_the_lime_grid_refuses_one_cell_and_more_cells_than_pixels_only() -> None:
    for soft, size in (((1, 2), (4, 4)), ((4, 2), (4, 8)), ((2, 4), (8, 4))):
        assert _grid(torch.zeros(1, *soft), size, None).shape == soft  # at the edges: accepted
    for soft, size, what in (
        ((1, 1), (4, 4), "one cell, which no rank correlation compares"),
        ((1, 5), (4, 4), "more cells than pixels"),
        ((5, 1), (4, 4), "more cells than pixels"),
        ((1, 2), (4, 1), "more cells than pixels"),
    ):
        with pytest.raises(ValueError, match=rf"here a {soft[0]}x{soft[1]} feature map of a "
                           rf"{size[0]}x{size[1]} image: {what};"):  # fmt: skip
            _grid(torch.zeros(1, *soft), size, None)


def test_lime_section_on_non_square_images_takes_the_first_lime_images() -> None:
    """A 64x96 image has a 2x3 stride-32 BLA map: LIME's cells are its 2x3 bands (height and
    width each their own); ``lime_images=2`` of 3 images: 2 scored."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 32, stride=32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3))  # fmt: skip
    model = blaify(net, "bla-t", input_size=64, init="glorot")[0].eval()
    images = torch.rand(3, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    options = EvaluateOptions(methods=("bla",), lime_images=2, lime_samples=8)
    started = time.perf_counter()
    result = lime_section(model, images, None, options, torch.device("cpu"))
    assert 0.0 <= result["seconds"] <= time.perf_counter() - started
    assert result["grid"] == [2, 3] and result["patch"] == "32"
    for method in ("bla", "gradcam"):
        assert result[method]["n"] + result[method]["n_excluded"] == 2
