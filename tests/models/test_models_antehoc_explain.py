"""The ante-hoc model's explanations (paper 004): the interpretation map of Eq. 1 is the map of
the trained network in eval mode (BatchNorm on running statistics, no dropout), computed without
graph and without touching the model's state; the energy maps weigh the image by it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from torchlap.models.antehoc import AnteHocModel


class WithBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(torch.relu(self.bn(self.conv1(x))))
        return self.fc(self.drop(x.mean(dim=(2, 3))))


def _model() -> AnteHocModel:
    torch.manual_seed(0)
    model = AnteHocModel(WithBatchNorm(), layer_names=["conv1", "conv2"], autoencoder_channels=[4])
    with torch.no_grad():
        model.backbone.bn.running_mean.normal_(0, 1)  # running statistics far from a batch's
        model.backbone.bn.running_var.uniform_(0.2, 3.0)
        for parameter in model.weight_network.parameters():
            parameter.normal_(0, 0.5)
    return model


def test_the_maps_are_those_of_the_eval_mode_network_and_nothing_changes() -> None:
    model = _model().train()
    x = torch.randn(4, 3, 8, 8)
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        reference(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    interpretation = model.interpretation_map(x)
    torch.testing.assert_close(interpretation, reference.maps.interpretation)
    assert not interpretation.requires_grad
    assert model.training and all(m.training for m in model.modules())  # flags restored
    for key, value in model.state_dict().items():  # running statistics untouched
        assert torch.equal(value, state[key]), key
    # the train-mode map differs (batch statistics): the check above is no trivial case
    with torch.no_grad():
        model(x)
    assert not torch.allclose(model.maps.interpretation, interpretation)


def test_energy_maps_weigh_every_channel_by_the_map() -> None:
    model = _model().eval()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float32)
    interpretation = model.interpretation_map(x)
    energy = model.energy_map(x)
    for s in range(2):
        for c in range(3):
            torch.testing.assert_close(energy[s, c], x[s, c] * interpretation[s, 0])
    mask = model.interpretation_mask(x, 0.5, normalization="max")
    assert mask.dtype == torch.bool and mask.shape == (2, 1, 8, 8)
    binarized = model.binarized_energy_map(x, 0.5, normalization="max")
    assert binarized.dtype == x.dtype
    for s in range(2):
        peak = float(interpretation[s].max())
        for i in range(8):
            for j in range(8):
                kept = float(interpretation[s, 0, i, j]) / peak >= 0.5
                assert bool(mask[s, 0, i, j]) == kept
                torch.testing.assert_close(binarized[s, :, i, j], x[s, :, i, j] * float(kept))


def test_the_context_manager_frees_the_maps_and_lets_errors_through() -> None:
    model = _model()
    with pytest.raises(RuntimeError, match="inside"), model:
        model(torch.randn(1, 3, 8, 8))
        assert model.maps is not None
        raise RuntimeError("inside")
    assert model.maps is None


def test_bad_mask_options_are_refused_before_the_forward_pass() -> None:
    model = _model()
    calls = []
    model.backbone.register_forward_pre_hook(lambda _m, _a: calls.append(1))
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.interpretation_mask(x, 1.5)
    with pytest.raises(ValueError, match="normalization must be one of"):
        model.binarized_energy_map(x, normalization="minmax")
    assert calls == []
    model.interpretation_mask(x, 1.0)  # the boundary is accepted (keeps the maxima)
    assert calls == [1]
