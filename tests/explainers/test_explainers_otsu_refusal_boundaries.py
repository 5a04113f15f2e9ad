"""``otsu_threshold`` and ``sise_fusion`` at the edges of what they accept: one-pixel maps and
two bins (accepted, against scikit-image), empty maps, one non-finite pixel among finite ones
and values-less (meta) tensors (refused, before any work)."""

import pytest
import torch
from skimage.filters import threshold_otsu

from torchlap.explainers import otsu_threshold, sise_fusion


def test_a_one_pixel_map_is_its_own_threshold():
    maps = torch.tensor([[[0.3]], [[-2.0]]], dtype=torch.float64)
    assert otsu_threshold(maps).tolist() == [0.3, -2.0]
    fused = sise_fusion(torch.stack([maps, maps]))
    # nothing lies above a constant map's threshold (its value): the cascade keeps nothing
    assert fused.tolist() == [[[0.0]], [[0.0]]]


def test_two_bins_is_the_smallest_histogram_and_matches_skimage():
    generator = torch.Generator().manual_seed(2)
    maps = torch.rand(3, 5, 6, generator=generator, dtype=torch.float64)
    ours = otsu_threshold(maps, bins=2)
    for i in range(3):
        expected = threshold_otsu(maps[i].numpy(), nbins=2)
        assert ours[i].item() == pytest.approx(expected, rel=1e-12), i


@pytest.mark.parametrize("shape", [(0, 4, 4), (2, 0, 4), (2, 4, 0)])
def test_empty_maps_are_refused(shape):
    with pytest.raises(ValueError, match=r"otsu_threshold needs non-empty maps, got shape"):
        otsu_threshold(torch.empty(shape))


def test_empty_fusion_stacks_are_refused():
    with pytest.raises(ValueError, match=r"sise_fusion expects maps \(L, B, H, W\), got \(0,"):
        sise_fusion(torch.empty(0, 2, 4, 4))
    with pytest.raises(ValueError, match=r"sise_fusion needs non-empty maps"):
        sise_fusion(torch.empty(2, 0, 4, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_one_non_finite_pixel_among_finite_ones_is_refused(bad):
    maps = torch.rand(2, 4, 4)
    maps[1, 2, 3] = bad
    with pytest.raises(ValueError, match="otsu_threshold got NaN or infinite values"):
        otsu_threshold(maps)
    with pytest.raises(ValueError, match="sise_fusion got NaN or infinite values"):
        sise_fusion(torch.stack([torch.rand(2, 4, 4), maps]))


def test_maps_without_values_are_refused():
    with pytest.raises(ValueError, match="maps is on the meta device"):
        otsu_threshold(torch.empty(2, 4, 4, device="meta"))
    with pytest.raises(ValueError, match="maps is on the meta device"):
        sise_fusion(torch.empty(2, 2, 4, 4, device="meta"))


def test_a_lone_outlier_makes_a_one_pixel_class_as_in_skimage():
    """One pixel far below (or above) two clusters: the best split isolates it, a class of a
    single pixel whose mean is that pixel's bin centre (not halved, not dropped)."""
    generator = torch.Generator().manual_seed(0)
    clusters = torch.rand(20, 3, 4, generator=generator, dtype=torch.float64) * 0.3
    clusters += (torch.rand(20, 3, 4, generator=generator, dtype=torch.float64) > 0.5) * 0.5
    outliers = 1 + torch.rand(20, generator=generator, dtype=torch.float64) * 3
    maps = torch.cat([clusters, clusters])
    maps[:20, 0, 0] = -outliers
    maps[20:, 0, 0] = 1 + outliers
    ours = otsu_threshold(maps)
    for i in range(40):
        assert ours[i].item() == pytest.approx(threshold_otsu(maps[i].numpy()), rel=1e-12), i
