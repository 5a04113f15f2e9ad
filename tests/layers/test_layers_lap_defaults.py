"""The LAP layers' documented defaults, and the discriminative scorer's fresh start.

README, "The LAP layer": ``torchlap.LocalAttentionPool2d(in_channels, kernel_size, stride=None,
padding=0, n_concepts=1, hidden_channels=8, aggregation="max", alpha=1.0, eps=1e-6,
ceil_mode=False, ...)``, a drop-in for ``nn.MaxPool2d`` (``stride`` defaults to
``kernel_size``); ``AdaptiveLocalAttentionPool2d(in_channels, output_size=1, ...)`` replaces
``nn.AdaptiveAvgPool2d``. Each default is checked by what the layer does: the window geometry by
the output size ``nn.MaxPool2d`` gives, the scorer by its modules and maps, ``alpha`` and
``eps`` by their values. ``LapBase.enable_discriminative_scorer``: the discriminative module
gets "a fresh random start, so that it does not merely copy the main heads" (section III.B.1).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, LapMaps, LocalAttentionPool2d


def _check_scorer_defaults(layer) -> None:
    """One concept, two 1x1 convolutions with 8 hidden units shared by the heads, "max"."""
    scorer = layer.scorer
    assert layer.n_concepts == 1 and scorer.n_concepts == 1
    assert [type(m) for m in scorer.heads] == [nn.Conv2d, nn.ReLU, nn.Conv2d]
    assert scorer.heads[0].out_channels == 8 and scorer.heads[2].in_channels == 8
    assert scorer.heads[2].out_channels == 1 and scorer.heads[2].groups == 1
    assert scorer.aggregation_name == "max" and scorer.head_hidden == "shared"
    assert float(layer.alpha.detach()) == 1.0 and layer.alpha.requires_grad
    assert layer.eps == 1e-6


@pytest.mark.parametrize("size", [(7, 9), (6, 5)])
def test_local_layer_defaults_are_those_of_the_readme(size):
    layer = LocalAttentionPool2d(3, 3)
    _check_scorer_defaults(layer)
    x = torch.randn(2, 3, *size)
    out = layer(x)
    # stride = kernel, padding 0, floor mode: the windows of nn.MaxPool2d(3)
    assert out.shape == nn.MaxPool2d(3)(x).shape
    assert layer.maps.concepts.shape == (2, 1, *size)
    # a fresh layer: every score 0.5, Eq. 1 the window average (avg_pool2d, same windows)
    torch.testing.assert_close(out, nn.functional.avg_pool2d(x, 3))


def test_local_layer_ceil_mode_default_is_off_as_in_max_pool():
    layer = LocalAttentionPool2d(3, 2)
    x = torch.randn(1, 3, 5, 5)
    assert layer(x).shape == nn.MaxPool2d(2)(x).shape == (1, 3, 2, 2)


def test_adaptive_layer_defaults_are_those_of_the_readme():
    layer = AdaptiveLocalAttentionPool2d(3)
    _check_scorer_defaults(layer)
    x = torch.randn(2, 3, 5, 4)
    out = layer(x)
    assert out.shape == (2, 3, 1, 1)  # output_size=1: the global pool
    torch.testing.assert_close(out, x.mean(dim=(2, 3), keepdim=True))


@pytest.mark.parametrize("fused", ["1", "0"], ids=["default_path", "per_op_path"])
@pytest.mark.parametrize("hidden", [0, 4])
def test_the_discriminative_scorer_starts_apart_from_the_main_heads(hidden, fused, monkeypatch):
    """A fresh layer's heads end in a zero convolution (every probability 0.5); the
    discriminative module is re-initialised, so its probabilities (one map per concept, on
    either CPU path of the layer) vary over the pixels."""
    monkeypatch.setenv("TORCHLAP_FUSED_LAYER", fused)
    layer = LocalAttentionPool2d(3, 2, n_concepts=2, hidden_channels=hidden)
    torch.manual_seed(0)
    disc = layer.enable_discriminative_scorer()
    assert layer.enable_discriminative_scorer() is disc  # idempotent
    for main, copy in zip(layer.scorer.parameters(), disc.parameters(), strict=True):
        assert main.shape == copy.shape and main.data_ptr() != copy.data_ptr()
    assert bool((disc.heads[-1].weight != 0).any())
    x = torch.randn(2, 3, 6, 6)
    layer(x)
    assert bool((layer.maps.concepts == 0.5).all())
    assert layer.maps.discriminative.shape == (2, 2, 6, 6)
    assert layer.maps.discriminative.std() > 1e-3


def test_detached_maps_keep_every_field():
    layer = LocalAttentionPool2d(3, 2, n_concepts=2)
    layer.enable_discriminative_scorer()
    layer(torch.randn(1, 3, 4, 6))
    maps = layer.maps.detach()
    assert maps.input_size == (4, 6)
    for name in ("concepts", "score", "discriminative"):
        kept, cut = getattr(layer.maps, name), getattr(maps, name)
        assert torch.equal(kept, cut) and kept.grad_fn is not None and cut.grad_fn is None
    bare = LapMaps(maps.concepts, maps.score).detach()
    assert bare.discriminative is None
