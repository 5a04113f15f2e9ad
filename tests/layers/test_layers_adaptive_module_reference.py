"""``AdaptiveLocalAttentionPool2d`` with one output side of 1 and the other larger, against a
loop over its windows (paper 000, Eq. 1, 3 and 4 on the cells of ``nn.AdaptiveAvgPool2d``).

Only a 1x1 output is the global pool; ``(1, k)`` and ``(k, 1)`` outputs keep ``k`` windows.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchlap.layers.lap import AdaptiveLocalAttentionPool2d


def loop_adaptive_lap(
    x: torch.Tensor, weight: torch.Tensor, bias: float, alpha: float, eps: float, out: tuple
) -> torch.Tensor:
    """One-concept LAP: score = sigmoid(w . x + b) per pixel (Eq. 3), then Eq. 4 and Eq. 1 over
    each adaptive cell (rows floor(i H / out_h) .. ceil((i + 1) H / out_h), likewise columns)."""
    batch, channels, height, width = x.shape
    out_h = height if out[0] is None else out[0]
    out_w = width if out[1] is None else out[1]
    result = torch.zeros(batch, channels, out_h, out_w, dtype=x.dtype)
    for b in range(batch):
        score = [
            [
                1 / (1 + math.exp(-(sum(float(weight[c]) * float(x[b, c, r, q])
                                        for c in range(channels)) + bias)))
                for q in range(width)
            ]
            for r in range(height)
        ]  # fmt: skip
        for i in range(out_h):
            r0, r1 = (i * height) // out_h, -((-(i + 1) * height) // out_h)
            for j in range(out_w):
                c0, c1 = (j * width) // out_w, -((-(j + 1) * width) // out_w)
                cell = [(r, q) for r in range(r0, r1) for q in range(c0, c1)]
                top = max(score[r][q] for r, q in cell)
                w = {
                    (r, q): math.exp(-(alpha**2) * (top - score[r][q]) ** 2) * score[r][q] + eps
                    for r, q in cell
                }
                total = sum(w.values())
                for c in range(channels):
                    result[b, c, i, j] = (
                        sum(w[r, q] * float(x[b, c, r, q]) for r, q in cell) / total
                    )
    return result


@pytest.mark.parametrize("output_size", [(1, 2), (3, 1), (1, None), (None, 1), (2, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adaptive_module_with_a_side_of_one_matches_loops(
    output_size: tuple, dtype: torch.dtype
) -> None:
    """Shape and values of every window, on the layer's default CPU path."""
    torch.manual_seed(0)
    layer = AdaptiveLocalAttentionPool2d(3, output_size, hidden_channels=0, alpha=1.5, dtype=dtype)
    conv = layer.scorer.heads[0]
    with torch.no_grad():
        nn.init.normal_(conv.weight)
        conv.bias.fill_(0.2)
    x = torch.randn(2, 3, 5, 4, dtype=dtype)
    expected = loop_adaptive_lap(
        x, conv.weight.detach().reshape(-1), 0.2, 1.5, layer.eps, output_size
    )
    got = layer(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected)
