"""MetricResult, the direction registry and the deterministic top-k selection."""

from __future__ import annotations

import json

import pytest
import torch

from torchlap.metrics import (
    METRIC_DIRECTIONS,
    MetricResult,
    binarize_map,
    count_for_fraction,
    higher_is_better,
    normalize_by_max,
    top_k_mask,
)


def reference_top_k(flat: list[float], k: int) -> set[int]:
    """Obviously-correct top-k: sort by (score descending, flat index ascending)."""
    order = sorted(range(len(flat)), key=lambda i: (-flat[i], i))
    return set(order[:k])


def test_top_k_mask_matches_reference_with_ties_and_per_sample_k():
    generator = torch.Generator().manual_seed(0)
    # values from a small set -> many ties
    maps = torch.randint(0, 4, (6, 5, 7), generator=generator).float()
    maps[0] = 0.0  # all-zero map
    maps[1] = 2.5  # constant map
    k = torch.tensor([0, 3, 7, 35, 12, 1])
    mask = top_k_mask(maps, k)
    for i in range(maps.shape[0]):
        expected = reference_top_k(maps[i].flatten().tolist(), int(k[i]))
        got = set(torch.nonzero(mask[i].flatten()).flatten().tolist())
        assert got == expected, i
    # constant maps select the first pixels in raster order
    assert set(torch.nonzero(mask[1].flatten()).flatten().tolist()) == {0, 1, 2}


def test_top_k_mask_int_k_counts_and_clipping():
    maps = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(1))
    assert top_k_mask(maps, 5).flatten(1).sum(1).tolist() == [5, 5, 5]
    assert top_k_mask(maps, 100).all()
    with pytest.raises(ValueError, match="shape"):
        top_k_mask(maps, torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="int"):
        top_k_mask(maps, 2.5)


def test_top_k_mask_refuses_counts_that_are_not_non_negative_ints():
    maps = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(1))
    # a float tensor was truncated (2.7 -> 2), a bool tensor read as 1/0, -3 selected nothing
    with pytest.raises(TypeError, match=r"integer tensor.*float32"):
        top_k_mask(maps, torch.tensor([2.7, 1.9]))
    with pytest.raises(TypeError, match=r"integer tensor.*bool"):
        top_k_mask(maps, torch.tensor([True, False]))
    with pytest.raises(ValueError, match="k must be an int >= 0"):
        top_k_mask(maps, -3)
    with pytest.raises(ValueError, match=">= 0"):
        top_k_mask(maps, torch.tensor([2, -1]))
    with pytest.raises(TypeError, match="int >= 0"):
        top_k_mask(maps, True)


def test_count_for_fraction_rounds_half_up_and_keeps_one():
    assert count_for_fraction(0.2, 100) == 20
    assert count_for_fraction(0.15, 10) == 2  # 1.5 -> 2
    assert count_for_fraction(0.01, 10) == 1  # never empty
    assert count_for_fraction(1.0, 49) == 49
    # exact halves of the decimal written: the float 0.7 is below 7/10, which kept 31 and 3937
    assert count_for_fraction(0.7, 45) == 32  # 31.5
    assert count_for_fraction(0.7, 75 * 75) == 3938  # 3937.5
    assert count_for_fraction(0.15, 50) == 8  # 7.5
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            count_for_fraction(bad, 10)
    # a total below one pixel has nothing to keep (it returned 1); True is not a fraction
    with pytest.raises(ValueError, match="n_pixels must be an int >= 1"):
        count_for_fraction(0.5, 0)
    with pytest.raises(TypeError, match=r"fraction must be a number in \(0, 1\], got True"):
        count_for_fraction(True, 10)
    with pytest.raises(TypeError, match="fraction"):
        count_for_fraction("0.5", 10)


def test_binarize_map_min_max_keeps_the_top_of_the_range_whatever_the_floor():
    # a map with a high floor (values in [0.9, 1]): divided by its maximum every pixel passes
    # 0.8; min-max keeps the pixels in the top fifth of the map's range (paper 004: "retains
    # only highly important regions")
    floor = 0.9 + 0.1 * torch.linspace(0, 1, 100).reshape(1, 10, 10)
    assert binarize_map(floor, normalization="max").all()
    kept = binarize_map(floor)
    assert int(kept.sum()) == 20  # linspace: values reaching 0.98 after min-max >= 0.8
    torch.testing.assert_close(kept, (floor - 0.9) / 0.1 >= 0.8 - 1e-6)
    # >= : the threshold itself is kept; 1.0 keeps the maxima, 0.0 everything
    maps = torch.tensor([[[0.0, 0.8], [0.4, 1.0]]])
    assert binarize_map(maps).tolist() == [[[False, True], [False, True]]]
    assert binarize_map(maps, 1.0).sum() == 1 and binarize_map(maps, 0.0).all()
    # a constant map has nothing above its floor; "none" reads the values as they are
    assert not binarize_map(torch.full((1, 3, 3), 0.5)).any()
    assert binarize_map(maps, 0.5, normalization="none").tolist() == [
        [[False, True], [False, True]]
    ]
    with pytest.raises(ValueError, match="normalization must be one of"):
        binarize_map(maps, normalization="minmax")
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]"):
        binarize_map(maps, 1.5)
    with pytest.raises(TypeError, match="threshold"):
        binarize_map(maps, "0.8")
    with pytest.raises(ValueError, match="nan or inf"):
        binarize_map(torch.full((1, 2, 2), float("nan")))


def test_normalize_by_max_reference_and_degenerate_maps():
    maps = torch.tensor(
        [
            [[1.0, 2.0], [4.0, -1.0]],
            [[0.0, 0.0], [0.0, 0.0]],
            [[-1.0, -2.0], [-3.0, -0.5]],
        ]
    )
    out = normalize_by_max(maps)
    torch.testing.assert_close(out[0], maps[0] / 4.0)
    assert (out[1] == 0).all() and (out[2] == 0).all()


def test_metric_result_to_dict_is_json_ready():
    result = MetricResult(value=0.25, higher_is_better=True, n=3, n_excluded=1)
    assert json.loads(json.dumps(result.to_dict())) == {
        "value": 0.25,
        "higher_is_better": True,
        "n": 3,
        "n_excluded": 1,
    }
    empty = MetricResult(value=float("nan"), higher_is_better=False, n=0, n_excluded=4)
    assert empty.to_dict()["value"] is None
    json.dumps(empty.to_dict(), allow_nan=False)


def test_direction_registry():
    assert higher_is_better("ebpg") is True
    assert higher_is_better("drop_pct") is False
    assert higher_is_better("energy/drop_pct") is False
    assert higher_is_better("keep_10/top1_vs_label") is True
    assert higher_is_better("noise_0.1/change_inc_pct") is False
    with pytest.raises(ValueError, match="unknown metric"):
        higher_is_better("nonsense")
    with pytest.raises(TypeError):
        METRIC_DIRECTIONS["ebpg"] = False  # type: ignore[index]
    assert all(isinstance(v, bool) for v in METRIC_DIRECTIONS.values())
