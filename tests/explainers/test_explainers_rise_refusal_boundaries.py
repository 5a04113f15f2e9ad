"""RISE's option refusals at their boundaries: ``grid_size`` must be an int (not a float or a
string that compares with 2), and the up-front grid memory cap at exactly 2**28 cells."""

import pytest
import torch
from torch import nn

from torchlap.explainers import Rise, RiseMasks, rise_masks
from torchlap.explainers.perturbation import MAX_RISE_CELLS


def tiny_model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


@pytest.mark.parametrize("grid_size", [2.5, 8.0, "8", True, None])
def test_grid_size_that_is_not_an_int_is_refused(grid_size):
    with pytest.raises(TypeError, match="grid_size must be an int"):
        Rise(tiny_model(), grid_size=grid_size)
    with pytest.raises(TypeError, match="grid_size must be an int"):
        RiseMasks(3, (8, 8), grid_size=grid_size)


def test_grid_memory_cap_at_exactly_max_cells():
    """A 16384x16384 grid holds exactly MAX_RISE_CELLS cells: two such masks draw twice the
    cap and are refused when RISE is built; one mask of that grid fits the cap. A grid larger
    than the cap on its own is left to the image-size refusal (it is larger than any image)."""
    side = 2**14
    assert side * side == MAX_RISE_CELLS
    message = rf"n_masks 2 of {side}x{side} grids draw {2 * MAX_RISE_CELLS} grid cells up front"
    with pytest.raises(ValueError, match=message):
        Rise(tiny_model(), n_masks=2, grid_size=side)
    Rise(tiny_model(), n_masks=1, grid_size=side)  # exactly the cap: accepted
    larger = Rise(tiny_model(), n_masks=2, grid_size=side + 1)  # refused with the image
    with pytest.raises(ValueError, match=rf"grid_size {side + 1} is larger than the 8x8 images"):
        larger(torch.rand(1, 3, 8, 8))


def test_p_of_zero_is_refused():
    """p = 0 keeps no cell: every mask removes the whole image (the lower bound is strict)."""
    with pytest.raises(ValueError, match=r"p must be a number in \(0, 1\)"):
        Rise(tiny_model(), p=0)
    with pytest.raises(ValueError, match=r"p must be a number in \(0, 1\)"):
        RiseMasks(3, (8, 8), p=0.0)
    assert RiseMasks(3, (8, 8), p=1e-6).p == 1e-6


def test_rise_masks_refuse_a_non_positive_or_non_int_count():
    with pytest.raises(ValueError, match="n_masks must be an int >= 1"):
        RiseMasks(0, (8, 8))
    with pytest.raises(TypeError, match="n_masks must be an int"):
        RiseMasks(2.0, (8, 8))


def test_rise_masks_defaults_are_the_papers_p_and_seed_zero():
    """RiseMasks' defaults (p = 0.5 as in the RISE paper, seed 0) are those of rise_masks and
    Rise: the same masks whichever entry point builds them."""
    default = RiseMasks(6, (8, 8))
    assert default.p == 0.5 and default.grid_size == 8
    explicit = RiseMasks(6, (8, 8), grid_size=8, p=0.5, seed=0)
    index = torch.arange(6)
    assert torch.equal(default(index), explicit(index))
    assert torch.equal(rise_masks(6, (16, 16)), RiseMasks(6, (16, 16))(index))


def test_rise_defaults_are_the_documented_ones():
    """N = 4000 masks of an 8x8 grid at p = 0.5 (the RISE paper's ImageNet setting), seed 0,
    64 masked images per forward."""
    rise = Rise(tiny_model())
    assert (rise.n_masks, rise.grid_size, rise.p, rise.seed) == (4000, 8, 0.5, 0)
    assert rise.mask_batch_size == 64


def test_a_grid_size_above_the_smaller_side_names_that_side():
    with pytest.raises(ValueError, match=r"8x12 images: .*\(grid_size <= 8 here"):
        RiseMasks(3, (8, 12), grid_size=9)
    with pytest.raises(ValueError, match=r"12x8 images: .*\(grid_size <= 8 here"):
        RiseMasks(3, (12, 8), grid_size=9)


def test_a_cell_is_kept_when_its_draw_is_below_p():
    """Each cell is 1 with probability p: kept when its uniform draw u in [0, 1) has u < p
    (u <= p would keep it with probability above p). With p equal to the first cell's own
    draw, that cell is dropped; a p just above keeps it."""
    draw = float(torch.rand(1, generator=torch.Generator().manual_seed(7))[0])
    assert 0.0 < draw < 1.0
    at_draw = RiseMasks(1, (2, 2), grid_size=2, p=draw, seed=7)
    assert at_draw.grids[0, 0, 0].item() == 0.0
    above = RiseMasks(
        1,
        (2, 2),
        grid_size=2,
        p=float(torch.nextafter(torch.tensor(draw), torch.tensor(1.0))),
        seed=7,
    )
    assert above.grids[0, 0, 0].item() == 1.0
