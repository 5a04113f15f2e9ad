"""build_model / model_from_config: architecture by name, input channels, classes, weights."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from torchlap.layers import lap_modules
from torchlap.models import adapt_input_weight, build_model, model_from_config
from torchlap.models.wrapping import unwrap_normalized_state
from torchlap.runs import pretrained_weights


def test_build_grayscale_resnet18_with_the_paper_preset_and_rebuild_it():
    model = build_model("resnet18", num_classes=2, in_channels=1, lap="resnet18", input_size=64)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 2
    assert list(lap_modules(model)) == ["layer2.0.lap", "layer3.0.lap", "layer4.0.lap", "avgpool"]
    config = json.loads(json.dumps(model.torchlap_config))
    assert config["arch"] == "resnet18" and config["in_channels"] == 1
    assert config["lap"] == "resnet18" and config["lapify"][0]["where"] == "resnet18"
    rebuilt = model_from_config(config)
    rebuilt.load_state_dict(model.state_dict())  # strict: the same module tree
    model.eval()
    rebuilt.eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    assert rebuilt.torchlap_config == config


def test_build_without_lap():
    model = build_model("mobilenet_v3_small", num_classes=4, lap="none")
    assert not lap_modules(model) and model.torchlap_config["lapify"] == []
    assert model.classifier[-1].out_features == 4


def test_clear_errors():
    with pytest.raises(ValueError, match=r"unknown architecture 'resnt18'.*resnet18"):
        build_model("resnt18", 2)
    with pytest.raises(ValueError, match="preset 'inception_v3' does not fit"):
        build_model("resnet18", 2, lap="inception_v3")
    with pytest.raises(ValueError, match="unknown lap="):
        build_model("resnet18", 2, lap="everywhere")
    with pytest.raises(ValueError, match="num_classes must be an int >= 1, got 0"):
        build_model("resnet18", 0)
    with pytest.raises(TypeError, match=r"in_channels must be an int >= 1, got 3\.0"):
        build_model("resnet18", 2, in_channels=3.0)
    with pytest.raises(ValueError, match=r"unknown weights 'IMAGENET9K'.*IMAGENET1K_V1"):
        build_model("resnet18", 2, pretrained="IMAGENET9K")
    with pytest.raises(FileNotFoundError, match="not found"):
        build_model("resnet18", 2, pretrained="/nonexistent/weights.safetensors")


def test_pretrained_safetensors_are_adapted_to_gray_inputs_and_new_classes(tmp_path, caplog):
    base = torchvision.models.resnet18(weights=None)  # a stand-in for ImageNet weights
    path = tmp_path / "resnet18.safetensors"
    save_file(base.state_dict(), str(path))
    with caplog.at_level(logging.WARNING, logger="torchlap"):
        model = build_model(
            "resnet18", num_classes=3, in_channels=1, lap="global", pretrained=str(path),
            input_size=64,
        )  # fmt: skip
    assert "fc is a classifier for 1000 classes, this model has 3: left fresh" in caplog.text
    torch.testing.assert_close(model.conv1.weight, base.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.layer3[1].conv2.weight, base.layer3[1].conv2.weight)
    assert model.fc.out_features == 3  # 1000 ImageNet classes -> left fresh
    # a gray image seen as (g, g, g) by the RGB model gives the same features
    gray = torch.randn(1, 1, 64, 64)
    base.eval()
    model.eval()
    with torch.no_grad():
        trunk = nn.Sequential(*list(base.children())[:-1])
        expected = trunk(gray.expand(1, 3, 64, 64)).flatten(1)
        features = nn.Sequential(*list(model.children())[:-1])(gray).flatten(1)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)


def test_pretrained_safetensors_of_a_lap_model_and_of_another_arch(tmp_path):
    model = build_model("resnet18", num_classes=3, lap="resnet18", input_size=64).eval()
    path = tmp_path / "lap.safetensors"
    save_file(model.state_dict(), str(path))
    loaded = build_model(
        "resnet18", num_classes=3, lap="resnet18", input_size=64, pretrained=str(path)
    ).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ValueError, match="does not hold weights of this architecture"):
        build_model("mobilenet_v3_small", num_classes=3, lap="none", pretrained=str(path))


def test_pretrained_weights_of_another_architecture_are_not_called_other_classes(tmp_path, caplog):
    """ResNet-50 weights into a ResNet18: its fc reads 2048 features, not 512. It was dropped
    with a warning about "another number of classes" before the architecture was refused; now
    the refusal names the classifier's shapes among the mismatches, and nothing says classes."""
    path = tmp_path / "resnet50.safetensors"
    save_file(torchvision.models.resnet50(weights=None).state_dict(), str(path))
    refused = pytest.raises(ValueError, match=r"does not hold weights.*fc\.weight \(1000, 2048\)")
    with caplog.at_level(logging.WARNING, logger="torchlap"), refused:
        build_model("resnet18", num_classes=3, lap="none", pretrained=str(path))
    assert "classes" not in caplog.text


def test_pretrained_torchlap_run_weights_strip_the_normalizer_prefix(tmp_path):
    model = build_model("resnet18", num_classes=2, lap="none").eval()
    run = tmp_path / "vanilla"
    run.mkdir()
    state = {f"net.{k}": v for k, v in model.state_dict().items()}
    state |= {"normalize.mean": torch.zeros(3), "normalize.std": torch.ones(3)}
    save_file(state, str(run / "model.safetensors"), metadata={"format": "torchlap-run"})
    # a run's layout is torchlap.runs's: the folder resolves to its weights file there
    assert pretrained_weights(run) == str(run / "model.safetensors")
    assert pretrained_weights("IMAGENET1K_V1") == "IMAGENET1K_V1"
    x = torch.randn(1, 3, 32, 32)
    for pretrained in (pretrained_weights(run), run / "model.safetensors"):
        loaded = build_model("resnet18", num_classes=2, lap="none", pretrained=str(pretrained))
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(x), model(x))
    # the layout, not the metadata, says a file holds a NormalizedClassifier's weights
    bare = tmp_path / "bare.safetensors"
    save_file(state, str(bare))
    loaded = build_model("resnet18", num_classes=2, lap="none", pretrained=str(bare))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x))
    with pytest.raises(ValueError, match=r"is a folder.*pretrained_weights"):
        build_model("resnet18", 2, lap="none", pretrained=str(run))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no model\.safetensors"):
        pretrained_weights(tmp_path / "empty")


def test_unwrap_normalized_state_needs_the_whole_wrapper_layout():
    net = {"net.fc.weight": torch.ones(1), "net.fc.bias": torch.zeros(1)}
    normalizer = {"normalize.mean": torch.zeros(3), "normalize.std": torch.ones(3)}
    unwrapped = unwrap_normalized_state(net | normalizer)
    assert unwrapped is not None and list(unwrapped) == ["fc.weight", "fc.bias"]
    assert unwrap_normalized_state(net) is None  # no normalizer: not a wrapper's state
    assert unwrap_normalized_state(normalizer) is None  # no network
    assert unwrap_normalized_state(net | normalizer | {"fc.weight": torch.ones(1)}) is None


def test_adapt_input_weight_keeps_the_response_to_constant_images():
    weight = torch.randn(4, 3, 3, 3)
    for channels in (1, 3, 6):
        adapted = adapt_input_weight(weight, channels)
        assert adapted.shape == (4, channels, 3, 3)
        torch.testing.assert_close(adapted.sum(1), weight.sum(1))
    assert adapt_input_weight(weight, 5).shape == (4, 5, 3, 3)
    torch.testing.assert_close(adapt_input_weight(weight, 2)[:, 1], weight[:, 1] * 1.5)
