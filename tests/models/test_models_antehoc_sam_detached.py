"""The SAMs of the ante-hoc network are inputs of the weight network W, not a path for the
CNN's gradient (paper 004, section 2: W is trained by Eq. 3 alone; the module docstring: the
selected layer's output is "taken detached")."""

from __future__ import annotations

import torch
from torch import nn

from torchlap.models.antehoc import AnteHocModel


def _tiny_backbone() -> nn.Module:
    """Two convolutions and a linear head: 4x4 inputs, 2 classes."""
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 2, 3, padding=1),
        nn.Flatten(),
        nn.Linear(2 * 4 * 4, 2),
    )


def test_a_loss_on_the_forward_pass_maps_reaches_only_the_weight_network() -> None:
    """Gradients of Eq. 1's map from a training forward pass reach W but no CNN parameter."""
    torch.manual_seed(0)
    model = AnteHocModel(_tiny_backbone(), eta=2, autoencoder_channels=(2,)).train()
    with torch.no_grad():  # a weight network whose output depends on the SAMs
        for parameter in model.weight_network.parameters():
            parameter.normal_(0, 0.5)
    model(torch.randn(2, 1, 4, 4))
    assert model.maps is not None
    assert not model.maps.sams.requires_grad  # the SAMs themselves carry no graph
    model.maps.interpretation.square().sum().backward()
    for name, parameter in model.backbone.named_parameters():
        assert parameter.grad is None, f"the CNN's {name} got a gradient through the SAMs"
    grads = [p.grad for p in model.weight_network.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
