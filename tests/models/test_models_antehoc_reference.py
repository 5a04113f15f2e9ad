"""Paper 004 (ante-hoc weight network) against slow references written from its text.

- the layers: ``eta`` convolutions "at fixed intervals ..., including the first and last" (section
  3), indices ``round(i (L - 1) / (eta - 1))`` by the module docstring;
- the SAM of a layer (module docstring of torchlap.models.antehoc): channel mean, softmax over the
  positions divided by its maximum, bilinear resize to the input (``align_corners=False``),
  each one sample and position at a time from activations captured by this file's own hooks;
- the weight maps: the autoencoder (the weight network's ``encoder`` and ``decoder``, a learned
  module: called, not re-derived) followed by the pixel-wise softmax across the ``eta`` maps,
  computed by loops;
- Eq. 1, ``I_map = sum_n WM_n * SAM_n``, and the energy map ``I * I_map`` by loops;
- Eq. 3, ``L_interpret = MSE(Y_first, Y_second)``, ``Y_second = CNN(I_first * I_map)``, by loops,
  with its gradient on the weight network's parameters.

Nothing of torchlap is used but the model under test (``AnteHocModel``) and the Eq. 3 loss.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from loop_resize import bilinear
from torchlap.models.antehoc import AnteHocModel, antehoc_pass_two_loss

HEIGHT, WIDTH = 12, 10  # 10 is no multiple of 4: the autoencoder's output is resized back


class Backbone(nn.Module):
    """Five convolutions at three resolutions (12x10, 6x5, 3x3), a BatchNorm, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.conv4 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv5 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv1(x)))
        x = F.relu(self.conv3(F.relu(self.conv2(x))))
        x = F.relu(self.conv5(F.relu(self.conv4(x))))
        return self.fc(x.mean(dim=(2, 3)))


def make_model(seed: int = 0) -> AnteHocModel:
    torch.manual_seed(seed)
    model = AnteHocModel(Backbone(), eta=3, autoencoder_channels=(4, 6))
    with torch.no_grad():
        # larger weights than PyTorch's start: activations (and so SAMs) that differ across
        # positions, and predictions that the energy map changes
        for name, parameter in model.backbone.named_parameters():
            if not name.startswith("bn"):
                parameter.normal_(0, 0.35)
        # away from the zero start (uniform weight maps)
        for parameter in model.weight_network.parameters():
            parameter.normal_(0, 0.5)
    return model


def capture(backbone: nn.Module, names: list[str], x: torch.Tensor):
    """The backbone's output and the named layers' outputs, by this file's own hooks."""
    activations: dict[str, torch.Tensor] = {}
    modules = dict(backbone.named_modules())
    handles = []
    try:
        for name in names:
            handles.append(
                modules[name].register_forward_hook(
                    lambda _m, _a, out, name=name: activations.__setitem__(name, out.detach())
                )
            )
        output = backbone(x)
    finally:
        for handle in handles:
            handle.remove()
    return output, [activations[name] for name in names]


def reference_sam(activation: torch.Tensor, sample: int, size: tuple[int, int]) -> list[list]:
    """The SAM of one sample's activation (C, h, w), resized to ``size``, as nested lists."""
    channels, height, width = activation.shape[1:]
    means = [
        [sum(float(activation[sample, c, i, j]) for c in range(channels)) / channels
         for j in range(width)]
        for i in range(height)
    ]  # fmt: skip
    total = sum(math.exp(v) for row in means for v in row)
    soft = [[math.exp(v) / total for v in row] for row in means]
    peak = max(v for row in soft for v in row)
    sam = [[v / peak for v in row] for row in soft]
    out_h, out_w = size
    return bilinear(sam, out_h, out_w)


def reference_sams(activations: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    batch = activations[0].shape[0]
    return torch.tensor(
        [[reference_sam(a, s, size) for a in activations] for s in range(batch)],
        dtype=torch.float64,
    )


def reference_weight_maps(model: AnteHocModel, sams: torch.Tensor) -> torch.Tensor:
    """The autoencoder (the learned submodules), then the pixel-wise softmax across ``eta`` by
    loops (torch scalars: the graph to the weight network's parameters is kept)."""
    network = model.weight_network
    scores = network.decoder(network.encoder(sams.float()))
    if scores.shape[-2:] != sams.shape[-2:]:  # the module docstring's resize back to H x W
        scores = F.interpolate(scores, size=sams.shape[-2:], mode="bilinear", align_corners=False)
    batch, eta, height, width = sams.shape
    pixels = []
    for s in range(batch):
        for i in range(height):
            for j in range(width):
                exps = [torch.exp(scores[s, n, i, j]) for n in range(eta)]
                total = sum(exps)
                pixels.append(torch.stack([e / total for e in exps]))
    return torch.stack(pixels).reshape(batch, height, width, eta).permute(0, 3, 1, 2)


def reference_interpretation(weight_maps: torch.Tensor, sams: torch.Tensor) -> torch.Tensor:
    """Eq. 1, one pixel at a time."""
    batch, eta, height, width = sams.shape
    values = [
        sum(weight_maps[s, n, i, j] * float(sams[s, n, i, j]) for n in range(eta))
        for s in range(batch)
        for i in range(height)
        for j in range(width)
    ]
    return torch.stack(values).reshape(batch, 1, height, width)


def energy(images: torch.Tensor, interpretation: torch.Tensor) -> torch.Tensor:
    """``I * I_map``, the map applied to every channel of every pixel."""
    batch, channels, height, width = images.shape
    values = [
        images[s, c, i, j] * interpretation[s, 0, i, j]
        for s in range(batch)
        for c in range(channels)
        for i in range(height)
        for j in range(width)
    ]
    return torch.stack(values).reshape(images.shape)


def test_layers_are_taken_at_fixed_intervals_first_and_last_included() -> None:
    model = make_model()
    convs = [n for n, m in model.backbone.named_modules() if isinstance(m, nn.Conv2d)]
    expected = [convs[math.floor(i * (len(convs) - 1) / (3 - 1) + 0.5)] for i in range(3)]
    assert model.layer_names == expected == ["conv1", "conv3", "conv5"]


def test_sams_weight_maps_and_eq1_match_loops() -> None:
    model = make_model().eval()
    x = torch.randn(2, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = model(x)
        expected_output, activations = capture(model.backbone, model.layer_names, x)
        sams = reference_sams(activations, (HEIGHT, WIDTH))
        weight_maps = reference_weight_maps(model, sams)
        interpretation = reference_interpretation(weight_maps, sams)
    assert [a.shape[-2:] for a in activations] == [(12, 10), (6, 5), (3, 3)]
    torch.testing.assert_close(output, expected_output)
    # float32 model (the SAMs computed in float32): assert_close's float32 tolerances
    torch.testing.assert_close(model.maps.sams, sams.float())
    torch.testing.assert_close(model.maps.weight_maps, weight_maps)
    torch.testing.assert_close(model.maps.interpretation, interpretation.float())
    torch.testing.assert_close(model.interpretation_map(x), interpretation.float())
    torch.testing.assert_close(model.energy_map(x), energy(x, interpretation.float()))
    # the maps are no trivial case: the weights differ across eta and the SAMs across pixels
    assert float(weight_maps.std(dim=1).mean()) > 0.05
    assert float(sams.amin()) < 0.5 and float(sams.amax()) == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["current", "eval"])
def test_eq3_interpretation_loss_and_its_gradient_match_loops(mode: str) -> None:
    model = make_model(seed=2).train()  # BatchNorm on batch statistics in mode "current"
    x = torch.randn(3, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3))
    backbone = copy.deepcopy(model.backbone)  # its buffers may move: the model's must not
    if mode == "eval":
        backbone.eval()
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)  # no gradient reaches the CNN in pass two
    with torch.no_grad():
        first, activations = capture(backbone, model.layer_names, x)
    sams = reference_sams(activations, (HEIGHT, WIDTH))
    weight_maps = reference_weight_maps(model, sams)
    interpretation = reference_interpretation(weight_maps, sams)
    second = backbone(energy(x, interpretation))
    terms = [
        (first[s, k] - second[s, k]) ** 2
        for s in range(first.shape[0])
        for k in range(first.shape[1])
    ]
    expected = sum(terms) / len(terms)
    parameters = list(model.weight_network.parameters())
    expected_grads = torch.autograd.grad(expected, parameters)

    running = model.backbone.bn.running_mean.clone()
    loss = antehoc_pass_two_loss(model, x, backbone_mode=mode)
    loss.backward()
    # float32 throughout, summed in another order than the loops: the loss to 1e-5 relative
    # (measured 8e-7), every gradient element to 1e-5 of the largest one (measured 2.5e-6)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=0.0)
    scale = max(float(g.abs().max()) for g in expected_grads)
    for parameter, grad in zip(parameters, expected_grads, strict=True):
        torch.testing.assert_close(parameter.grad, grad, rtol=1e-4, atol=1e-5 * scale)
    assert all(p.grad is None for p in model.backbone.parameters())
    torch.testing.assert_close(model.maps.sams, sams.float())
    torch.testing.assert_close(model.maps.interpretation, interpretation.detach())
    torch.testing.assert_close(model.backbone.bn.running_mean, running)  # buffers untouched
    assert float(expected.detach()) > 1e-2  # the energy map changes the prediction: a real loss
