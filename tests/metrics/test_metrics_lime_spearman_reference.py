"""The Spearman side of LIME faithfulness (paper 002, section 4.3) against slow references.

Paper 002: "We compute the Spearman rank correlation between these LIME explanations and the
7x7 soft explanations", the LIME scores being of "patches of size 32x32". The references below
are loops written from that text and from the textbook definitions (Spearman's rho is Pearson's
correlation of the ranks, tied values sharing their average rank; a patch's map value is the
mean of the map's pixels in the patch, after a bilinear resize with ``align_corners=False`` as
torchlap documents); nothing of torchlap is used but the functions under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from loop_resize import bilinear
from torchlap.metrics.lime_faithfulness import (
    lime_cell_scores,
    lime_patch_scores,
    lime_spearman,
    mean_spearman,
    patch_means,
    spearman_correlation,
)


def average_ranks(values: list[float]) -> list[float]:
    """1-based ranks, each group of equal values given the mean of the ranks it spans."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        stop = start
        while stop + 1 < len(order) and values[order[stop + 1]] == values[order[start]]:
            stop += 1
        for k in range(start, stop + 1):
            ranks[order[k]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Pearson's correlation of the average ranks; nan for a constant ranking."""
    ra, rb = average_ranks(a), average_ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    den = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return num / den if den > 0 else float("nan")


def test_spearman_with_ties_and_two_values_matches_the_loop_reference() -> None:
    generator = torch.Generator().manual_seed(3)
    a = torch.randint(0, 4, (6, 9), generator=generator).double()  # many ties
    b = torch.randint(0, 3, (6, 9), generator=generator).double()
    b[0] = torch.arange(9.0)  # no ties on one side
    ours = spearman_correlation(a, b)
    expected = torch.tensor([spearman(a[i].tolist(), b[i].tolist()) for i in range(6)])
    torch.testing.assert_close(ours, expected.double(), equal_nan=True)
    two = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    ours = spearman_correlation(two, two[:1].expand(2, 2))
    torch.testing.assert_close(ours, torch.tensor([1.0, -1.0], dtype=torch.float64))


def test_a_constant_row_has_no_correlation() -> None:
    a = torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    b = torch.tensor([[1.0, 2.0, 3.0], [3.0, 3.0, 3.0]])
    assert torch.isnan(spearman_correlation(a, b)).all()


@pytest.mark.parametrize(
    ("a", "b", "error", "message"),
    [
        ([[1.0, 2.0]], torch.ones(1, 2), TypeError, r"a and b must be tensors"),
        (torch.ones(1, 2), [[1.0, 2.0]], TypeError, r"a and b must be tensors"),
        (torch.ones(2, 3), torch.ones(2, 4), ValueError, r"both be \(N, n\), got \(2, 3\) and"),
        (torch.ones(3), torch.ones(3), ValueError, r"both be \(N, n\), got \(3,\) and \(3,\)"),
        (torch.ones(2, 1), torch.ones(2, 1), ValueError, r"at least 2 values per row, got 1"),
    ],
)
def test_spearman_refuses_what_it_cannot_rank(a, b, error, message) -> None:
    with pytest.raises(error, match=message):
        spearman_correlation(a, b)


def test_mean_spearman_averages_the_rows_that_rank() -> None:
    maps = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    lime = torch.tensor([[1.0, 2.0, 4.0, 3.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    rows = [spearman(maps[i].tolist(), lime[i].tolist()) for i in range(2)]
    result = mean_spearman(maps, lime)
    assert result.value == pytest.approx(sum(rows) / 2, abs=1e-12)
    assert (result.n, result.n_excluded, result.higher_is_better) == (2, 1, True)
    with pytest.raises(TypeError, match=r"a and b must be tensors"):
        mean_spearman(maps.tolist(), lime)
    with pytest.raises(TypeError, match=r"a and b must be tensors"):
        mean_spearman(maps, lime.tolist())


def patch_average(image: list[list[float]], patch: int) -> list[float]:
    """Mean of each patch x patch square, row-major, border squares cut by the image."""
    height, width = len(image), len(image[0])
    means = []
    for top in range(0, height, patch):
        for left in range(0, width, patch):
            cell = [
                image[r][c]
                for r in range(top, min(top + patch, height))
                for c in range(left, min(left + patch, width))
            ]
            means.append(sum(cell) / len(cell))
    return means


@pytest.mark.parametrize("map_size", [(10, 7), (5, 3), (3, 2)])
def test_patch_means_of_a_non_square_image_match_the_loop_reference(map_size) -> None:
    maps = torch.rand(2, *map_size, generator=torch.Generator().manual_seed(1)).double()
    ours = patch_means(maps, (10, 7), 4)  # a 3x2 grid; the last row and column are cut
    expected = []
    for m in maps.tolist():
        if map_size == (3, 2):  # already one value per patch
            expected.append([v for row in m for v in row])
        else:
            expected.append(patch_average(bilinear(m, 10, 7), 4))
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize(
    ("maps", "patch", "error", "message"),
    [
        ([[[0.0]]], 4, ValueError, r"maps must be \(B, h, w\), got list"),
        (torch.rand(1, 1, 4, 4), 4, ValueError, r"maps must be \(B, h, w\), got \(1, 1, 4, 4\)"),
        (torch.rand(1, 4, 4), 0, ValueError, r"patch must be"),
    ],
)
def test_patch_means_refuses_bad_input(maps, patch, error, message) -> None:
    with pytest.raises(error, match=message):
        patch_means(maps, (8, 8), patch)


class Tiny(nn.Module):
    """A fixed nonlinear 3-class model of images of any size; refuses to run when ``frozen``."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(7)
        self.weight = nn.Parameter(torch.randn(3, 12, generator=generator))
        self.frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            raise AssertionError("the model ran although LIME scores were given")
        pooled = nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return torch.tanh(pooled @ self.weight.t() * 3.0)


IMAGES = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(5))


def test_lime_spearman_with_given_scores_is_the_mean_rank_correlation() -> None:
    model = Tiny()
    model.frozen = True
    maps = torch.rand(2, 16, 12, generator=torch.Generator().manual_seed(6)).double()
    lime = torch.randn(2, 12, generator=torch.Generator().manual_seed(8)).double()  # 4x3 patches
    pairs = zip(maps.tolist(), lime.tolist(), strict=True)
    rows = [spearman(patch_average(m, 4), s) for m, s in pairs]
    result = lime_spearman(model, IMAGES, maps, lime_scores=lime, patch=4)
    assert result.value == pytest.approx(sum(rows) / 2, abs=1e-12)
    assert result.n == 2
    alike = lime_spearman(model, IMAGES, maps[:, None], lime_scores=lime, patch=4)
    assert alike.value == result.value


def test_the_defaults_are_the_papers_32_pixel_patches_and_1000_patterns() -> None:
    model = Tiny()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    paper = {"patch": 32, "n_samples": 1000, "seed": 0, "baseline": 0.0}
    expected = lime_patch_scores(model, images, **paper)
    assert expected.shape == (2, 4)
    assert torch.equal(lime_patch_scores(model, images), expected)
    mask = (torch.arange(64)[:, None] // 32) * 2 + torch.arange(64)[None, :] // 32
    assert torch.equal(lime_cell_scores(model, images, mask, baseline=0.0), expected)
    maps = torch.rand(2, 2, 2)
    by_default = lime_spearman(model, images, maps)
    explicit = lime_spearman(model, images, maps, lime_scores=expected)
    assert by_default.value == explicit.value


def test_lime_spearman_asks_lime_for_the_papers_patches_and_patterns(monkeypatch) -> None:
    import torchlap.metrics.lime_faithfulness as module

    asked: list[dict] = []

    def recording(model, images, target, **kwargs):
        asked.append(kwargs)
        return torch.rand(images.shape[0], 4, generator=torch.Generator().manual_seed(4))

    monkeypatch.setattr(module, "lime_patch_scores", recording)
    lime_spearman(Tiny(), torch.rand(2, 3, 64, 64), torch.rand(2, 64, 64))
    assert asked == [{"patch": 32, "n_samples": 1000, "seed": 0}]


def test_spearman_is_float64_whatever_the_inputs_dtype():
    a = torch.tensor([[0.1, 0.4, 0.2]], dtype=torch.float32)
    assert spearman_correlation(a, a.flip(-1)).dtype == torch.float64
