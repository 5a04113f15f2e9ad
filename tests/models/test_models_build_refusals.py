"""build_model's refusals and choices before any weights are read: the architecture name, the
``lap`` value (every preset of paper 000 accepted, its LAP layers where the paper puts them),
the ``pretrained`` value (a weights name, a path, a folder), the recorded config, and
model_from_config's refusals. No network: a download is refused by a monkeypatched
torch.hub, whose URL says which weights were asked for."""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
from pathlib import Path

import pytest
import torch
import torch.hub
import torchvision
from torch import nn

from torchlap.layers import lap_modules
from torchlap.models import PRESETS, apply_lapify_config, build, lapify
from torchlap.models.build import build_model, check_pretrained_name, model_from_config


def test_an_arch_that_is_not_a_name_or_not_a_classifier_is_refused() -> None:
    with pytest.raises(TypeError, match=r"arch must be a torchvision model name \(str\), got int"):
        build_model(18, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown architecture 'resnet181'\. Did you mean"):
        build_model("resnet181", 2)
    with pytest.raises(ValueError, match=r"Did you mean (\[.*?\])\?") as info:
        build_model("resnet", 2)  # resnet18, 34, 50, 101, 152 are all close: three named
    close = ast.literal_eval(re.search(r"Did you mean (\[.*?\])\?", str(info.value)).group(1))
    assert len(close) == 3 and all(name.startswith("resnet") for name in close)
    # nothing close: no "Did you mean", but the known ones named
    with pytest.raises(ValueError, match=r"unknown architecture 'zzzzzzzz'\. Known") as info:
        build_model("zzzzzzzz", 2)
    assert "Did you mean" not in str(info.value)
    # a torchvision model that is not a classifier (detection) is no classifier name either
    with pytest.raises(ValueError, match="unknown architecture 'fasterrcnn_resnet50_fpn'"):
        build_model("fasterrcnn_resnet50_fpn", 2)


@pytest.mark.parametrize("lap", [3, 2.5, {"layer2.0": 1}])
def test_a_lap_that_is_neither_a_str_nor_a_list_is_refused(lap: object) -> None:
    with pytest.raises(TypeError, match="lap must be a str, a list of module names or None"):
        build_model("resnet18", 2, lap=lap)  # type: ignore[arg-type]


@pytest.mark.parametrize("lap", ["none", None])
def test_no_lap_leaves_the_options_unchecked_and_builds_no_lap_layer(lap: str | None) -> None:
    model = build_model("resnet18", 2, lap=lap, n_concepts=0, aggregation="magic")
    assert not lap_modules(model) and model.torchlap_config["lapify"] == []
    assert model.torchlap_config["lap"] == lap


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_passes_the_early_check(preset: str) -> None:
    build._check_lap_args(preset, 1, 8, "max", 1.0, 1e-6)  # no error: lapify fits it later


def test_the_papers_resnet_presets_put_lap_where_the_paper_says() -> None:
    """Paper 000 IV.A: "three LAP modules in blocks 2, 3, and 4 of ResNet 18 ... The adaptive
    pooling was replaced with adaptive LAP"; IV.B (ImageNet): "we only used a LAP in the fourth
    layer" of ResNet 50 (the global pool kept)."""
    model = build_model("resnet18", 2, lap="resnet18", input_size=64)
    assert list(lap_modules(model)) == ["layer2.0.lap", "layer3.0.lap", "layer4.0.lap", "avgpool"]
    assert isinstance(model.layer1[0].conv1, nn.Conv2d)  # block 1 untouched
    imagenet = build_model("resnet50", 4, lap="resnet50-imagenet", n_concepts=4, input_size=64)
    assert list(lap_modules(imagenet)) == ["layer4.0.lap"]
    assert isinstance(imagenet.avgpool, nn.AdaptiveAvgPool2d)


def test_the_papers_inception_preset_and_no_auxiliary_classifier() -> None:
    """Paper 000 IV.A: LAPs at "maxpool2, Mixed6a, and Mixed7a of Inception V3" and the
    adaptive pooling; build_model builds Inception v3 without its auxiliary classifier."""
    model = build_model("inception_v3", 2, lap="inception_v3", input_size=75)
    assert list(lap_modules(model)) == ["maxpool2", "Mixed_6a.lap", "Mixed_7a.lap", "avgpool"]
    assert model.AuxLogits is None and model.aux_logits is False
    assert model.transform_input is False  # torchvision's default without weights
    kwargs = {"transform_input": True}  # its RGB re-normalisation cannot read one channel
    gray = build_model("inception_v3", 2, in_channels=1, lap="none", arch_kwargs=kwargs)
    assert gray.Conv2d_1a_3x3.conv.in_channels == 1 and gray.transform_input is False


def test_a_list_lap_is_recorded_as_a_list_and_a_missing_module_names_lap() -> None:
    model = build_model("resnet18", 2, lap=("layer3.0", "avgpool"), input_size=64)
    assert list(lap_modules(model)) == ["layer3.0.lap", "avgpool"]
    assert model.torchlap_config["lap"] == ["layer3.0", "avgpool"]
    json.dumps(model.torchlap_config)
    with pytest.raises(ValueError, match=r"^lap \(--lap\) \['layer9'\]: the model has no module"):
        build_model("resnet18", 2, lap=["layer9"])


def test_a_lapify_error_other_than_a_missing_module_is_not_renamed(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise ValueError("something else")

    monkeypatch.setattr(build, "lapify", refuse)
    with pytest.raises(ValueError, match=r"^something else$"):
        build_model("resnet18", 2, lap="auto")


def test_arch_kwargs_must_be_json() -> None:
    with pytest.raises(TypeError, match="arch_kwargs must be JSON-serialisable"):
        build_model("resnet18", 2, lap="none", arch_kwargs={"norm_layer": nn.BatchNorm2d})
    model = build_model("resnet18", 2, lap="none", arch_kwargs={"zero_init_residual": True})
    assert model.torchlap_config["arch_kwargs"] == {"zero_init_residual": True}
    assert torch.count_nonzero(model.layer1[0].bn2.weight) == 0  # the kwarg reached torchvision


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """An empty torch hub cache whose downloads fail; the list collects the URLs asked for."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    urls: list[str] = []

    def download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True):
        urls.append(url)
        raise OSError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return urls


@pytest.mark.parametrize(
    ("name", "weights"),
    [
        ("DEFAULT", torchvision.models.ResNet50_Weights.IMAGENET1K_V2),
        ("IMAGENET1K_V1", torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
        ("IMAGENET1K_V2", torchvision.models.ResNet50_Weights.IMAGENET1K_V2),
    ],
)
def test_a_weights_name_asks_for_those_weights(offline, name: str, weights) -> None:
    with pytest.raises(OSError, match="cannot download"):
        build_model("resnet50", 2, lap="none", pretrained=name)
    assert offline == [weights.url]


def test_a_pretrained_that_is_not_a_str_or_path_is_refused(offline) -> None:
    with pytest.raises(TypeError, match="pretrained must be a str or a path, got 1"):
        build_model("resnet18", 2, lap="none", pretrained=1)  # type: ignore[arg-type]
    assert offline == []


def test_a_path_is_a_file_to_read_never_a_weights_name(offline, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for value in ("weights.safetensors", f"sub{os.sep}IMAGENET1K_V1", "sub/IMAGENET1K_V1"):
        with pytest.raises(FileNotFoundError, match="pretrained weights file not found"):
            build_model("resnet18", 2, lap="none", pretrained=value)
        assert check_pretrained_name("resnet18", value) is None
    # a folder, even one named like no path: refused as a folder (the caller resolves runs)
    (tmp_path / "myrun").mkdir()
    with pytest.raises(ValueError, match=r"'myrun' is a folder: pass a \.safetensors file"):
        build_model("resnet18", 2, lap="none", pretrained="myrun")
    with pytest.raises(ValueError, match="is a folder"):
        build_model("resnet18", 2, lap="none", pretrained=Path("myrun"))
    with pytest.raises(ValueError, match="is a folder"):
        build.load_pretrained_file(nn.Linear(2, 2), "myrun", 3)
    assert check_pretrained_name("resnet18", "myrun") is None
    # without the folder, the same word is a weights name resnet18 does not have
    with pytest.raises(ValueError, match=r"unknown weights 'yourrun' for resnet18"):
        check_pretrained_name("resnet18", "yourrun")
    with pytest.raises(FileNotFoundError, match="not found"):
        build.load_pretrained_file(nn.Linear(2, 2), tmp_path / "none.safetensors", 3)
    assert offline == []


def test_check_pretrained_name_leaves_other_values_and_archs_to_the_builder() -> None:
    assert check_pretrained_name("resnet18", None) is None
    assert check_pretrained_name("resnet18", 3) is None
    assert check_pretrained_name("smallcnn", "IMAGENET9K") is None
    assert check_pretrained_name(["resnet18"], "IMAGENET9K") is None
    assert check_pretrained_name("resnet18", "DEFAULT") is None
    with pytest.raises(ValueError, match=r"--pretrained.*unknown weights 'IMAGENET9K'"):
        check_pretrained_name("resnet18", "IMAGENET9K")


def test_model_from_config_refusals_and_the_recorded_pretrained() -> None:
    with pytest.raises(TypeError, match="config must be a dict, got list"):
        model_from_config([])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"config lacks \['num_classes'\]"):
        model_from_config({"arch": "resnet18"})
    with pytest.raises(ValueError, match=r"config lacks \['arch', 'num_classes'\]"):
        model_from_config({})
    model = build_model("resnet18", 3, in_channels=1, lap=["layer4.0"], input_size=64)
    config = json.loads(json.dumps(model.torchlap_config))
    config["pretrained"] = "IMAGENET1K_V1"  # recorded, never loaded by a rebuild
    rebuilt = model_from_config(config)
    assert rebuilt.torchlap_config["pretrained"] == "IMAGENET1K_V1"
    assert list(lap_modules(rebuilt)) == ["layer4.0.lap"]
    assert rebuilt.conv1.in_channels == 1 and rebuilt.fc.out_features == 3
    del config["pretrained"]
    assert model_from_config(config).torchlap_config["pretrained"] is None
    del config["in_channels"]  # a record without it: RGB, build_model's default
    assert model_from_config(config).conv1.in_channels == 3


def test_build_models_lap_options_default_to_lapifys() -> None:
    """The docstring: "The LAP options (...) are lapify's" (defaults included)."""
    model = build_model("resnet18", 2, lap=["layer4.0"], input_size=64)
    (call,) = model.torchlap_config["lapify"]
    defaults = inspect.signature(lapify).parameters
    for name in ("n_concepts", "hidden_channels", "aggregation", "alpha", "eps", "head_hidden"):
        assert call.get(name, "shared") == defaults[name].default, name
    assert model.conv1.in_channels == 3  # in_channels defaults to RGB


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        ({"sites": ["layer4.0", ""]}, ValueError, r"calls\[0\]\['sites'\] must be a non-empty"),
        ({"sites": ["layer4.0", 3]}, ValueError, r"calls\[0\]\['sites'\] must be a non-empty"),
        ({"sites": ("layer4.0",)}, ValueError, r"calls\[0\]\['sites'\] must be a non-empty"),
        ({"n_concepts": True}, TypeError, r"^calls\[0\]: n_concepts must be an int"),
        ({"n_concepts": 0}, ValueError, r"^calls\[0\]: n_concepts must be an int >= 1"),
    ],
)
def test_a_recorded_lapify_call_is_checked_before_it_is_replayed(edit, error, message) -> None:
    model = build_model("resnet18", 2, lap=["layer4.0"], input_size=64)
    call = {**model.torchlap_config["lapify"][0], **edit}
    fresh = build_model("resnet18", 2, lap="none")
    with pytest.raises(error, match=message):
        apply_lapify_config(fresh, [call], name="calls")
    assert not lap_modules(fresh)
