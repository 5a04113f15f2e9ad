"""Two steps of paper 004's two-pass training (section 2.1) redone by hand.

Each step: pass one trains only the CNN on Eq. 2 (``L_task``, cross-entropy here); then pass two,
with the CNN as pass one left it, trains only the weight network on Eq. 3
(``MSE(Y_first, Y_second)``, ``Y_second = CNN(I * I_map)``, Eq. 1's ``I_map`` from the SAMs of
the module docstring: channel mean, softmax over positions over its maximum, bilinear resize).
Plain SGD, so each update is ``p - lr * grad`` of that step's loss alone: gradients do not
carry over from one step or pass to the next. The autoencoder is the weight network's own
learned submodule, called (its layers are checked in test_models_antehoc_autoencoder.py).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from loop_resize import bilinear
from torchlap.models.antehoc import (
    AnteHocModel,
    antehoc_parameter_groups,
    antehoc_pass_one_loss,
    antehoc_pass_two_loss,
)

LR = 0.5
SIZE = 6


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))


def sam(activation: torch.Tensor) -> torch.Tensor:
    """The SAM of one sample's activation (C, h, w) at SIZE x SIZE."""
    channels, height, width = activation.shape
    means = [
        [sum(float(activation[c, i, j]) for c in range(channels)) / channels for j in range(width)]
        for i in range(height)
    ]
    peak = max(max(row) for row in means)
    soft = [[math.exp(v - peak) for v in row] for row in means]  # softmax / its maximum
    return torch.tensor(bilinear(soft, SIZE, SIZE))


def pass_two_reference(model: AnteHocModel, x: torch.Tensor) -> torch.Tensor:
    backbone = model.backbone
    with torch.no_grad():
        first = backbone(x)
        a1 = backbone.conv1(x)
        a2 = backbone.conv2(torch.relu(a1))
    sams = torch.stack([torch.stack([sam(a1[s]), sam(a2[s])]) for s in range(x.shape[0])])
    network = model.weight_network
    scores = network.decoder(network.encoder(sams))
    weights = torch.softmax(scores, dim=1)  # across the eta = 2 maps, per pixel
    interpretation = (weights * sams).sum(dim=1, keepdim=True)  # Eq. 1
    frozen = copy.deepcopy(backbone).requires_grad_(False)
    second = frozen(x * interpretation)
    return ((first - second) ** 2).mean()


def sgd(parameters: list[torch.Tensor], loss: torch.Tensor) -> None:
    grads = torch.autograd.grad(loss, parameters)
    with torch.no_grad():
        for parameter, grad in zip(parameters, grads, strict=True):
            parameter -= LR * grad


def test_two_steps_match_the_papers_procedure_by_hand() -> None:
    torch.manual_seed(0)
    model = AnteHocModel(Backbone(), layer_names=["conv1", "conv2"], autoencoder_channels=[3])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.4)
    reference = copy.deepcopy(model)
    groups = antehoc_parameter_groups(model)
    optimizer_cnn = torch.optim.SGD(groups["cnn"], lr=LR)
    optimizer_weights = torch.optim.SGD(groups["weights"], lr=LR)
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 2, 1])
    for _ in range(2):
        losses = model.two_pass_step(x, y, "cross_entropy", optimizer_cnn, optimizer_weights)
        task = F.cross_entropy(reference.backbone(x), y)
        sgd(list(reference.backbone.parameters()), task)
        interpret = pass_two_reference(reference, x)
        sgd(list(reference.weight_network.parameters()), interpret)
        expected_losses = {
            "task_loss": float(task.detach()),
            "interpret_loss": float(interpret.detach()),
        }
        for key, value in expected_losses.items():
            assert math.isclose(losses[key], value, rel_tol=1e-5), (key, losses[key], value)
        for (name, got), expected in zip(
            model.named_parameters(), reference.parameters(), strict=True
        ):
            torch.testing.assert_close(got, expected, msg=name)
    assert float(interpret.detach()) > 1e-4  # the energy map changes the prediction: a real loss


def test_pass_two_in_eval_mode_restores_the_flags_and_keeps_the_maps() -> None:
    model = AnteHocModel(Backbone(), layer_names=["conv1", "conv2"], autoencoder_channels=[3])
    model.train()
    x = torch.rand(2, 3, SIZE, SIZE)
    loss = antehoc_pass_two_loss(model, x, backbone_mode="eval")
    assert model.training and all(m.training for m in model.modules())
    assert loss.requires_grad and model.maps.interpretation.shape == (2, 1, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"images must be a float \(B, C, H, W\) tensor"):
        antehoc_pass_one_loss(model, torch.rand(3, SIZE, SIZE), torch.tensor([0, 1, 2]))
