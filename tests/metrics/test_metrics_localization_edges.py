"""Localization edge cases no other test reached (found by mutation testing): one-pixel regions
and top-1 selections, a top-k of every pixel, EBPG of low-energy maps, the global threshold's
refusals and its weak-but-positive fits, the documented defaults, and the argument names in
the refusals. References are loops over pixels."""

from __future__ import annotations

import inspect

import pytest
import torch

from torchlap.metrics import (
    bbox_accuracy,
    ebpg,
    fit_global_threshold,
    iou_threshold,
    iou_topk,
    localization_metrics,
    miou_top20,
)


def maps_and_one_pixel_regions():
    generator = torch.Generator().manual_seed(3)
    maps = torch.rand(3, 4, 5, generator=generator, dtype=torch.float64)
    masks = torch.zeros(3, 4, 5, dtype=torch.bool)
    masks[0, 1, 2] = True  # the map's maximum is moved here below
    masks[1, 3, 4] = True
    masks[2, 0, 0] = True
    maps[0, 1, 2] = 2.0
    maps[1, 3, 4] = -1.0  # the region is the map's minimum
    return maps, masks


def reference_top_k_intersection(score, region, k):
    """|top-k ∩ region| for a map without ties."""
    order = sorted(
        ((r, c) for r in range(score.shape[0]) for c in range(score.shape[1])),
        key=lambda p: -float(score[p]),
    )
    return sum(bool(region[p]) for p in order[:k])


def test_one_pixel_regions_select_one_pixel():
    maps, masks = maps_and_one_pixel_regions()
    hits = [reference_top_k_intersection(maps[s], masks[s], 1) for s in range(3)]
    # N = 1: IoU is 1 for a hit (|A ∪ G| = 1), else 0 (|A ∪ G| = 2, |A ∩ G| = 0)
    assert iou_topk(maps, masks).per_sample.tolist() == [float(h) for h in hits]
    assert bbox_accuracy(maps, masks).per_sample.tolist() == [float(h) for h in hits]
    assert hits[0] == 1 and hits[1] == 0
    thresholded = iou_threshold(maps, masks, threshold=1.5)  # only pixel (1, 2) of map 0
    assert thresholded.per_sample.tolist() == [1.0, 0.0, 0.0]


def test_miou_of_every_pixel_is_the_region_share():
    maps, masks = maps_and_one_pixel_regions()
    masks[2] = True  # a region covering the whole image
    masks[0, 0, :3] = True
    n_pixels = 4 * 5
    expected = [float(masks[s].sum()) / n_pixels for s in range(3)]  # T = every pixel
    result = miou_top20(maps, masks, fraction=1.0)
    torch.testing.assert_close(result.per_sample, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("scale", [1e-3, 0.5, 1.0, 7.0])  # 1e-3: a total energy below 1
def test_ebpg_of_maps_of_any_energy(scale):
    generator = torch.Generator().manual_seed(4)
    maps = (torch.rand(2, 3, 4, generator=generator, dtype=torch.float64) - 0.3) * scale
    masks = torch.rand(2, 3, 4, generator=generator) > 0.5
    expected = []
    for s in range(2):
        inside = total = 0.0
        for r in range(3):
            for c in range(4):
                total += abs(float(maps[s, r, c]))
                inside += abs(float(maps[s, r, c])) if bool(masks[s, r, c]) else 0.0
        expected.append(inside / total)
    torch.testing.assert_close(ebpg(maps, masks).per_sample, torch.tensor(expected).double())


def test_global_threshold_refusals_and_bounds():
    maps = torch.tensor([[[0.2, 0.9]]], dtype=torch.float64)
    masks = torch.tensor([[[False, True]]])
    with pytest.raises(ValueError, match="max_pixels must be an int >= 2"):
        fit_global_threshold(maps, masks, max_pixels=1)
    assert 0.2 < fit_global_threshold(maps, masks, max_pixels=2) < 1.0  # 2 is accepted
    # a subsample that drew no region pixel
    big = torch.rand(1, 100, 100, generator=torch.Generator().manual_seed(0)).double()
    region = torch.zeros(1, 100, 100, dtype=torch.bool)
    region[0, 0, 0] = True
    with pytest.raises(ValueError, match="the pixel subsample holds a single class"):
        fit_global_threshold(big, region, max_pixels=10)
    # constant maps: the scores do not separate the classes (coefficient 0)
    flat = torch.ones(2, 4, 4, dtype=torch.float64)
    regions = torch.zeros(2, 4, 4, dtype=torch.bool)
    regions[:, :2] = True
    with pytest.raises(ValueError, match="the fitted classifier has coefficient"):
        fit_global_threshold(flat, regions)
    with pytest.raises(TypeError, match=r"val_maps must be a torch\.Tensor"):
        fit_global_threshold(flat.tolist(), regions)


def test_a_weak_but_positive_fit_still_gives_a_threshold():
    """Scores that barely separate the classes: a small positive coefficient (well below 1)
    is a valid fit; with balanced class weights the ridge threshold is the class-balanced
    mean of the scores, (mean inside + mean outside) / 2."""
    generator = torch.Generator().manual_seed(2)
    maps = torch.rand(4, 10, 10, generator=generator, dtype=torch.float64)
    masks = torch.zeros(4, 10, 10, dtype=torch.bool)
    masks[:, :, :5] = True
    maps[:, :, :5] += 0.05
    maps[:, 0, 9] = 2.0  # every map's maximum outside: the normalized scores stay close
    inside, outside = [], []
    for s in range(4):
        peak = max(float(v) for v in maps[s].flatten())
        for r in range(10):
            for c in range(10):
                (inside if bool(masks[s, r, c]) else outside).append(float(maps[s, r, c]) / peak)
    expected = (sum(inside) / len(inside) + sum(outside) / len(outside)) / 2
    torch.testing.assert_close(fit_global_threshold(maps, masks), expected, rtol=0, atol=1e-9)


def test_localization_metrics_checks_normalize_even_without_threshold():
    maps, masks = maps_and_one_pixel_regions()
    with pytest.raises(TypeError, match="normalize must be True or False"):
        localization_metrics(maps, masks, normalize="yes")
    with pytest.raises(TypeError, match=r"maps must be a torch\.Tensor"):
        iou_topk(maps.tolist(), masks)


def test_documented_defaults():
    iou = inspect.signature(iou_threshold).parameters
    assert (iou["threshold"].default, iou["normalize"].default) == (0.5, False)  # paper 000
    fit = inspect.signature(fit_global_threshold).parameters
    assert (fit["max_pixels"].default, fit["seed"].default) == (200_000, 0)
    assert fit["classifier"].default == "ridge"
    assert inspect.signature(localization_metrics).parameters["normalize"].default is False


def test_value_maps_of_another_shape_are_refused():
    maps, masks = maps_and_one_pixel_regions()
    with pytest.raises(ValueError, match=r"value_maps must have the shape of maps \(3, 4, 5\)"):
        localization_metrics(maps, masks, value_maps=maps[:, :3])
    same = localization_metrics(maps, masks, value_maps=maps.clone())
    assert same["ebpg"].value == ebpg(maps, masks).value
