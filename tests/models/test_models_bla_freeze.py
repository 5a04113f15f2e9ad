"""freeze_features (paper 002, 4.2): "The parameters of F are pretrained on ImageNet and held
fixed ... F continues to be held fixed, while L, Q are trained". BLA/BLA-T/L2X-F hold the
feature extractor fixed when the run starts from pretrained weights ("auto"), or as asked."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torchvision
from safetensors.torch import save_file

from torchlap.models import blaify
from torchlap.models.build import modules_after
from torchlap.models.recipes import (
    RECIPES,
    build_classifier,
    build_for_training,
    check_freeze_features,
)
from torchlap.train.config import PhaseConfig
from torchlap.train.module import set_trainable

SIZE = 32


def _config(model: str = "bla", **changes: object) -> SimpleNamespace:
    """A TrainConfig-like object (the recipe reads these attributes; freeze_features is read
    with getattr, so configs without the field keep "auto")."""
    fields = {"model": model, "lap": "none", "arch": "smallcnn", "pretrained": None}
    return SimpleNamespace(**{**fields, "image_size": SIZE, **changes})


@pytest.fixture
def vanilla_file(tmp_path) -> str:
    """A trained vanilla SmallCNN's weights: a pretrained F."""
    net, _ = build_classifier("smallcnn", 2, 3, "none", 1)
    path = tmp_path / "vanilla.safetensors"
    save_file(net.state_dict(), str(path))
    return str(path)


def _phases(model: str, config: SimpleNamespace, *trains: str) -> tuple[list[str], object]:
    built = build_for_training(config, 2, 3)
    phases = [PhaseConfig(epochs=1, train=train) for train in trains or ("all",)]
    return [p.train for p in RECIPES[model].phases(phases, built.record)], built


@pytest.mark.parametrize("model", ["bla", "bla-t", "l2x-f"])
def test_from_pretrained_weights_auto_holds_the_feature_extractor_fixed(model, vanilla_file):
    trains, built = _phases(model, _config(model, pretrained=vanilla_file))
    assert trains == ["avgpool,fc"]  # the BLA module and the head
    assert built.record["blaify"]["features_frozen"] is True
    assert built.record["blaify"]["head"] == ["fc"]
    phase = PhaseConfig(epochs=1, train=trains[0])
    trainable = set_trainable(built.net, phase)
    assert trainable and all(name.startswith(("avgpool.", "fc.")) for name in trainable)
    assert not any(p.requires_grad for p in built.net.layer3.parameters())


def test_from_scratch_auto_trains_everything_and_the_option_overrides_auto(vanilla_file):
    assert _phases("bla", _config())[0] == ["all"]  # the built-in data: no pretrained F
    assert _phases("bla-t", _config("bla-t", freeze_features=True))[0] == ["avgpool,fc"]
    unfrozen = _config(pretrained=vanilla_file, freeze_features=False)
    trains, built = _phases("bla", unfrozen)
    assert trains == ["all"] and built.record["blaify"]["features_frozen"] is False
    assert _phases("bla-ph", _config("bla-ph", freeze_features=True))[0] == ["avgpool"]


def test_phases_training_the_frozen_feature_extractor_are_refused(vanilla_file):
    config = _config(pretrained=vanilla_file)
    assert _phases("bla", config, "fc", "avgpool,net.fc")[0] == ["fc", "avgpool,net.fc"]
    with pytest.raises(ValueError, match=r"phase 2 trains 'layer3,fc'.*held fixed.*avgpool,fc"):
        _phases("bla", config, "fc", "layer3,fc")
    assert _phases("bla", _config(), "layer3,fc")[0] == ["layer3,fc"]  # F trains from scratch


def test_freeze_features_is_checked():
    for value in ("auto", True, False):
        assert check_freeze_features(value, "bla") == value
    for bad in ("true", 1, None, 0.0):
        with pytest.raises(TypeError, match=r"freeze_features must be 'auto', True or False"):
            check_freeze_features(bad, "bla")
    with pytest.raises(ValueError, match=r"not for --model bla-ph.*always holds it fixed"):
        check_freeze_features(False, "bla-ph")
    with pytest.raises(ValueError, match=r"not for --model lap.*use 'auto'"):
        check_freeze_features(True, "lap")
    assert check_freeze_features("auto", "lap") == "auto"
    with pytest.raises(TypeError, match="freeze_features must be"):
        build_for_training(_config(freeze_features="yes"), 2, 3)  # before anything is built
    with pytest.raises(ValueError, match="not for --model bla-ph"):
        build_for_training(_config("bla-ph", freeze_features=False), 2, 3)


@pytest.mark.parametrize(
    ("arch", "head"),
    [("resnet18", ["fc"]), ("densenet121", ["classifier"]), ("mobilenet_v3_small", ["classifier"])],
)
def test_the_head_after_the_bla_module_of_torchvision_families(arch, head):
    net = torchvision.models.get_model(arch, num_classes=2)
    _, (name,) = blaify(net, input_size=64)
    assert modules_after(net, name) == head
