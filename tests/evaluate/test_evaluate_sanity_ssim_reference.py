"""``ssim_abs`` against SSIM written from its definition (Wang et al. 2004, as the sanity
checks of Adebayo et al. 2018 use it): the min-max-normalised absolute maps compared in a
Gaussian window (width 11, sigma 1.5; a map under 11 pixels: the largest odd width that fits,
sigma shrunk with it, 1.5 * width / 11), averaged over the windows that lie inside the map
(Wang et al.'s mean SSIM); data range 1."""

from __future__ import annotations

import math

import pytest
import torch

from torchlap.evaluate.sanity import ssim_abs, summarize


def _normalised_abs(values: list[list[float]]) -> list[list[float]]:
    flat = [abs(v) for row in values for v in row]
    low, high = min(flat), max(flat)
    return [[(abs(v) - low) / (high - low) if high > low else 0.0 for v in row] for row in values]


def slow_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two maps (H, W) with loops over the windows and their pixels."""

    x, y = _normalised_abs(a.tolist()), _normalised_abs(b.tolist())
    height, width = len(x), len(x[0])
    side = min(height, width)
    size = min(11, side if side % 2 == 1 else side - 1)
    sigma = 1.5 * size / 11
    half = (size - 1) // 2
    g = [math.exp(-((i - half) ** 2) / (2 * sigma**2)) for i in range(size)]
    weights = [[gi * gj for gj in g] for gi in g]
    total_weight = sum(sum(row) for row in weights)
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for row in range(half, height - half):  # windows inside the map only
        for col in range(half, width - half):
            mx = my = sxx = syy = sxy = 0.0
            for i in range(size):
                for j in range(size):
                    w = weights[i][j] / total_weight
                    p, q = x[row + i - half][col + j - half], y[row + i - half][col + j - half]
                    mx, my = mx + w * p, my + w * q
                    sxx, syy, sxy = sxx + w * p * p, syy + w * q * q, sxy + w * p * q
            vx, vy, cxy = sxx - mx * mx, syy - my * my, sxy - mx * my
            values.append(
                ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
            )
    return sum(values) / len(values)


@pytest.mark.parametrize("shape", [(13, 12), (8, 10), (9, 7), (3, 4)])
def test_ssim_abs_matches_the_definition(shape: tuple[int, int]) -> None:
    generator = torch.Generator().manual_seed(sum(shape))
    a = torch.randn(3, *shape, generator=generator)
    b = a + torch.randn(3, *shape, generator=generator) * 0.7  # related, not equal
    expected = torch.tensor([slow_ssim(a[i], b[i]) for i in range(3)])
    torch.testing.assert_close(ssim_abs(a, b), expected, atol=2e-5, rtol=0)


def test_ssim_abs_refuses_maps_it_cannot_compare() -> None:
    with pytest.raises(ValueError, match=r"SSIM needs maps of at least 3x3 pixels, got \(2, 5\)"):
        ssim_abs(torch.rand(1, 2, 5), torch.rand(1, 2, 5))
    with pytest.raises(ValueError, match=r"ssim_abs needs two map tensors of the same shape"):
        ssim_abs(torch.rand(1, 4, 4), torch.rand(1, 4, 5))
    with pytest.raises(ValueError, match=r"same shape \(N, H, W\)"):
        ssim_abs(torch.rand(4, 4), torch.rand(4, 4))


def test_summarize_counts_the_finite_values_only() -> None:
    values = torch.tensor([0.5, float("nan"), -0.25, float("inf"), 1.0])
    finite = [0.5, -0.25, 1.0]
    mean = sum(finite) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / 3)  # population
    got = summarize(values)
    assert got["n"] == 3 and got["n_excluded"] == 2
    assert got["mean"] == pytest.approx(mean) and got["std"] == pytest.approx(std)
    empty = summarize(torch.tensor([float("nan")]))
    assert empty == {"mean": None, "std": None, "n": 0, "n_excluded": 1}
