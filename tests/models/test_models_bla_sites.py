"""Where ``blaify`` puts the BLA module (paper 002, section 3: BLA replaces the global average
pool ``v = 1/n sum_i f_i``), by the rules of the module docstring of torchlap.models.bla:
the last output-1 ``nn.AdaptiveAvgPool2d`` that is not inside a squeeze-excitation block, and
for the families that pool in ``forward`` an appended ``global_pool`` (refused when one is there).
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from torchlap.models.bla import BoundedLogitAttention, blaify


class GlobalThenGridPool(nn.Module):
    """A global pool for the head, and a later-registered 2x2 grid pool (an auxiliary branch):
    the global one is the pool BLA replaces, even though it is not the last adaptive pool."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        self.aux_pool = nn.AdaptiveAvgPool2d((2, 2))
        self.aux_fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        aux = self.aux_fc(torch.flatten(self.aux_pool(f), 1))
        return self.fc(torch.flatten(self.avgpool(f), 1)) + 0 * aux


def _excitation_class(name: str) -> type[nn.Module]:
    """A squeeze-excitation block known by its class name only (timm's ``SEModule``, ...)."""

    def __init__(self, channels: int) -> None:  # noqa: N807
        nn.Module.__init__(self)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(self.pool(x)))

    return type(name, (nn.Module,), {"__init__": __init__, "forward": forward})


class ExcitationRegisteredLast(nn.Module):
    """The squeeze-excitation block is registered after the head's pool (and runs before it)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        self.excite = _excitation_class(name)(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.excite(self.features(x))), 1))


def test_the_global_pool_is_chosen_over_a_later_grid_pool() -> None:
    model, names = blaify(GlobalThenGridPool(), input_size=8)
    assert names == ["avgpool"]
    assert isinstance(model.avgpool, BoundedLogitAttention)
    assert isinstance(model.aux_pool, nn.AdaptiveAvgPool2d)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 2)


@pytest.mark.parametrize("name", ["SqueezeExcitation", "SEModule", "SqueezeExcite"])
def test_squeeze_excitation_pools_known_by_name_are_left_alone(name) -> None:
    model, names = blaify(ExcitationRegisteredLast(name), input_size=8)
    assert names == ["avgpool"]
    assert isinstance(model.excite.pool, nn.AdaptiveAvgPool2d)
    assert isinstance(model.avgpool, BoundedLogitAttention)


def test_a_functional_pool_family_with_a_global_pool_already_is_refused() -> None:
    model = torchvision.models.MobileNetV2(num_classes=3, width_mult=0.25)
    model.features.add_module("global_pool", nn.Identity())  # e.g. made LAP already
    with pytest.raises(ValueError, match=r"features\.global_pool already exists"):
        blaify(model, input_size=32)
    assert isinstance(model.features.global_pool, nn.Identity)
