"""Expert supervision's ``resize="area"``: a map cell is inside the experts' region when at least
half of its image pixels are (the documented rule of ``expert_supervision_loss``), so a cell
covered by exactly half is inside: it belongs to term 1 (``ln p``), not to term 2 (``ln(1 - p)``).
"""

import math

import pytest
import torch

from torchlap.losses import expert_supervision_loss


def loop_expert_one_sample(probs: list[list[float]], inside: list[list[bool]]) -> float:
    """Paper 000, Appendix A, one positive sample with a region, one head, every inside pixel
    in term 1 (positive_fraction 1), no negative sample: -(2 mean ln p + mean ln(1 - p))."""
    ins = [
        p
        for row_p, row_i in zip(probs, inside, strict=True)
        for p, i in zip(row_p, row_i, strict=True)
        if i
    ]
    out = [
        p
        for row_p, row_i in zip(probs, inside, strict=True)
        for p, i in zip(row_p, row_i, strict=True)
        if not i
    ]
    term_top = sum(math.log(p) for p in ins) / len(ins) if ins else 0.0
    term_out = sum(math.log(1 - p) for p in out) / len(out) if out else 0.0
    return -(2 * term_top + term_out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_area_mode_puts_a_half_covered_cell_inside(dtype: torch.dtype) -> None:
    """4x4 mask to a 2x2 map: cells covered 4/4, 2/4 (inside), 1/4 and 0/4 (outside)."""
    mask = torch.tensor(
        [
            [1, 1, 1, 0],
            [1, 1, 1, 0],
            [0, 0, 0, 0],
            [0, 1, 0, 0],
        ],
        dtype=dtype,
    )
    # cell (0, 0): 4 of 4 pixels; (0, 1): 2 of 4; (1, 0): 1 of 4; (1, 1): 0 of 4
    inside = [[True, True], [False, False]]
    probs = [[0.9, 0.3], [0.6, 0.2]]
    loss = expert_supervision_loss(
        torch.tensor([[probs]], dtype=dtype),
        mask[None],
        torch.tensor([[True]]),
        torch.tensor([True]),
        iar=None,
        positive_fraction=1.0,
        resize="area",
    )
    torch.testing.assert_close(loss.item(), loop_expert_one_sample(probs, inside))
