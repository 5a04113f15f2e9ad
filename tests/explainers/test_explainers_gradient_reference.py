"""Grad-CAM, Guided Backprop, Guided Grad-CAM and DeepLIFT against slow references written from
their papers' definitions on a tiny float64 network (conv-ReLU-conv-ReLU-mean-linear), with the
ReLUs as modules, as one shared module, and as functions.

The references differentiate one layer at a time by hand: a convolution's backward is its
vector-Jacobian product (``torch.autograd.grad`` of that convolution alone), a ReLU's backward
is each method's own rule, written out with explicit loops where the rule has a case split.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlap.explainers import DeepLift, GradCam, GuidedBackprop, GuidedGradCam

TIGHT = {"rtol": 1e-9, "atol": 1e-11}


class Tiny(nn.Module):
    """``fc(mean(relu(conv2(relu(conv1(x))))))``; ``relus``: ``"modules"`` (two nn.ReLU),
    ``"shared"`` (one nn.ReLU run three times, as torchvision's ResNet blocks run theirs twice:
    the second ReLU applied twice, ``relu(relu(z)) = relu(z)``, which changes no map) or
    ``"functional"`` (``F.relu`` then an in-place ``relu_``, as torchvision's Inception v3)."""

    def __init__(self, relus: str = "modules") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1, stride=2)
        self.act2 = nn.ReLU() if relus == "modules" else self.act1
        self.fc = nn.Linear(5, 3)
        self.relus = relus
        self.double().eval()

    def forward(self, x: Tensor) -> Tensor:
        if self.relus == "functional":
            a = self.conv2(F.relu(self.conv1(x)))
            a.relu_()
        else:
            a = self.act2(self.conv2(self.act1(self.conv1(x))))
            if self.relus == "shared":
                a = self.act1(a)
        return self.fc(a.mean(dim=(2, 3)))


def _vjp(layer: nn.Module, x: Tensor, grad: Tensor) -> Tensor:
    """The backward of one (linear) layer: ``grad`` times its Jacobian at ``x``."""
    x = x.detach().requires_grad_(True)
    (out,) = torch.autograd.grad(layer(x), x, grad)
    return out


def _mean_backward(grad: Tensor, shape: torch.Size) -> Tensor:
    """``d mean_ij a_ij / d a`` times ``grad`` (one value per channel)."""
    return grad[:, :, None, None].expand(shape) / (shape[-2] * shape[-1])


def reference_gradcam(model: Tiny, image: Tensor, target: int, relu: bool = True) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017) at ``conv2``'s output ``A`` for one image:
    ``alpha_k = (1/Z) sum_ij d y_c / d A_k(i, j)``, map ``ReLU(sum_k alpha_k A_k)``."""
    a = model.conv2(model.act1(model.conv1(image[None]))).detach().requires_grad_(True)
    y = model.fc(torch.relu(a).mean(dim=(2, 3)))[0, target]
    (grad,) = torch.autograd.grad(y, a)
    channels, height, width = a.shape[1:]
    cam = torch.zeros(height, width, dtype=image.dtype)
    for k in range(channels):
        alpha = sum(grad[0, k, i, j] for i in range(height) for j in range(width)) / (
            height * width
        )
        cam += alpha * a[0, k].detach()
    return cam.clamp(min=0) if relu else cam


def reference_guided_backprop(model: Tiny, image: Tensor, target: int) -> Tensor:
    """Guided Backpropagation (Springenberg et al. 2014) for one image, ``(C, H, W)``: at each
    ReLU the backward signal ``R`` becomes ``R * [f > 0] * [R > 0]`` (``f`` its input)."""

    def guided_relu(grad: Tensor, f: Tensor) -> Tensor:
        out = torch.zeros_like(grad)
        for index in range(grad.numel()):
            g, x = grad.reshape(-1)[index], f.reshape(-1)[index]
            out.view(-1)[index] = g if (x > 0 and g > 0) else 0.0
        return out

    x = image[None]
    z1 = model.conv1(x).detach()
    z2 = model.conv2(torch.relu(z1)).detach()
    grad = _mean_backward(model.fc.weight[target][None].detach(), z2.shape)
    grad = _vjp(model.conv2, torch.relu(z1), guided_relu(grad, z2))
    return _vjp(model.conv1, x, guided_relu(grad, z1))[0]


def reference_deeplift(model: Tiny, image: Tensor, baseline: Tensor, target: int) -> Tensor:
    """DeepLIFT's Rescale rule (Shrikumar et al. 2017) for one image, ``(C, H, W)``:
    ``(x - x_0) * m`` with the multipliers chained backwards, a ReLU's multiplier
    ``(relu(z) - relu(z_0)) / (z - z_0)`` (its gradient where ``z = z_0``)."""

    def rescale(grad: Tensor, z: Tensor, z0: Tensor) -> Tensor:
        out = torch.zeros_like(grad)
        for index in range(grad.numel()):
            a, b = z.reshape(-1)[index], z0.reshape(-1)[index]
            if abs(float(a - b)) < 1e-10:
                m = 1.0 if a > 0 else 0.0
            else:
                m = (max(float(a), 0.0) - max(float(b), 0.0)) / float(a - b)
            out.view(-1)[index] = grad.reshape(-1)[index] * m
        return out

    x, x0 = image[None], baseline[None]
    z1, z1_0 = model.conv1(x).detach(), model.conv1(x0).detach()
    z2 = model.conv2(torch.relu(z1)).detach()
    z2_0 = model.conv2(torch.relu(z1_0)).detach()
    grad = _mean_backward(model.fc.weight[target][None].detach(), z2.shape)
    grad = _vjp(model.conv2, torch.relu(z1), rescale(grad, z2, z2_0))
    multipliers = _vjp(model.conv1, x, rescale(grad, z1, z1_0))
    return ((x - x0) * multipliers)[0]


def _images() -> Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 8, 8, dtype=torch.float64)


def _logit(model: nn.Module, image: Tensor, target: int) -> float:
    with torch.no_grad():
        return float(model(image[None])[0, target])


@pytest.mark.parametrize("relu", [True, False])
def test_gradcam_is_the_definitions_map(relu: bool) -> None:
    model, images = Tiny(), _images()
    targets = [2, 0]
    maps = GradCam(model, layer="conv2", relu=relu).raw(images, torch.tensor(targets))
    expected = torch.stack(
        [reference_gradcam(model, images[b], targets[b], relu) for b in range(len(targets))]
    )
    assert bool((expected > 0).any()) and bool((expected < 0).any()) != relu
    torch.testing.assert_close(maps, expected, **TIGHT)


def test_gradcam_without_a_target_explains_the_predicted_class() -> None:
    model, images = Tiny(), _images()
    predicted = model(images).argmax(dim=1).tolist()
    maps = GradCam(model, layer="conv2").raw(images)
    expected = torch.stack([reference_gradcam(model, images[b], predicted[b]) for b in range(2)])
    torch.testing.assert_close(maps, expected, **TIGHT)


SIGNS = {
    "absolute": lambda a: a.abs().sum(dim=0),
    "signed": lambda a: a.sum(dim=0),
    "positive": lambda a: a.sum(dim=0).clamp(min=0),
}


@pytest.mark.parametrize("relus", ["modules", "shared", "functional"])
@pytest.mark.parametrize("sign", list(SIGNS))
def test_guided_backprop_is_the_definitions_map(relus: str, sign: str) -> None:
    model, images = Tiny(relus), _images()
    targets = [1, 2]
    maps = GuidedBackprop(model, sign=sign)(images, torch.tensor(targets))
    expected = torch.stack(
        [SIGNS[sign](reference_guided_backprop(model, images[b], targets[b])) for b in range(2)]
    )
    torch.testing.assert_close(maps, expected, **TIGHT)


@pytest.mark.parametrize("relus", ["modules", "functional"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_guided_gradcam_is_guided_backprop_times_the_upsampled_gradcam(
    relus: str, mode: str
) -> None:
    model, images = Tiny(relus), _images()
    targets = [0, 1]
    maps = GuidedGradCam(model, layer="conv2", sign="signed", interpolate_mode=mode)(
        images, torch.tensor(targets)
    )
    expected = []
    for b, target in enumerate(targets):
        cam = reference_gradcam(model, images[b], target)  # 4 x 4, images 8 x 8
        up = F.interpolate(cam[None, None], size=(8, 8), mode=mode)[0]  # (1, 8, 8)
        expected.append((reference_guided_backprop(model, images[b], target) * up).sum(dim=0))
    torch.testing.assert_close(maps, torch.stack(expected), **TIGHT)


@pytest.mark.parametrize("relus", ["modules", "shared", "functional"])
def test_deeplift_is_the_rescale_rule(relus: str) -> None:
    model, images = Tiny(relus), _images()
    baseline = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)[:, None, None]
    targets = [2, 1]
    maps = DeepLift(model, baseline=baseline, sign="signed")(images, torch.tensor(targets))
    reference = [
        reference_deeplift(model, images[b], baseline.expand(3, 8, 8), targets[b]) for b in range(2)
    ]
    torch.testing.assert_close(maps, torch.stack([r.sum(dim=0) for r in reference]), **TIGHT)
    absolute = DeepLift(model, baseline=baseline)(images, torch.tensor(targets))
    torch.testing.assert_close(absolute, torch.stack([r.abs().sum(dim=0) for r in reference]))
    for b, target in enumerate(targets):  # completeness: sums to y_c(x) - y_c(x_0)
        delta = _logit(model, images[b], target) - _logit(model, baseline.expand(3, 8, 8), target)
        assert abs(float(maps[b].sum()) - delta) < 1e-9
