"""``TrainConfig.validate``'s LAP-layer settings (:mod:`torchlap.train.lap_settings`) where the
heads have no hidden channels: paper 000's ImageNet setup scores its heads with "a 1x1
convolution layer with 1000 heads" (hidden_channels 0, the ``resnet50-imagenet`` preset), which
is accepted with shared heads; ``--head-hidden per_head`` is refused there, naming what set the
heads' hidden channels to 0 (the user's ``--hidden-channels 0`` or the preset)."""

from __future__ import annotations

from typing import Any

import pytest

from torchlap.train import TrainConfig


def _config(**changes: Any) -> TrainConfig:
    return TrainConfig(data="concepts", out="runs/x", **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"hidden_channels": 0},
        {"lap": "resnet50-imagenet", "arch": "resnet50"},
        {"lap": "resnet18", "arch": "resnet18", "hidden_channels": 0},
    ],
)
def test_heads_without_hidden_channels_are_accepted_when_shared(changes: dict) -> None:
    assert _config(**changes).validate() is None


@pytest.mark.parametrize(
    ("changes", "source"),
    [
        ({"hidden_channels": 0}, "--hidden-channels 0"),
        # the preset's 8 hidden channels, set to 0 by the user: the user's flag is named
        ({"lap": "resnet18", "arch": "resnet18", "hidden_channels": 0}, "--hidden-channels 0"),
        ({"lap": "resnet50-imagenet", "arch": "resnet50"}, "the --lap resnet50-imagenet preset"),
    ],
)
def test_per_head_without_hidden_channels_names_what_set_them(changes: dict, source: str) -> None:
    with pytest.raises(ValueError) as caught:
        _config(head_hidden="per_head", **changes).validate()
    assert f"(hidden_channels 0: one 1x1 convolution, {source})" in str(caught.value)
