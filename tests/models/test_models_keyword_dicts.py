"""The dicts of keyword arguments the model builders pass on (``build_model``'s
``arch_kwargs``, the LAP blocks' ``lap_options``) are refused with a TypeError naming the
argument, what it got and what is accepted, before anything is built.

Before: ``dict(value or {})`` gave Python's "dictionary update sequence element #0 has length
1; 2 is required" for a text, took a 0, an empty text or a list as no keyword at all and a
list of pairs as a dict, and a key that is not a str failed in ``**`` ("keywords must be
strings") after the work had begun.
"""

from __future__ import annotations

import pytest
import torchvision
from torch import nn

from torchlap import models
from torchlap.models.recipes import build_classifier

BAD = [
    ("abc", r"got str 'abc'"),
    (0, r"got int 0"),
    ("", r"got str ''"),
    ([], r"got list \[\]"),
    ([("hidden_channels", 4)], r"got list \[\('hidden_channels', 4\)\]"),
]
KEYS = [({1: 2}, r"whose keys are str \(the keywords' names\), got the key 1 \(int\)")]


def _block() -> nn.Module:
    down = nn.Sequential(nn.Conv2d(4, 4, 1, 2, bias=False), nn.BatchNorm2d(4))
    return torchvision.models.resnet.BasicBlock(4, 4, 2, down)


def _reduction() -> nn.Module:
    return torchvision.models.inception.InceptionB(8)


BUILDERS = {
    "LapConv2d": lambda options: models.LapConv2d(3, 4, 3, 2, lap_options=options),
    "LapConv2d.from_conv": lambda options: models.LapConv2d.from_conv(
        nn.Conv2d(3, 4, 3, 2), lap_options=options
    ),
    "LapResidualBlock": lambda options: models.LapResidualBlock(_block(), lap_options=options),
    "LapInceptionReduction": lambda options: models.LapInceptionReduction(
        _reduction(), lap_options=options
    ),
    "build_classifier": lambda options: build_classifier(
        "resnet18", 3, 3, "auto", 1, lap_options=options
    ),
}


@pytest.mark.parametrize(("value", "got"), BAD + KEYS)
def test_build_model_refuses_arch_kwargs_that_are_not_keywords(value, got, monkeypatch) -> None:
    built = []
    monkeypatch.setattr(torchvision.models, "get_model", lambda *a, **k: built.append(a))
    accepted = r"arch_kwargs must be a dict of keyword arguments \(of torchvision's 'resnet18' "
    with pytest.raises(TypeError, match=accepted + r"constructor\).*" + got):
        models.build_model("resnet18", 3, arch_kwargs=value)
    assert built == []  # refused before the network is built


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize(("value", "got"), BAD + KEYS)
def test_the_lap_blocks_refuse_lap_options_that_are_not_keywords(builder, value, got) -> None:
    with pytest.raises(TypeError, match=r"lap_options must be a dict of keyword arguments.*" + got):
        BUILDERS[builder](value)


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_a_mapping_of_lap_options_is_taken(builder) -> None:
    """A dict (or None) is still what they take."""
    for options in (None, {"hidden_channels": 4}):
        assert isinstance(BUILDERS[builder](options), nn.Module | tuple)


def test_a_mapping_of_arch_kwargs_is_taken() -> None:
    model = models.build_model("resnet18", 3, lap=None, arch_kwargs={"zero_init_residual": True})
    assert not model.layer1[0].bn2.weight.any()  # (the keyword reached torchvision)
    assert models.build_model("resnet18", 3, lap=None, arch_kwargs=None) is not None
