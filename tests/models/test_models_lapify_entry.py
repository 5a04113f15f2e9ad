"""lapify's entry point and freeze_all_but_lap: a TorchScript model refused before any change
(the torch.compile wrapper's refusal is in tests/readme_refusal_runs.py: importing dynamo is
slow), the first problem reported first, and the log line naming what was replaced."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from torchlap import freeze_all_but_lap, lapify
from torchlap.layers import LapBase


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 2),
    ).eval()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_refuses_a_torchscript_module_and_says_to_lapify_first():
    scripted = torch.jit.script(small_cnn())
    with pytest.raises(TypeError, match=r"TorchScript module .* lapify the nn\.Module first"):
        lapify(scripted, where=["2"])
    assert not any(isinstance(m, LapBase) for m in scripted.modules())


def test_freeze_reports_the_missing_lap_before_a_bad_module_name():
    model = small_cnn()
    with pytest.raises(ValueError, match=r"no LAP layer; put some in with torchlap\.lapify"):
        freeze_all_but_lap(model, ["no_such_module"])
    assert all(p.requires_grad for p in model.parameters())


def test_logs_the_names_of_the_replaced_modules(caplog):
    model = small_cnn()
    with caplog.at_level(logging.INFO, logger="torchlap.models.lapify"):
        _, names = lapify(model, where=["2", "4"])
    assert names == ["2", "4"]
    assert "lapify: replaced ['2', '4']" in caplog.messages
