"""``band_feature_mask`` on non-square images and grids against the bands written out (band
``i`` of an axis of ``S`` pixels cut in ``n``: ``[floor(i S / n), floor((i + 1) S / n))``, the
cells row-major), and its refusals naming the axis that is wrong."""

from __future__ import annotations

import pytest
import torch

from torchlap.evaluate.bla_comparison import band_feature_mask


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
