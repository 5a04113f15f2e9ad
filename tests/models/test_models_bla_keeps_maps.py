"""blaify's dry forward pass leaves the LAP layers' last maps as they were (as lapify's does)."""

from __future__ import annotations

import torch
from torch import nn

import torchlap
from torchlap.layers import lap_modules
from torchlap.models.bla import blaify


def _lap_net() -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 3),
    )
    torchlap.lapify(model, where=["2"], input_size=16)
    return model


def test_blaify_dry_pass_keeps_the_lap_layers_last_maps() -> None:
    torch.manual_seed(0)
    model = _lap_net()
    layers = list(lap_modules(model).values())
    assert layers
    with torch.no_grad():
        model(torch.rand(4, 3, 16, 16))
    before = [(layer.maps, vars(layer).get("_forward_index")) for layer in layers]
    assert all(maps is not None for maps, _ in before)
    blaify(model, where="5", input_size=16)  # no in_channels: one dry forward pass
    after = [(layer.maps, vars(layer).get("_forward_index")) for layer in layers]
    assert all(a[0] is b[0] and a[1] == b[1] for a, b in zip(after, before, strict=True))
    maps = torchlap.attention_maps(model)
    assert maps and all(m.score.shape[0] == 4 for m in maps.values())  # the caller's batch
