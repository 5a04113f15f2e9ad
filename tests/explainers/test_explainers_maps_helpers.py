"""The map helpers every explainer shares (torchlap.explainers.maps), against references
written pixel by pixel: min-max normalisation of each map over the chosen dims (a constant map
becomes 0), and the refusals of ``check_float_maps``, ``upsample`` and ``minmax_normalize`` at
their edges (mutants of the module that survived)."""

from __future__ import annotations

import pytest
import torch

from torchlap.explainers.maps import check_float_maps, minmax_normalize, upsample


def reference_minmax(maps: torch.Tensor) -> torch.Tensor:
    """Each ``maps[b]`` (B, H, W) rescaled to [0, 1]: ``(x - min) / (max - min)``, pixel by
    pixel; a map whose pixels are all equal becomes all zeros."""
    out = torch.zeros_like(maps)
    for b in range(maps.shape[0]):
        values = [float(v) for v in maps[b].flatten()]
        low, high = min(values), max(values)
        for y in range(maps.shape[1]):
            for x in range(maps.shape[2]):
                if high > low:
                    out[b, y, x] = (float(maps[b, y, x]) - low) / (high - low)
    return out


def test_minmax_normalize_rescales_each_map_and_zeroes_a_constant_one() -> None:
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64) * 3 + 1
    maps[1] = 2.5  # a constant map
    torch.testing.assert_close(minmax_normalize(maps), reference_minmax(maps))


def test_minmax_normalize_over_the_last_dim_rescales_each_row() -> None:
    maps = torch.tensor([[[1.0, 3.0, 2.0], [4.0, 4.0, 4.0]], [[-1.0, 0.0, 1.0], [0.0, 2.0, 8.0]]])
    expected = torch.stack([reference_minmax(maps[:, row : row + 1]) for row in range(2)], 1)
    got = minmax_normalize(maps, dims=(-1,))
    torch.testing.assert_close(got, expected[:, :, 0])


@pytest.mark.parametrize(
    ("maps", "error", "said"),
    [
        ([[0.0, 1.0]], TypeError, "maps must be a floating torch.Tensor, got list"),
        (torch.ones(2, 3, 3, dtype=torch.int64), TypeError, "got torch.int64"),
    ],
    ids=["list", "int"],
)
def test_minmax_normalize_refuses_what_is_no_floating_tensor(maps, error, said) -> None:
    with pytest.raises(error, match=said):
        minmax_normalize(maps)


@pytest.mark.parametrize("dims", [(-4, -1), (3,), ("h",)], ids=["-4", "3", "str"])
def test_minmax_normalize_refuses_dims_maps_do_not_have(dims) -> None:
    with pytest.raises(ValueError, match=r"dims must be dimensions of maps \(2, 3, 3\)"):
        minmax_normalize(torch.rand(2, 3, 3), dims=dims)


@pytest.mark.parametrize("shape", [(2, 0, 3), (2, 3, 0)])
def test_minmax_normalize_refuses_maps_without_pixels(shape) -> None:
    with pytest.raises(ValueError, match=r"maps must have pixels over dims \(-2, -1\)"):
        minmax_normalize(torch.rand(*shape))


def test_check_float_maps_returns_a_floating_tensor_of_the_named_rank() -> None:
    maps = torch.rand(2, 3, 4)
    assert check_float_maps(maps, "maps", "(B, H, W)") is maps
    stack = torch.rand(1, 2, 3, 4)
    assert check_float_maps(stack, "maps", "(L, B, H, W)") is stack


@pytest.mark.parametrize(
    ("maps", "shape", "error", "said"),
    [
        (
            [1.0],
            "(B, H, W)",
            TypeError,
            r"maps must be a floating torch.Tensor \(B, H, W\), got list",
        ),
        (
            torch.rand(2, 3),
            "(B, H, W)",
            ValueError,
            r"maps must have shape \(B, H, W\), got \(2, 3\)",
        ),
        (torch.rand(2, 3, 4), "(L, B, H, W)", ValueError, r"got \(2, 3, 4\)"),
        (torch.rand(1, 2, 3, 4), "(B, H, W)", ValueError, r"got \(1, 2, 3, 4\)"),
        (torch.ones(2, 3, 4, dtype=torch.int32), "(B, H, W)", TypeError, "got dtype torch.int32"),
    ],
    ids=["list", "2-D", "3-D for 4", "4-D for 3", "int"],
)
def test_check_float_maps_refusals_name_the_maps(maps, shape, error, said) -> None:
    with pytest.raises(error, match=said):
        check_float_maps(maps, "maps", shape)


def test_upsample_takes_maps_of_one_pixel_row() -> None:
    maps = torch.tensor([[[1.0, 3.0]]])  # (1, 1, 2): h = 1
    torch.testing.assert_close(upsample(maps, (2, 2)), torch.tensor([[[1.0, 3.0], [1.0, 3.0]]]))


@pytest.mark.parametrize("shape", [(1, 0, 2), (1, 2, 0)])
def test_upsample_refuses_maps_without_pixels(shape) -> None:
    with pytest.raises(ValueError, match=r"upsample expects maps of shape \(B, h, w\), h, w >= 1"):
        upsample(torch.rand(*shape), (4, 4))


def test_upsample_refuses_integer_maps() -> None:
    with pytest.raises(TypeError, match=r"maps must be a floating tensor .* got dtype torch.int64"):
        upsample(torch.ones(1, 2, 2, dtype=torch.int64), (4, 4))


def test_upsample_names_what_is_no_tensor() -> None:
    with pytest.raises(ValueError, match=r"\(B, h, w\), h, w >= 1, got list"):
        upsample([[[0.0, 1.0]]], (4, 4))
