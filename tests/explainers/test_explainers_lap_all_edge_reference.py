"""LAP All (paper 000, supplement, Algorithm 1) in the cases the other references leave out:
float64 maps (the shared reference builds float32), a batch of one, ties at exactly 0.5, zero
maps, a single layer, a 1x1 deepest map (one window holding the whole shallower map) and two
layers of equal size (windows of one pixel).

The reference below is the pseudo-code's ``INTEGRATEPIXEL`` run for every pixel of every
layer, from the deepest layer to the shallowest, in Python floats. A pixel ``(i, j)`` of
``R_{l+1}`` covers the pixels ``(y, x)`` of ``P_l`` with ``floor(y h_{l+1} / h_l) = i`` (and the
same for columns): the README's reading of ``GETKERNEL`` for pools whose kernel is their stride.
"""

from __future__ import annotations

import pytest
import torch

from torchlap.explainers import lap_all

ALPHA = 0.8  # Algorithm 1, line 1: "the impact decay factor"


def get_kernel(layer: list[list[float]], i: int, j: int, coarse: tuple[int, int]):
    """GETKERNEL: the pixels of ``layer`` under pixel (i, j) of a ``coarse`` map."""
    height, width = len(layer), len(layer[0])
    return [
        (y, x)
        for y in range(height)
        for x in range(width)
        if y * coarse[0] // height == i and x * coarse[1] // width == j
    ]


def integrate_pixel(r_next: float, p_l: list[float], depth: int, level: int, threshold: float):
    """Lines 8-22 of Algorithm 1 for one pixel of ``R_{l+1}`` (``level`` counts from 1)."""
    r_l = [r_next] * len(p_l)  # line 9: r_{l+1} repeated to the kernel's size
    if r_next >= threshold and max(p_l) >= threshold:  # line 10
        for index, value in enumerate(p_l):  # lines 11-12
            p = value * ALPHA ** (depth - level)  # line 13
            r_l[index] = max(r_next, p) if value >= threshold else p  # lines 14-18
    return r_l


def reference_lap_all(maps: list[torch.Tensor], threshold: float = 0.5) -> list:
    """R_1 of every sample, as nested lists of floats."""
    depth = len(maps)
    result = []
    for sample in range(maps[0].shape[0]):
        layers = [[[float(v) for v in row] for row in m[sample]] for m in maps]
        integrated = layers[-1]  # lines 5-6: l = L returns p_L
        for level in range(depth - 1, 0, -1):  # l = L - 1, ..., 1 (1-based)
            layer = layers[level - 1]
            coarse = (len(integrated), len(integrated[0]))
            out = [[0.0] * len(layer[0]) for _ in layer]
            for i in range(coarse[0]):
                for j in range(coarse[1]):
                    pixels = get_kernel(layer, i, j, coarse)
                    if not pixels:
                        continue
                    values = [layer[y][x] for y, x in pixels]
                    new = integrate_pixel(integrated[i][j], values, depth, level, threshold)
                    for (y, x), value in zip(pixels, new, strict=True):
                        out[y][x] = value
            integrated = out
        result.append(integrated)
    return result


SIZES = [
    [(7, 5), (4, 3), (2, 2)],  # windows of unequal size (7 rows onto 4, 5 columns onto 3)
    [(3, 3)],  # a single layer: LAP All is that layer's map
    [(4, 4), (1, 1)],  # one window holds the whole shallower map
    [(6, 6), (3, 3), (3, 3)],  # equal sizes: windows of one pixel
]


def quarter_maps(sizes, batch: int, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    """Values in {0, 0.25, 0.5, 0.75, 1}: ties everywhere, zeros, pixels at exactly 0.5."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 5, (batch, *hw), generator=generator) / 4).to(dtype) for hw in sizes]


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lap_all_matches_the_pseudo_code(sizes, batch, dtype) -> None:
    for seed in range(3):
        maps = quarter_maps(sizes, batch, dtype, seed)
        got = lap_all(maps, decay=ALPHA)
        expected = torch.tensor(reference_lap_all(maps), dtype=torch.float64)
        assert got.dtype == dtype and got.shape == (batch, *sizes[0])
        torch.testing.assert_close(got, expected.to(dtype))


def test_float64_maps_keep_float64_precision() -> None:
    """Decayed values 0.8^k p differ from their float32 rounding by ~1e-8: float64 maps are
    integrated in float64 (tolerance 1e-12, far below float32's resolution)."""
    generator = torch.Generator().manual_seed(7)
    sizes = [(8, 8), (4, 4), (2, 2), (1, 1)]
    maps = [torch.rand(1, *hw, generator=generator, dtype=torch.float64) for hw in sizes]
    maps = [0.3 + 0.7 * m for m in maps]
    got = lap_all(maps, decay=ALPHA)
    expected = torch.tensor(reference_lap_all(maps), dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert not torch.equal(got, got.float().double())  # the values are not float32 numbers


def test_zero_maps_stay_zero_and_a_zero_deep_map_keeps_nothing() -> None:
    """Nothing active: every window keeps r. A zero deepest map gives a zero LAP All, whatever
    the shallower maps hold (Algorithm 1 never credits a pixel under an inactive r)."""
    zeros = [torch.zeros(1, 4, 4, dtype=torch.float64), torch.zeros(1, 2, 2, dtype=torch.float64)]
    assert torch.equal(lap_all(zeros), zeros[0])
    shallow = torch.ones(2, 4, 4, dtype=torch.float64)
    deep = torch.zeros(2, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(lap_all([shallow, deep]), torch.zeros(2, 4, 4, dtype=torch.float64))
    expected = torch.tensor(reference_lap_all([shallow, deep]), dtype=torch.float64)
    torch.testing.assert_close(lap_all([shallow, deep]), expected)
