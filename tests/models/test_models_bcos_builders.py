"""B-cos builders (``torchlap.models.bcos``): the architecture list, the refusals of the
builders, the model without the extra, and torchlap's B-cos small CNN against a slow reference
written from the B-cos definition (Böhle et al. 2022; the ``bcos`` package's ``BcosConv2d``)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys

import pytest
import torch
from torch import Tensor, nn

from torchlap.models.bcos import bcos_available

# the package's own presence, not bcos_available(), which the first test checks
if importlib.util.find_spec("bcos") is None:  # pragma: no cover - `make test` installs it
    pytest.skip(
        "the bcos extra is not installed (pip install 'torchlap[bcos]')", allow_module_level=True
    )

from torchlap.models.bcos import (
    BcosClassifier,
    BcosSmallCNN,
    bcos_architectures,
    build_bcos,
    find_bcos,
)


def test_with_the_package_installed_b_cos_is_available() -> None:
    assert bcos_available()
    assert "smallcnn" in bcos_architectures()


def test_without_the_package_every_builder_names_the_extra(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "bcos.models.resnet", None)  # an import of it fails
    assert not bcos_available()
    with pytest.raises(ImportError, match=r"pip install 'torchlap\[bcos\]'"):
        bcos_architectures()
    with pytest.raises(ImportError, match=r"pip install 'torchlap\[bcos\]'"):
        build_bcos("resnet18", 2)


def test_the_architectures_are_the_packages_model_functions_and_smallcnn() -> None:
    expected = {"smallcnn"}
    for family in ("resnet", "vgg", "densenet"):
        module = importlib.import_module(f"bcos.models.{family}")
        expected |= {n for n in module.__all__ if inspect.isfunction(getattr(module, n))}
    names = bcos_architectures()
    assert names == sorted(expected)
    assert {"resnet18", "cifar10_resnet20", "vgg11_bnu", "densenet121"} <= set(names)
    assert "BcosResNet" not in names


def test_unknown_architectures_are_refused_with_close_names_and_the_list() -> None:
    with pytest.raises(TypeError, match="arch must be a B-cos model name"):
        build_bcos(18, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'resnet19'\. Did you mean \[[^]]*\]\? Known: ") as info:
        build_bcos("resnet19", 2)
    close = info.value.args[0].split("Did you mean ")[1].split("?")[0]
    assert close.count("'") == 6  # three close names
    with pytest.raises(
        ValueError, match=r"unknown B-cos architecture 'zzz'\. Known: cifar10_densenet100, "
    ):
        build_bcos("zzz", 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": True}, "num_classes must be an int >= 1, got True"),
        ({"num_classes": 0}, "num_classes must be an int >= 1, got 0"),
        ({"num_classes": 2.0}, "num_classes must be an int >= 1, got 2.0"),
        ({"num_classes": 1}, "at least 2 classes"),
        ({"in_channels": 0}, "in_channels must be an int >= 1, got 0"),
        ({"in_channels": False}, "in_channels must be an int >= 1"),
        ({"norm": "batch"}, "unknown B-cos norm 'batch'"),
    ],
)
def test_classifier_arguments_are_refused(kwargs: dict, match: str) -> None:
    arguments = {"arch": "smallcnn", "num_classes": 2, "in_channels": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_bcos(**arguments)


def test_the_classifier_defaults_to_rgb_images_and_the_position_norm() -> None:
    config = BcosClassifier("smallcnn", 2).torchlap_config
    assert config == {"arch": "smallcnn", "num_classes": 2, "in_channels": 3, "norm": "position"}
    assert build_bcos("smallcnn", 2).torchlap_config == config


def test_the_classifier_checks_its_images_and_is_found_inside_a_wrapper() -> None:
    model = build_bcos("smallcnn", 2, in_channels=2)
    assert model.encode_channels == 4 and model.torchlap_config["in_channels"] == 2
    assert model(torch.rand(1, 2, 8, 8)).shape == (1, 2)
    for bad in (torch.rand(1, 1, 8, 8), torch.rand(1, 4, 8, 8), torch.rand(2, 8, 8)):
        with pytest.raises(ValueError, match=r"expected \(B, 2, H, W\) images in \[0, 1\]"):
            model(bad)
    wrapper = nn.Sequential(nn.Identity(), model)
    assert find_bcos(wrapper) is model and find_bcos(model) is model
    assert find_bcos(nn.Sequential(nn.Conv2d(1, 1, 1))) is None


def test_the_small_cnn_has_the_documented_shapes() -> None:
    # three 3x3 stages of width 8, 16, 32 with MaxOut 2 (two units per channel), a 1x1
    # classifier: a saved run's weights load only into these shapes
    net = build_bcos("smallcnn", 5, in_channels=1).net
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters() if "linear" in name}
    assert shapes == {
        "layer1.conv.linear.weight": (16, 2, 3, 3),
        "layer2.conv.linear.weight": (32, 8, 3, 3),
        "layer3.conv.linear.weight": (64, 16, 3, 3),
        "fc.linear.weight": (5, 32, 1, 1),
    }


def _bcos_conv(x: Tensor, weight: Tensor, max_out: int, padding: int) -> Tensor:
    """B-cos convolution (B = 2), position by position: with unit-norm rows w_j and the
    (zero-padded) patch p, z_o = max over the o-th ``max_out`` units of w_j . p and the output
    is |z_o| z_o / ||p|| (the package adds 1e-6 to ||p||^2)."""
    w = weight / weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    channels, height, width = x.shape
    k = weight.shape[-1]
    padded = torch.zeros(channels, height + 2 * padding, width + 2 * padding, dtype=x.dtype)
    padded[:, padding : padding + height, padding : padding + width] = x
    outs = weight.shape[0] // max_out
    out = torch.zeros(outs, height + 2 * padding - k + 1, width + 2 * padding - k + 1)
    out = out.to(x.dtype)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            patch = padded[:, i : i + k, j : j + k]
            norm = math.sqrt(float((patch**2).sum()) + 1e-6)
            for o in range(outs):
                z = max(float((w[o * max_out + m] * patch).sum()) for m in range(max_out))
                out[o, i, j] = abs(z) * z / norm
    return out


def _avg_pool2(x: Tensor) -> Tensor:
    out = torch.zeros(x.shape[0], x.shape[1] // 2, x.shape[2] // 2, dtype=x.dtype)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(dim=(1, 2))
    return out


def test_the_small_cnn_without_norms_matches_the_b_cos_definition() -> None:
    torch.manual_seed(0)
    num_classes = 4
    net = BcosSmallCNN(num_classes, in_chans=2, norm_layer=lambda c: nn.Identity(), width=3)
    net = net.double().eval()
    image = torch.rand(1, 8, 8, dtype=torch.float64)
    x = torch.cat([image, 1 - image])  # the encoding [x, 1 - x]
    for name in ("layer1", "layer2", "layer3"):
        conv = getattr(net, name).conv
        x = _avg_pool2(_bcos_conv(x, conv.linear.weight.detach(), 2, padding=1))
    x = _bcos_conv(x, net.fc.linear.weight.detach(), 1, padding=0)
    expected = x.mean(dim=(1, 2)) - math.log(num_classes - 1)  # avgpool, the logit bias
    with torch.no_grad():
        got = net(torch.cat([image, 1 - image])[None])
    torch.testing.assert_close(got[0], expected)
