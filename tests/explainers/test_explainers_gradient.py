"""Grad-CAM, Guided Grad-CAM, Guided Backprop, DeepLift: agreement with captum called directly and
with pytorch-grad-cam, in-place ReLU models, layer choice, and cost."""

import copy
import types
import warnings

import pytest
import torch
import torchvision
from captum.attr import DeepLift as CaptumDeepLift
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from captum.attr import GuidedGradCam as CaptumGuidedGradCam
from captum.attr import LayerGradCam
from torch import nn

import torchlap
from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d, explainers
from torchlap.explainers import DeepLift, GradCam, GuidedBackprop, GuidedGradCam, upsample
from torchlap.layers import LapBase


def randomize(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, LapBase):
            for conv in module.scorer.heads:
                if isinstance(conv, nn.Conv2d):
                    nn.init.normal_(conv.weight, std=0.5)
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def resnet(lap: bool = False) -> nn.Module:
    model = torchvision.models.resnet18(weights=None, num_classes=5)
    if lap:
        model, _ = torchlap.lapify(model, where="resnet18")
    return randomize(model)


def lap_cnn() -> nn.Sequential:
    return randomize(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            LocalAttentionPool2d(8, 2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            AdaptiveLocalAttentionPool2d(16, 1),
            nn.Flatten(),
            nn.Linear(16, 3),
        )
    )


def not_inplace(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    return model


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@pytest.mark.parametrize("lap", [False, True])
def test_gradcam_agrees_with_pytorch_grad_cam(lap):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = resnet(lap)
    images = torch.randn(3, 3, 64, 64)
    target = [1, 4, 0]
    ours = GradCam(model)(images, torch.tensor(target))
    with GradCAM(model=model, target_layers=[model.layer4]) as cam:
        theirs = cam(input_tensor=images, targets=[ClassifierOutputTarget(t) for t in target])
    theirs = torch.from_numpy(theirs)
    assert theirs.shape == ours.shape
    assert (correlation(ours, theirs) > 0.99).all()


def test_captum_methods_agree_with_captum_called_directly():
    model = resnet(lap=True)
    images = torch.randn(2, 3, 64, 64)  # layer4 is 2x2
    target = torch.tensor([3, 1])
    reference = not_inplace(model)  # captum's own hooks are not in-place safe; ours switch it off
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradcam = LayerGradCam(reference, reference.layer4).attribute(
            images, target=target, relu_attributions=True
        )
        guided_gc = CaptumGuidedGradCam(reference, reference.layer4).attribute(
            images, target=target, interpolate_mode="bilinear"
        )
        guided_bp = CaptumGuidedBackprop(reference).attribute(images, target=target)
    torch.testing.assert_close(GradCam(model).raw(images, target), gradcam[:, 0])
    torch.testing.assert_close(GradCam(model)(images, target), upsample(gradcam[:, 0], (64, 64)))
    torch.testing.assert_close(
        GuidedGradCam(model, layer="layer4")(images, target), guided_gc.abs().sum(1)
    )
    torch.testing.assert_close(
        GuidedBackprop(model, sign="signed")(images, target), guided_bp.sum(1)
    )


def test_deeplift_agrees_with_captum_on_a_model_without_shared_modules():
    model = lap_cnn()
    images = torch.randn(3, 3, 16, 16)
    target = torch.tensor([0, 2, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = CaptumDeepLift(not_inplace(model)).attribute(
            images, baselines=0.5, target=target
        )
    ours = DeepLift(model, baseline=0.5, sign="signed")(images, target)
    torch.testing.assert_close(ours, expected.sum(1))
    # completeness of the Rescale rule holds for this ReLU network (the sigmoid inside the LAP
    # scorer is differentiated plainly, so we only check the sum approximately)
    delta = (
        model(images).gather(1, target[:, None])[:, 0]
        - model(torch.full_like(images, 0.5)).gather(1, target[:, None])[:, 0]
    )
    torch.testing.assert_close(ours.sum(dim=(1, 2)), delta, rtol=0.2, atol=0.05)


def _unshared_basic_block_forward(self, x):
    identity = x
    out = self.relu1(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    if self.downsample is not None:
        identity = self.downsample(x)
    return self.relu2(out + identity)


def test_deeplift_handles_torchvision_resnet_shared_relus():
    model = resnet()
    manual = not_inplace(model)
    for block in manual.modules():
        if isinstance(block, torchvision.models.resnet.BasicBlock):
            block.relu1, block.relu2 = nn.ReLU(), nn.ReLU()
            block.forward = types.MethodType(_unshared_basic_block_forward, block)
    images = torch.randn(2, 3, 32, 32)
    target = torch.tensor([2, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = CaptumDeepLift(manual).attribute(images, target=target)
        with pytest.raises(RuntimeError, match="used more than once"):
            CaptumDeepLift(not_inplace(model)).attribute(images, target=target)
    names = [name for name, _ in model.named_modules()]
    explainer = DeepLift(model, sign="signed")
    torch.testing.assert_close(explainer(images, target), expected.sum(1))
    torch.testing.assert_close(DeepLift(model)(images, target), expected.abs().sum(1))
    assert [name for name, _ in model.named_modules()] == names  # the copies live elsewhere


def test_deeplift_baseline_checks():
    model = lap_cnn()
    images = torch.randn(2, 3, 16, 16)
    with pytest.raises(TypeError, match="baseline"):
        DeepLift(model, baseline="black")
    with pytest.raises(ValueError, match="does not broadcast"):
        DeepLift(model, baseline=torch.zeros(5, 16, 16))(images)
    mean_image = torch.rand(3, 1, 1)
    maps = DeepLift(model, baseline=mean_image)(images)
    assert torch.isfinite(maps).all()


def test_inplace_relu_models_give_the_same_maps_as_out_of_place_copies():
    model = resnet()
    copy_ = not_inplace(model)
    images = torch.randn(1, 3, 32, 32)
    for method in ("gradcam", "guided_backprop", "relevance_cam"):
        a = explainers.explain(model, images, method, target=1)
        b = explainers.explain(copy_, images, method, target=1)
        torch.testing.assert_close(a, b, msg=method)
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


def test_signs():
    model = lap_cnn()
    images = torch.randn(2, 3, 16, 16)
    signed = GuidedBackprop(model, sign="signed")(images, 0)
    absolute = GuidedBackprop(model)(images, 0)
    positive = GuidedBackprop(model, sign="positive")(images, 0)
    assert (absolute >= signed.abs() - 1e-7).all()
    torch.testing.assert_close(positive, signed.clamp_min(0))
    assert (GradCam(model)(images, 0) >= 0).all()
    assert GradCam(model, relu=False).raw(images, 0).min() < 0
    with pytest.raises(ValueError, match="unknown sign"):
        GuidedBackprop(model, sign="abs")


def test_automatic_and_named_target_layers():
    images = torch.randn(1, 3, 16, 16)
    assert GradCam(lap_cnn()).feature_probe(images).cam_layer == "4"  # the input of the LAP pool
    for lap in (False, True):
        model = resnet(lap)
        probe = GradCam(model).feature_probe(torch.randn(1, 3, 64, 64))
        assert probe.cam_layer == "layer4"
        assert probe.block_layers == ["relu", "layer1", "layer2", "layer3", "layer4"]
    model = resnet()
    named = GradCam(model, layer="layer3").raw(torch.randn(1, 3, 64, 64))
    assert named.shape == (1, 4, 4)
    by_module = GradCam(model, layer=model.layer3).raw(torch.randn(1, 3, 64, 64))
    assert by_module.shape == (1, 4, 4)
    with pytest.raises(ValueError, match=r"unknown layer 'layer5'.*layer"):
        GradCam(model, layer="layer5")(torch.randn(1, 3, 32, 32))
    # a run's model names its layers 'net.<layer>': the message points there (it used to
    # suggest 'layer4', which a run's model refuses too)
    wrapped = torch.nn.Sequential()
    wrapped.add_module("net", model)
    with pytest.raises(
        ValueError, match=r"\(e\.g\. 'net\.layer4', .*\); did you mean one of \['net\.fc'\]"
    ):
        GradCam(wrapped, layer="fc")
    with pytest.raises(ValueError, match="runs 2 times"):
        GradCam(model, layer="layer1.0.relu")(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="not a submodule"):
        GradCam(model, layer=nn.ReLU())(torch.randn(1, 3, 32, 32))


def test_gradcam_costs_one_forward_and_one_backward():
    model = resnet(lap=True)
    images = torch.randn(4, 3, 32, 32)
    explainer = GradCam(model)
    explainer(images)  # the first call also probes the layers (one image)
    explainer(images)
    assert explainer.last_stats == {"forwards_per_image": 1.0, "backwards_per_image": 1.0}
    backward_calls = []
    handle = model.fc.register_full_backward_hook(lambda *a: backward_calls.append(1))
    forward_calls = []
    handle2 = model.register_forward_pre_hook(lambda *a: forward_calls.append(1))
    try:
        explainer(images)
    finally:
        handle.remove()
        handle2.remove()
    assert len(forward_calls) == 1 and len(backward_calls) == 1


@pytest.mark.parametrize(
    "baseline", [float("nan"), float("inf"), torch.full((3, 1, 1), float("nan"))]
)
def test_deeplift_refuses_non_finite_baselines(baseline):
    # a NaN baseline made every map NaN; refused when the explainer is built, before any pass
    with pytest.raises(ValueError, match=r"baseline must be .*finite"):
        DeepLift(lap_cnn(), baseline=baseline)
    with pytest.raises(ValueError, match=r"baseline must be .*finite"):
        torchlap.explain(lap_cnn(), torch.rand(1, 3, 16, 16), "deeplift", baseline=baseline)
    with pytest.raises(TypeError, match="baseline"):
        DeepLift(lap_cnn(), baseline=True)


def test_deeplift_leaves_no_captum_tensors_on_the_modules():
    model = resnet()
    explainer = DeepLift(model)
    explainer(torch.randn(2, 3, 32, 32), torch.tensor([2, 0]))
    left = {
        name: key
        for name, module in model.named_modules()
        for key in ("input", "output")
        if key in vars(module)
    }
    assert left == {}


def test_guided_gradcam_interpolation_of_captum_is_an_option():
    # paper 000 ran captum's GuidedGradCam, whose attribute() upsamples the Grad-CAM factor by
    # nearest neighbour unless told otherwise; torchlap's default is bilinear (every map alike)
    model = resnet(lap=False)
    images = torch.randn(2, 3, 64, 64)  # layer4 is 2x2: the two upsamplings differ
    target = torch.tensor([2, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        captum_default = CaptumGuidedGradCam(model, model.layer4).attribute(images, target=target)
    nearest = GuidedGradCam(model, layer="layer4", interpolate_mode="nearest")(images, target)
    torch.testing.assert_close(nearest, captum_default.abs().sum(1))
    bilinear = GuidedGradCam(model, layer="layer4")(images, target)
    assert not torch.allclose(bilinear, nearest)
    with pytest.raises(ValueError, match="interpolate_mode must be one of 'bilinear', 'nearest'"):
        GuidedGradCam(model, interpolate_mode="bicubic")
    explainers.check_options("guided_gradcam", {"interpolate_mode": "nearest"})
