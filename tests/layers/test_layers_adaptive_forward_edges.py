"""The adaptive LAP layer's forward: its input checks, and which outputs are the global pool.

``AdaptiveLocalAttentionPool2d`` checks its input before any work, as every LAP layer (the
global pool's fused layer reads the tensors directly). An output of one row and one column, given
as 1 or as None on a side of one pixel, is the global pool (Eq. 4 over the whole map); any other
output keeps its cells. Values are held to the loops of paper 000's Eq. 1 and 4.
"""

from __future__ import annotations

import pytest
import torch
from test_layers_lap_reference import reference_adaptive

from torchlap._ext import lap_kernels
from torchlap.layers import fused
from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.randn(1, 3, 4, 4), ValueError, r"built for 4 input channels"),
        (torch.randn(4, 4, 4), ValueError, r"expects \(B, C, H, W\) input"),
        (torch.ones(1, 4, 4, 4, dtype=torch.int64), TypeError, r"float32 parameters"),
    ],
    ids=["channels", "rank", "dtype"],
)
def test_the_adaptive_layer_refuses_a_wrong_input(x, error, match):
    layer = AdaptiveLocalAttentionPool2d(4)
    with pytest.raises(error, match=match):
        layer(x)
    assert layer.maps is None  # before any work


@pytest.mark.parametrize("fused", ["1", "0"], ids=["default_path", "per_op_path"])
def test_a_map_smaller_than_the_window_is_refused_before_the_scorer_runs(fused, monkeypatch):
    monkeypatch.setenv("TORCHLAP_FUSED_LAYER", fused)
    layer = LocalAttentionPool2d(2, 5)
    with pytest.raises(ValueError):
        layer(torch.randn(1, 2, 3, 3))
    assert layer.maps is None


@pytest.mark.parametrize(
    ("output_size", "size"),
    [((None, 1), (1, 5)), ((1, None), (4, 1)), ((None, 1), (3, 5)), ((1, None), (4, 3))],
)
def test_outputs_with_a_side_kept_as_none(output_size, size):
    layer = AdaptiveLocalAttentionPool2d(1, output_size, alpha=1.3, dtype=torch.float64)
    with torch.no_grad():
        for parameter in layer.scorer.parameters():
            parameter.normal_()
    x = torch.randn(2, 1, *size, dtype=torch.float64)
    calls = fused.fused_layer_calls["global"]
    got = layer(x)
    if lap_kernels() is not None:  # one row and one column: the fused global pool
        one_by_one = got.shape[-2:] == (1, 1)
        assert fused.fused_layer_calls["global"] == calls + int(one_by_one)
    with torch.no_grad():
        score = layer.scorer(x)[1]
    want = reference_adaptive(x, score, output_size, 1.3, layer.eps)
    torch.testing.assert_close(got.detach(), want)
