"""Layer choices that cannot give a map are refused before any work: a 1x1 layer (the global
pool's output) for the CAM-style methods, repeated or out-of-order SISE layers; an unknown
layer name is refused suggesting the layers a CAM-style method is usually given."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from torchlap.explainers import GradCam, GuidedGradCam, RelevanceCam, ScoreCam, Sise, explain
from torchlap.models import lapify
from torchlap.models.antehoc import AnteHocModel
from torchlap.models.bla import blaify
from torchlap.models.wrapping import NormalizedClassifier, SmallCNN


def counted(model: nn.Module) -> tuple[nn.Module, list[int]]:
    """``model`` with a counter of its forward passes."""
    calls: list[int] = []
    model.register_forward_pre_hook(lambda *args: calls.append(1))
    return model, calls


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("gradcam", {"layer": "avgpool"}),
        ("guided_gradcam", {"layer": "avgpool"}),
        ("scorecam", {"layer": "avgpool"}),
        ("relevance_cam", {"layer": "avgpool"}),
        ("sise", {"layers": ["layer2", "avgpool"]}),
    ],
)
def test_a_1x1_layer_is_refused_naming_a_layer_before_the_global_pool(method, options):
    # Score-CAM and SISE gave all-zero maps, Grad-CAM and Relevance-CAM flat ones
    model, calls = counted(SmallCNN(3).eval())
    with pytest.raises(
        ValueError,
        match=r"layer 'avgpool' outputs 1x1 feature maps \(shape \(B, 32, 1, 1\) for 32x32 "
        r"images\).*flat map\); choose a layer before the global pool, e\.g\. the last block "
        r"'layer3'",
    ):
        explain(model, torch.rand(2, 3, 32, 32), method, **options)
    assert len(calls) == 1  # the one-image probe, no explanation pass


def test_a_layer_that_is_1x1_at_this_image_size_is_refused_by_check_layers():
    # evaluate resolves every method's layers on one image before any method runs
    model = SmallCNN(3).eval()
    images = torch.rand(1, 3, 16, 16)  # layer3 is 2x2 here, and 1x1 at 8 px
    GradCam(model, layer="layer3").check_layers(images)
    for explainer in (
        GradCam(model, layer="layer3"),
        ScoreCam(model, layer="layer3"),
        RelevanceCam(model, layer="layer3"),
        Sise(model, layers=["layer3"]),
    ):
        with pytest.raises(ValueError, match=r"'layer3' outputs 1x1 feature maps"):
            explainer.check_layers(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("size", [(32, 8), (8, 32)])
def test_a_layer_of_one_row_or_one_column_is_explained(size):
    # only 1x1 maps are flat: a 4x1 or 1x4 layer (a tall or wide image) keeps 4 pixels to weigh
    model = SmallCNN(3).eval()
    images = torch.rand(1, 3, *size)
    for explainer in (GradCam(model, layer="layer3"), Sise(model, layers=["layer3"])):
        explainer.check_layers(images)
    maps = GradCam(model, layer="layer3")(images)
    assert maps.shape[-2:] == size and torch.isfinite(maps).all()


def test_sise_refuses_repeated_layers_when_built():
    with pytest.raises(
        ValueError, match=r"layers lists \['layer1'\] more than once.*give distinct module names"
    ):
        Sise(SmallCNN(3), layers=["layer1", "layer2", "layer1"])


def test_sise_refuses_layers_out_of_forward_order():
    model, calls = counted(SmallCNN(3).eval())
    images = torch.rand(2, 3, 32, 32)
    message = (
        r"layers \['layer2', 'layer1.relu'\] are not in forward order; SISE fuses .* from the "
        r"shallowest layer to the deepest: pass \['layer1.relu', 'layer2'\]"
    )
    with pytest.raises(ValueError, match=message):
        explain(model, images, "sise", layers=["layer2", "layer1.relu"])
    assert len(calls) == 1  # found by the probe SISE runs anyway
    with pytest.raises(ValueError, match=message):
        Sise(model, layers=["layer2", "layer1.relu"]).check_layers(images)
    # a container comes after the layers inside it (its output is computed last)
    with pytest.raises(ValueError, match=r"pass \['layer1.relu', 'layer1'\]"):
        Sise(model, layers=["layer1", "layer1.relu"]).check_layers(images)
    maps = explain(model, images, "sise", layers=["layer1.relu", "layer2"])
    assert maps.shape == (2, 32, 32)


class _SharedRelu(nn.Module):
    """One ReLU module applied after each convolution, as many hand-written models do."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.relu, self.fc = nn.ReLU(), nn.Linear(8, 3)

    def forward(self, x):
        x = self.relu(self.c2(self.relu(self.c1(x))))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("method", ["gradcam", "guided_gradcam", "relevance_cam", "scorecam"])
def test_the_default_layer_is_one_that_runs_once(method):
    """Before: the default was the shared ReLU, then refused ("runs 2 times ... choose a layer
    that runs once") though the user chose nothing. Now its call's input layer, the last
    convolution: the same maps as naming that layer."""
    torch.manual_seed(0)
    model, images = _SharedRelu(), torch.rand(2, 3, 12, 12)
    options = {"mask_batch_size": 8} if method == "scorecam" else {}
    default = explain(model, images, method, target=1, **options)
    named = explain(model, images, method, target=1, layer="c2", **options)
    torch.testing.assert_close(default, named)
    with pytest.raises(ValueError, match="'relu' runs 2 times"):
        explain(model, images, method, layer="relu", **options)


def test_sise_block_layers_skip_a_shared_module():
    torch.manual_seed(0)
    model, images = _SharedRelu(), torch.rand(2, 3, 12, 12)
    assert Sise(model).raw(images).shape[0] == 2


def _run_like(net: nn.Module) -> nn.Module:
    """``net`` as a run's model holds it: a normalizing wrapper, its layers ``net.<layer>``."""
    return NormalizedClassifier(net, [0.5] * 3, [0.25] * 3).eval()


@pytest.mark.parametrize("explainer", [GradCam, GuidedGradCam, ScoreCam, RelevanceCam])
@pytest.mark.parametrize(
    ("model", "examples"),
    [
        # the LAP pool's concept scorer (a convolution) comes last and is no feature layer
        (lambda: _run_like(lapify(SmallCNN(3), where="global")[0]),
         "'net.layer3', 'net.layer3.conv'"),
        (lambda: _run_like(lapify(resnet18(num_classes=3), where="resnet18")[0]),
         "'net.layer4', 'net.layer4.1', 'net.layer4.1.conv2'"),
        (lambda: _run_like(blaify(SmallCNN(3), input_size=32)[0]),
         "'net.layer3', 'net.layer3.conv'"),
        (lambda: _run_like(AnteHocModel(SmallCNN(3), eta=2)),
         "'net.backbone.layer3', 'net.backbone.layer3.conv'"),
    ],
)  # fmt: skip
def test_an_unknown_layer_suggests_the_blocks_of_the_last_convolution(explainer, model, examples):
    # the example was the first module not named '...layer4': the wrapper's 'normalize'
    with pytest.raises(ValueError) as error:
        explainer(model(), layer="nosuch")
    message = str(error.value)
    first = "unknown layer 'nosuch': give the name of a submodule as in model.named_modules() ("
    assert message.startswith(first)
    assert f"(e.g. {examples}: the model's last convolution and the blocks holding it)" in message
    assert "normalize" not in message


def test_a_model_without_convolutions_is_offered_its_last_module():
    with pytest.raises(ValueError, match=r"named_modules\(\) \(e\.g\. '1'\)$"):
        GradCam(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), layer="nosuch")
