"""Stand-ins shared by the ``torchlap bench explain`` tests: a small CNN to explain and a fake
clock, so that timings and ratios are exact."""

from __future__ import annotations

import torch
from torch import nn


def small_cnn() -> nn.Sequential:
    """A seeded 5-class CNN in eval mode (two 3x3 convolutions, a max pool, a global pool)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 5),
    ).eval()


class FakeClock:
    """``time.perf_counter`` advancing by the next of ``steps`` at each reading."""

    def __init__(self, *steps: float) -> None:
        self.now, self.steps = 0.0, list(steps)

    def perf_counter(self) -> float:
        self.now += self.steps.pop(0) if self.steps else 0.0
        return self.now
