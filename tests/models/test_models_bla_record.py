"""What ``blaify`` records (``model.torchlap_config["blaify"]``, every field written out by hand)
and what it builds from the options: the module's settings, a resized head's bias, dtype and
placement, the probe's ``input_size``; the record replays into the same module."""

from __future__ import annotations

import json

import pytest
import torch
from test_models_bla_refusals import TinyNet
from torch import nn

from torchlap.models.bla import (
    BoundedLogitAttention,
    L2XFeatureSelection,
    apply_blaify_config,
    blaify,
)


class GridHead(nn.Module):
    """VGG's layout, a 2x2 grid read by a bias-free ``Linear(8 * 4, 5)``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(32, 5, bias=False), nn.ReLU(), nn.Linear(5, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_the_record_of_a_bla_t_call_field_by_field() -> None:
    model, _ = blaify(
        TinyNet(), "bla-t", theta=0.25, input_size=(4, 6), eval_path="soft", init="zeros",
        pool="normalized", gamma_factor=0.5,
    )  # fmt: skip
    entry = model.torchlap_config["blaify"]
    assert entry == {
        "variant": "bla-t",
        "module_name": "avgpool",
        "where": None,
        "in_channels": 16,
        "theta": 0.25,
        "gamma": None,
        "gamma_factor": 0.5,
        "k": 8,
        "tau": 10.0,
        "pool": "normalized",
        "eval_path": "soft",
        "init": "zeros",
        "input_size": [4, 6],
        "resize_head": False,
        "resized_head": None,
        "frozen": False,
    }
    module = model.avgpool
    assert isinstance(module, BoundedLogitAttention) and module.threshold
    assert (module.theta, module.gamma, module.gamma_factor) == (0.25, None, 0.5)
    assert (module.eval_path, module.pool) == ("soft", "normalized")
    assert float(module.scorer.weight.detach().abs().sum()) == 0.0  # init="zeros"
    rebuilt = apply_blaify_config(TinyNet(), json.loads(json.dumps(entry)))
    assert rebuilt.torchlap_config["blaify"] == entry


@pytest.mark.parametrize(("variant", "threshold"), [("bla", False), ("bla-ph", True)])
def test_the_variant_sets_the_threshold_and_the_freezing(variant, threshold) -> None:
    model, _ = blaify(TinyNet(), variant, where="avgpool", in_channels=16)
    entry = model.torchlap_config["blaify"]
    assert model.avgpool.threshold is threshold
    assert entry["where"] == "avgpool" and entry["frozen"] is (variant == "bla-ph")
    assert entry["gamma_factor"] == (1.0 if threshold else None)  # the paper's 1/n
    assert entry["input_size"] is None


def test_l2x_f_takes_its_k_tau_and_pool() -> None:
    model, _ = blaify(TinyNet(), "l2x-f", k=3, tau=2.5, input_size=4, pool="normalized")
    module = model.avgpool
    assert isinstance(module, L2XFeatureSelection)
    assert (module.k, module.tau, module.pool) == (3, 2.5, "normalized")
    entry = model.torchlap_config["blaify"]
    assert (entry["k"], entry["tau"], entry["input_size"]) == (3, 2.5, 4)


def test_a_resized_head_keeps_the_old_heads_bias_choice_and_dtype() -> None:
    model, _ = blaify(GridHead().double(), input_size=8, resize_head=True)
    head = model.classifier[0]
    assert (head.in_features, head.out_features) == (8, 5) and head.bias is None
    assert head.weight.dtype == torch.float64 and model.avgpool.scorer.weight.dtype == torch.float64
    assert model.torchlap_config["blaify"]["resize_head"] is True
    assert model(torch.rand(2, 3, 8, 8, dtype=torch.float64)).shape == (2, 3)


def test_a_bad_probe_size_is_refused_before_the_model_changes() -> None:
    model = TinyNet()
    with pytest.raises(ValueError, match="input_size"):
        blaify(model, input_size=(0, 4))
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)


class ForwardFails(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no forward pass expected")


def test_the_papers_temperature_and_no_probe_when_the_channels_are_given() -> None:
    model, _ = blaify(ForwardFails(), in_channels=16)  # a global pool: no dry forward pass
    assert model.avgpool.theta == 0.1  # paper 002, section 4.2: "temperature theta = 0.1"
    assert model.torchlap_config["blaify"]["theta"] == 0.1
