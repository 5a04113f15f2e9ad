"""Eq. 6's pixel selection at its edge: only pixels with ``|p_l - p_{l+1}|`` strictly above ``t``.

Paper 000, section III.B.2: "The loss is calculated only on the pixels whose importance
probabilities in two consecutive LAP layers are more than a specified threshold t. M_s is the
number of such pixels in sample s." A pixel whose difference equals ``t`` (with ``t = 0``: a
pixel where the layers agree) is not selected and is not counted in ``M_s``.
"""

import math

import pytest
import torch

from torchlap.losses import concordance_loss


def loop_eq6(p: list[list[float]], q: list[list[float]], t: float, mode: str) -> float:
    """Eq. 6 for one sample, one head and two maps of one size, pixel by pixel."""
    total, m_s = 0.0, 0
    for row_p, row_q in zip(p, q, strict=True):
        for a, b in zip(row_p, row_q, strict=True):
            chosen = abs(a - b) > t if mode == "both" else a - b > t
            if not chosen:
                continue
            m_s += 1
            total += (a - b) * math.log(a / b) + (b - a) * math.log((1 - a) / (1 - b))
    return total / (2 * m_s) if m_s else 0.0


# every value and difference below is exact in binary floating point (multiples of 1/8)
EARLIER = [[0.75, 0.5, 0.25], [0.875, 0.5, 0.125]]
LATER = [[0.5, 0.5, 0.25], [0.125, 0.25, 0.125]]


@pytest.mark.parametrize("mode", ["both", "high_low"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_threshold_zero_leaves_agreeing_pixels_out_of_m_s(mode: str, dtype: torch.dtype) -> None:
    """With t = 0 the pixels where both layers agree are neither summed nor counted in M_s."""
    maps = [torch.tensor([[EARLIER]], dtype=dtype), torch.tensor([[LATER]], dtype=dtype)]
    expected = loop_eq6(EARLIER, LATER, 0.0, mode)
    assert expected > 0
    torch.testing.assert_close(concordance_loss(maps, 0.0, mode).item(), expected)


@pytest.mark.parametrize("mode", ["both", "high_low"])
def test_difference_equal_to_threshold_is_not_selected(mode: str) -> None:
    """A pixel whose difference is exactly t (0.25 here) is not one of Eq. 6's pixels."""
    maps = [torch.tensor([[EARLIER]], dtype=torch.float64), torch.tensor([[LATER]]).double()]
    expected = loop_eq6(EARLIER, LATER, 0.25, mode)
    # only the 0.875-vs-0.125 pixel is selected (0.75 vs 0.5 and 0.5 vs 0.25 differ by t):
    # 1 / 2 [0.75 ln 7 + 0.75 ln 7] = 0.75 ln 7
    assert expected == pytest.approx(0.75 * math.log(7))
    torch.testing.assert_close(concordance_loss(maps, 0.25, mode).item(), expected)
