"""A small LAP model and synthetic splits for the tests of Table I's LAP predictors (paper 000,
section IV)."""

from __future__ import annotations

import torch
from torch import nn

from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d
from torchlap.evaluate.common import EvalData
from torchlap.layers import LapBase


def lap_model(n_concepts: int, num_classes: int, seed: int) -> nn.Module:
    """A small CNN with a windowed and a global LAP layer of ``n_concepts`` heads, their scorers
    drawn away from the uniform start (scores spread around 0.5: every rule sees both
    outcomes)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        LocalAttentionPool2d(6, 2, n_concepts=n_concepts, aggregation="mean"),
        nn.Conv2d(6, 6, 3, padding=1),
        nn.ReLU(),
        AdaptiveLocalAttentionPool2d(6, 1, n_concepts=n_concepts, aggregation="mean"),
        nn.Flatten(),
        nn.Linear(6, num_classes),
    )
    for module in model.modules():
        if isinstance(module, LapBase):
            for conv in module.scorer.heads:
                if isinstance(conv, nn.Conv2d):
                    nn.init.normal_(conv.weight, std=1.0)
                    nn.init.normal_(conv.bias, std=0.5)
    return model.eval()


def split(n: int, seed: int, classes: list[str]) -> EvalData:
    """``n`` random 8-pixel images labelled in turn 0, 1, ... (each image's channels scaled
    differently: the layers' maps differ between images), no regions."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, 8, 8, dtype=torch.bool)
    return EvalData(
        images=torch.rand(n, 3, 8, 8, generator=generator)
        * 3
        * torch.rand(n, 3, 1, 1, generator=generator),
        labels=torch.arange(n) % len(classes),
        masks=masks,
        has_region=masks.flatten(1).any(1),
        classes=list(classes),
        name="synthetic",
    )
