"""``minmax_normalize`` on maps holding non-finite values and on tiny spreads: a NaN anywhere
makes the whole map NaN (before: a map with a NaN silently became an all-zero map, which the
sanity checks then scored as a constant map), and a subnormal spread reaches 1 (before: the
span was clamped to the smallest normal number, so such a map topped out near 0.25)."""

from __future__ import annotations

import torch

from torchlap.explainers.maps import minmax_normalize


def test_a_map_holding_a_nan_becomes_all_nan_and_leaves_the_other_maps_alone() -> None:
    maps = torch.tensor([[[0.0, 1.0], [2.0, float("nan")]], [[1.0, 3.0], [5.0, 9.0]]])
    out = minmax_normalize(maps)
    assert bool(out[0].isnan().all())
    torch.testing.assert_close(out[1], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))


def test_a_constant_map_is_still_zero_and_an_infinite_pixel_gives_nan_not_a_score() -> None:
    maps = torch.tensor([[[4.0, 4.0], [4.0, 4.0]], [[0.0, 1.0], [2.0, float("inf")]]])
    out = minmax_normalize(maps)
    assert torch.equal(out[0], torch.zeros(2, 2))
    assert bool(out[1].isnan().any())


def test_a_subnormal_spread_reaches_one() -> None:
    tiny = torch.finfo(torch.float32).tiny
    maps = torch.tensor([[[0.0, tiny / 4], [tiny / 8, 0.0]]])
    out = minmax_normalize(maps)
    torch.testing.assert_close(out, torch.tensor([[[0.0, 1.0], [0.5, 0.0]]]))


def test_the_normalised_map_has_finite_gradients_where_the_spread_is_zero() -> None:
    maps = torch.tensor([[[2.0, 2.0], [2.0, 2.0]], [[0.0, 1.0], [2.0, 4.0]]], requires_grad=True)
    minmax_normalize(maps).sum().backward()
    assert bool(torch.isfinite(maps.grad).all())
