"""The (Grad-)CAM side of paper 002's LIME check (section 4.3, Table 2 "LIME/CAM").

For a network with a global average pool and a linear head, CAM (Zhou et al.) of class ``c``
at position ``i`` is ``sum_k w_ck A_k(i)``; Grad-CAM is its positive part divided by the
number of positions. The reference computes CAM by loops over positions and channels from the
feature map and the head's weights, ranks it against the LIME scores with scipy, and is
compared with ``bla_lime_faithfulness``'s Grad-CAM result, with (``cam_relu=True``, default)
and without (``cam_relu=False``) the ReLU.
"""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from torchlap.evaluate.bla_comparison import band_feature_mask, bla_lime_faithfulness
from torchlap.metrics.lime_faithfulness import lime_cell_scores
from torchlap.models.bla import blaify

SIDE, GRID = 128, 4  # a stride-32 feature map: 4x4 cells of 32 px


def stride32_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 5, 32, stride=32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    )


def reference_cam(net: nn.Sequential, image: torch.Tensor, target: int, relu: bool) -> list:
    """CAM of one image, cell by cell: sum_k w_ck A_k(i) (clipped at 0 with ``relu``)."""
    with torch.no_grad():
        features = net[1](net[0](image[None]))[0]  # (K, 4, 4), the input of the global pool
    weights = net[4].weight.detach()
    cells = []
    for row in range(GRID):
        for col in range(GRID):
            value = sum(
                float(weights[target, k]) * float(features[k, row, col])
                for k in range(features.shape[0])
            )
            cells.append(max(value, 0.0) if relu else value)
    return cells


@pytest.mark.parametrize("relu", [True, False])
def test_the_cam_of_the_lime_check_matches_a_loop_reference(relu: bool) -> None:
    baseline = stride32_net().eval()
    bla_model, _ = blaify(stride32_net(), "bla-t", input_size=SIDE, init="glorot")
    images = torch.rand(3, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(5))
    targets = torch.tensor([0, 1, 2])
    result = bla_lime_faithfulness(
        bla_model, images, baseline_model=baseline, target=targets, n_samples=30, seed=2,
        cam_relu=relu,
    )["gradcam"]  # fmt: skip
    mask = band_feature_mask(SIDE, SIDE, GRID, GRID)
    lime = lime_cell_scores(baseline, images, mask, targets, n_samples=30, seed=2)
    negative = 0
    for index in range(3):
        cam = reference_cam(baseline, images[index], int(targets[index]), relu)
        negative += sum(
            value < 0
            for value in reference_cam(baseline, images[index], int(targets[index]), False)
        )
        # a CAM with no positive cell is constant after the ReLU: no ranking (NaN), excluded
        expected = float("nan") if len(set(cam)) == 1 else spearmanr(cam, lime[index]).statistic
        torch.testing.assert_close(
            result.per_sample[index].double(),
            torch.tensor(expected, dtype=torch.float64),
            equal_nan=True,
        )
    assert negative > 0  # some cells have negative evidence: the ReLU changes the ranking
    assert result.n >= 1 and result.n + result.n_excluded == 3
