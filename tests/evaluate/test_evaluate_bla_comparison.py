"""Paper 002's LIME check (section 4.3): LIME's cells are the cells of BLA's explanation.

"LIME scores for patches of size 32x32 of the 224x224 input images ..., resulting in
explanations of size 7x7" against "the 7x7 soft explanations produced by Q": patch ``i`` is
BLA's cell ``i``. torchlap keeps that pairing at every input size (BLA's own h x w grid as
equal bands of the image); ``lime_patch`` / ``patch`` still give squares.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.evaluate import EvaluateOptions, bla_comparison
from torchlap.evaluate.bla_comparison import (
    band_feature_mask,
    bla_lime_faithfulness,
    lime_section,
)
from torchlap.metrics.lime_faithfulness import (
    cell_means,
    lime_patch_scores,
    spearman_correlation,
)
from torchlap.models.bla import bla_maps, blaify


def stride32_net() -> nn.Sequential:
    """A ResNet-like stride-32 feature map: 2x2 at 64 px, 4x4 at 128, 7x7 at 224."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 32, stride=32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def bla_net() -> nn.Module:
    model, _ = blaify(stride32_net(), "bla-t", input_size=64, init="glorot")
    return model.eval()


def reference_bands(side: int, n: int) -> list[int]:
    """Band of each pixel of an axis: band i spans [floor(i S / n), floor((i + 1) S / n))."""
    out = []
    for pixel in range(side):
        (band,) = [i for i in range(n) if (i * side) // n <= pixel < ((i + 1) * side) // n]
        out.append(band)
    return out


@pytest.mark.parametrize("side", [32, 64, 128, 224])
def test_seven_bands_are_a_7x7_grid_at_every_size(side: int) -> None:
    mask = band_feature_mask(side, side, 7, 7)
    bands = torch.tensor(reference_bands(side, 7))
    torch.testing.assert_close(mask, bands[:, None] * 7 + bands[None, :])
    counts = torch.bincount(mask.flatten())
    assert counts.numel() == 49  # exactly 7x7 cells, none empty
    sizes = torch.bincount(bands)
    assert int(sizes.max() - sizes.min()) <= 1 and int(sizes.min()) >= side // 7  # no sliver
    with pytest.raises(ValueError, match=r"cols must be an int from 1 to 5"):
        band_feature_mask(5, 5, 2, 6)


def _options(**extra) -> EvaluateOptions:
    return EvaluateOptions(methods=("bla",), lime_images=2, lime_samples=24, **extra)


@pytest.mark.parametrize(
    ("side", "grid", "patch"), [(64, 2, "32"), (128, 4, "32"), (224, 7, "32"), (100, 3, "33-34")]
)
def test_lime_section_pairs_limes_cell_i_with_blas_cell_i(side, grid, patch) -> None:
    # before: 9-px patches (an 8x8 grid with 1-px slivers) at 64 px, 18-px at 128
    model = bla_net()
    baseline = stride32_net().eval()
    images = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(side))
    result = lime_section(model, images, None, _options(), torch.device("cpu"), baseline)
    assert result["grid"] == [grid, grid] and result["patch"] == patch
    # the reference: BLA's q as it is (no interpolation) against LIME on the same cells
    with torch.no_grad():
        model(images)
    soft = bla_maps(model)["soft"][:, 0]
    assert soft.shape[-2:] == (grid, grid)
    if side % grid == 0:  # equal bands are squares: the metric's own LIME gives the scores
        scores = lime_patch_scores(baseline, images, None, patch=side // grid, n_samples=24)
        expected = spearman_correlation(soft.flatten(1), scores)
        valid = torch.isfinite(expected)
        assert result["bla"]["n"] == int(valid.sum())
        assert result["bla"]["value"] == pytest.approx(float(expected[valid].mean()))


def test_lime_section_keeps_square_patches_when_asked() -> None:
    images = torch.rand(1, 3, 64, 64)
    result = lime_section(bla_net(), images, None, _options(lime_patch=9), torch.device("cpu"))
    assert result["grid"] == [8, 8] and result["patch"] == "9"


def test_a_one_cell_bla_map_is_refused_before_lime(monkeypatch) -> None:
    # a 1x1 map (q = 1) ranks nothing; before, LIME ran and Grad-CAM then failed on it
    monkeypatch.setattr(bla_comparison, "lime_cell_scores", lambda *a, **k: pytest.fail("LIME ran"))
    with pytest.raises(ValueError, match=r"a 1x1 feature map of a 32x32 image: one cell"):
        lime_section(bla_net(), torch.rand(1, 3, 32, 32), None, _options(), torch.device("cpu"))
    with pytest.raises(
        ValueError,
        match=r"1x1 feature map .* \(--lime-images 0\); square patches also work \(--lime-option "
        r"patch=N; in Python EvaluateOptions\(lime_patch=N\), patch=N\)",
    ):
        bla_lime_faithfulness(bla_net(), torch.rand(1, 3, 32, 32), n_samples=8)


def test_bad_lime_arguments_are_refused_before_any_pass() -> None:
    class NoPass(nn.Module):
        def forward(self, x):
            raise AssertionError("no pass expected")

    images = torch.rand(1, 3, 64, 64)
    cases = [
        ({"patch": 0}, ValueError, r"patch must be an int >= 1"),
        ({"n_samples": 2.5}, TypeError, r"n_samples must be an int"),
        ({"seed": True}, TypeError, r"seed must be an int"),
        ({"score": "odds"}, ValueError, r"score must be one of"),
        ({"perturbations_per_eval": 0}, ValueError, r"perturbations_per_eval must be an int"),
        ({"kernel": 1}, TypeError, r"unknown LIME option\(s\) \['kernel'\]; accepted: baseline"),
        ({"weighting": "cosine"}, ValueError, r"weighting must be one of"),
        ({"cam_relu": "no"}, TypeError, r"cam_relu must be True or False"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            bla_lime_faithfulness(NoPass(), images, **kwargs)


def test_cell_means_of_ragged_bands_match_a_loop_over_pixels() -> None:
    # a 3x2 map upsampled to 10x7 and averaged over 3x4 ragged bands (rows of 3-4 px, cols 1-2)
    maps = torch.rand(2, 3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mask = band_feature_mask(10, 7, 3, 4)
    fast = cell_means(maps, mask, (3, 4))
    up = torch.nn.functional.interpolate(maps[:, None], size=(10, 7), mode="bilinear")[:, 0]
    for b in range(2):
        for cell in range(12):
            pixels = [up[b, y, x] for y in range(10) for x in range(7) if int(mask[y, x]) == cell]
            torch.testing.assert_close(fast[b, cell], sum(pixels) / len(pixels))
    torch.testing.assert_close(
        cell_means(maps, band_feature_mask(10, 7, 3, 2), (3, 2)), maps.flatten(1)
    )
