"""Every module lapify puts into a model takes the train/eval flag of what it replaces (or of
the container it is appended to), in both states: the model's train/eval state is the user's
setting, and lapify must not change it for a part of the model."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from torchlap import lapify


def flags(model: nn.Module, name: str) -> set[bool]:
    return {m.training for m in model.get_submodule(name).modules()}


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_a_replaced_pool_and_the_global_pool_keep_the_model_flag(training):
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).train(training)
    _, names = lapify(model, ["1", "2"], input_size=16)
    assert names == ["1", "2"]
    assert flags(model, "1") == flags(model, "2") == {training}


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_an_appended_global_pool_takes_the_flag_of_its_container(training):
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=3, width_mult=0.25)
    model.train(training)
    lapify(model, where=["features.global_pool"])
    assert flags(model, "features.global_pool") == {training}
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 32, 32))  # still a working model
