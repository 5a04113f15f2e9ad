"""Grid pointing game: the cell masks of cells larger than a pixel (a loop reference) and the
grid shapes accepted at their boundaries (found by mutation testing)."""

from __future__ import annotations

import pytest
import torch

from torchlap.metrics.grid_pointing import cell_masks, grid_pointing_game, grid_pointing_summary


@pytest.mark.parametrize(("shape", "size"), [((2, 2), (4, 6)), ((1, 3), (2, 9)), ((3, 1), (6, 2))])
def test_cell_masks_match_a_loop(shape, size):
    rows, cols = shape
    height, width = size
    cell_h, cell_w = height // rows, width // cols
    expected = torch.zeros(rows * cols, height, width, dtype=torch.bool)
    for r in range(height):
        for c in range(width):
            expected[(r // cell_h) * cols + c // cell_w, r, c] = True
    assert torch.equal(cell_masks(shape, size), expected)


def test_grid_shapes_at_their_boundaries():
    maps = torch.rand(2, 2, 2)
    cells = torch.tensor([0, 1])
    for shape in ((1, 2), (2, 1), [2, 2]):
        grid_pointing_game(maps, cells, shape)  # two cells or more: accepted
    for shape in ((1, 1), (2, 0), (0, 2), (True, 2), (2, 2.0), (2,), "22"):
        with pytest.raises(ValueError, match=r"grid shape must be \(rows, cols\) of ints >= 1"):
            grid_pointing_game(maps, cells, shape)
    with pytest.raises(ValueError, match=r"maps must be a \(N, H, W\) tensor"):
        grid_pointing_game(maps.tolist(), cells, (1, 2))
    with pytest.raises(TypeError, match="maps must be floating point"):
        grid_pointing_game(torch.ones(2, 2, 2, dtype=torch.long), cells, (1, 2))
    for bad in ([0, 1], torch.tensor([0, 1, 1])):
        with pytest.raises(ValueError, match=r"cells must be a \(2,\) tensor of cell indices"):
            grid_pointing_game(maps, bad, (1, 2))
    for bad in (torch.tensor([-1, 1]), torch.tensor([0, 2]), torch.tensor([0.0, 1.0])):
        with pytest.raises(ValueError, match=r"cells must hold integer cell indices in \[0, 2\)"):
            grid_pointing_game(maps, bad, (1, 2))


@pytest.mark.parametrize("scale", [1e-3, 1.0, 50.0])
def test_scores_of_maps_of_any_energy(scale):
    """score = sum over the cell of max(m, 0) / sum over the image of max(m, 0)."""
    generator = torch.Generator().manual_seed(5)
    maps = (torch.rand(3, 2, 4, generator=generator, dtype=torch.float64) - 0.4) * scale
    cells = torch.tensor([0, 1, 1])
    expected = []
    for s in range(3):
        inside = total = 0.0
        for r in range(2):
            for c in range(4):
                value = max(float(maps[s, r, c]), 0.0)
                total += value
                inside += value if (c // 2) == int(cells[s]) else 0.0
        expected.append(inside / total)
    result = grid_pointing_game(maps, cells, (1, 2))
    torch.testing.assert_close(result.per_sample, torch.tensor(expected, dtype=torch.float64))


def test_summary_of_few_scores():
    summary = grid_pointing_summary(
        torch.tensor([4.0, 0.0, 2.0, 1.0, 3.0]), torch.zeros(5, dtype=torch.bool), (1, 2)
    )
    assert summary["higher_is_better"] is True and summary["n"] == 5
    quartiles = [summary["distribution"][k] for k in ("min", "q25", "median", "q75", "max")]
    assert quartiles == [0.0, 1.0, 2.0, 3.0, 4.0]  # sorted 0..4: linear-interpolated quartiles
    one = grid_pointing_summary(torch.tensor([0.7]), torch.tensor([True]), (2, 2))
    assert one["mean"] == pytest.approx(0.7) and one["n_zero_maps"] == 1 and one["chance"] == 0.25
    with pytest.raises(ValueError, match="no grid pointing game scores to summarise"):
        grid_pointing_summary(torch.zeros(0), torch.zeros(0, dtype=torch.bool), (1, 2))
    third = grid_pointing_summary(torch.tensor([1 / 3]), torch.tensor([False]), (1, 2))
    assert third["scores"] == [0.333333]  # six decimals in results.json
