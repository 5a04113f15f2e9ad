"""Refusals of the ante-hoc model (paper 004) at their boundaries: the value just outside is
refused with a message naming the argument, the value just inside is accepted."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchlap.models.antehoc import (
    AnteHocModel,
    WeightNetwork,
    antehoc_parameter_groups,
    antehoc_pass_one_loss,
    antehoc_pass_two_loss,
)


@pytest.mark.parametrize("eta", [0, -1, True, 1.0, "2"])
def test_weight_network_refuses_an_eta_that_is_no_int_ge_1(eta) -> None:
    with pytest.raises(ValueError, match=r"eta must be an int >= 1"):
        WeightNetwork(eta)


def test_weight_network_takes_eta_1_and_one_channel_of_width_1() -> None:
    network = WeightNetwork(1, channels=[1])
    assert network.eta == 1 and network.channels == (1,)
    maps = network(torch.rand(2, 1, 4, 4))
    torch.testing.assert_close(maps, torch.ones(2, 1, 4, 4))  # softmax over one map


@pytest.mark.parametrize("channels", ["ab", b"ab", 16, None])
def test_weight_network_refuses_channels_that_are_no_list(channels) -> None:
    with pytest.raises(TypeError, match=r"autoencoder_channels must be a non-empty list"):
        WeightNetwork(2, channels=channels)


@pytest.mark.parametrize("channels", [(), [0], [4, 0], [True], [2.0], [4, -1]])
def test_weight_network_refuses_channels_that_are_no_ints_ge_1(channels) -> None:
    with pytest.raises(ValueError, match=r"autoencoder_channels must be a non-empty list"):
        WeightNetwork(2, channels=channels)


def test_weight_network_refuses_sams_of_another_count_before_any_work() -> None:
    network = WeightNetwork(3, channels=(2,))
    with pytest.raises(ValueError, match="3"):
        network(torch.rand(1, 2, 4, 4))
    assert isinstance(network.encoder[0], nn.Conv2d)


# ------------------------------------------------------------------------------ AnteHocModel


class Tiny(nn.Module):
    """Two convolutions and a linear head: 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.unused = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))


USED = ["conv1", "conv2"]  # the layers Tiny runs (select_conv_layers would take "unused")


class TupleOut(Tiny):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = super().forward(x)
        return out, out


class GridOut(Tiny):
    """Outputs (B, 3, 2): no (B, num_classes) logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).unsqueeze(-1).expand(-1, -1, 2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layer_names": "conv1"}, TypeError, "layer_names must be a list of module names"),
        ({"layer_names": ["conv1", 2]}, TypeError, "layer_names must be a list of module names"),
        ({"layer_names": []}, ValueError, "layer_names is empty"),
        ({"layer_names": ["conv1", "conv1"]}, ValueError, "lists a module twice"),
        ({"layer_names": ["conv1", ""]}, ValueError, r"no module \[''\]"),
        ({"layer_names": ["conv1", "conv9"]}, ValueError, r"no module \['conv9'\]"),
        ({"eta": 1, "layer_names": ["conv1", "conv2"]}, ValueError, "eta=1 but 2"),
    ],
)
def test_layer_names_are_refused_at_construction(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        AnteHocModel(Tiny(), **kwargs)


def test_a_backbone_must_be_a_module() -> None:
    with pytest.raises(TypeError, match=r"backbone must be an nn\.Module"):
        AnteHocModel(lambda x: x)  # type: ignore[arg-type]


def test_eta_matching_the_layer_names_is_taken_and_recorded() -> None:
    model = AnteHocModel(Tiny(), eta=2, layer_names=["conv2", "conv1"])
    assert model.layer_names == ["conv2", "conv1"] and model.eta == 2
    assert model.torchlap_config["antehoc"] == {
        "layer_names": ["conv2", "conv1"],
        "eta": 2,
        "autoencoder_channels": [16, 32],
    }
    model(torch.randn(1, 3, 8, 8))
    assert model.maps.sams.shape == (1, 2, 8, 8)


def test_the_weight_network_takes_the_backbones_dtype() -> None:
    model = AnteHocModel(Tiny().double(), layer_names=USED)
    assert all(p.dtype == torch.float64 for p in model.weight_network.parameters())
    model(torch.randn(1, 3, 8, 8, dtype=torch.float64))
    assert model.maps.interpretation.dtype == torch.float64
    # a backbone without parameters: the weight network keeps PyTorch's default dtype
    pooled = AnteHocModel(nn.Sequential(nn.AvgPool2d(1), nn.Flatten()), layer_names=["0"])
    assert pooled.weight_network.encoder[0].weight.dtype == torch.float32
    pooled(torch.rand(1, 3, 4, 4))
    assert pooled.maps.sams.shape == (1, 1, 4, 4)


@pytest.mark.parametrize(
    "images", [torch.randn(3, 8, 8), [[0.0]], torch.ones(1, 3, 8, 8, dtype=torch.int64)]
)
def test_images_that_are_no_float_batch_are_refused(images) -> None:
    with pytest.raises(ValueError, match=r"images must be a float \(B, C, H, W\) tensor"):
        AnteHocModel(Tiny(), layer_names=USED)(images)


def test_a_backbone_with_no_tensor_output_or_a_layer_that_does_not_run_is_refused() -> None:
    with pytest.raises(TypeError, match="the backbone returned tuple"):
        AnteHocModel(TupleOut(), layer_names=USED)(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"the layers \['unused'\] did not run"):
        AnteHocModel(Tiny(), layer_names=["conv1", "unused"])(torch.randn(1, 3, 8, 8))


def test_a_layer_running_twice_is_named_even_when_its_second_output_is_unbatched() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            first = self.conv(x)
            return first.mean(dim=(2, 3)) + self.conv(x[0]).mean(dim=(1, 2))  # (C, H, W) input

    with pytest.raises(ValueError, match="ran more than once"):
        AnteHocModel(Twice(), eta=1)(torch.randn(1, 3, 8, 8))


# ----------------------------------------------------------------------- the two passes' inputs


def _model(backbone: nn.Module | None = None) -> AnteHocModel:
    return AnteHocModel(backbone or Tiny(), layer_names=USED)


def test_the_losses_and_groups_take_only_an_antehoc_model() -> None:
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    with pytest.raises(TypeError, match="model must be an AnteHocModel"):
        antehoc_pass_one_loss(Tiny(), x, y)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be an AnteHocModel"):
        antehoc_pass_two_loss(Tiny(), x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be an AnteHocModel"):
        antehoc_parameter_groups(Tiny())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backbone_mode must be 'current' or 'eval'"):
        antehoc_pass_two_loss(_model(), x, backbone_mode="train")


@pytest.mark.parametrize(
    ("targets", "task_loss", "error", "match"),
    [
        ([0, 1], "cross_entropy", TypeError, "targets must be a tensor"),
        (torch.tensor(1), "cross_entropy", ValueError, "a 0-d target"),
        (torch.tensor([0, 1, 2]), "cross_entropy", ValueError, "3 targets for 2 images"),
        (torch.tensor([[0], [1]]), "cross_entropy", ValueError, r"must be \(2,\)"),
        (torch.tensor([True, False]), "cross_entropy", TypeError, "dtype torch.bool"),
        (torch.tensor([0j, 1j]), "cross_entropy", TypeError, "dtype torch.complex"),
        (torch.tensor([0, 3]), "cross_entropy", ValueError, r"\[0, 3\), got \[0, 3\]"),
        (torch.tensor([-1, 2]), "cross_entropy", ValueError, r"\[0, 3\), got \[-1, 2\]"),
        (torch.rand(2, 3), lambda p, t: (p - t) ** 2, ValueError, "must return a scalar"),
        (torch.rand(2, 3), lambda p, t: 0.5, ValueError, "must return a scalar"),
        (torch.rand(2, 3), "l1", ValueError, "unknown task_loss 'l1'"),
    ],
)
def test_pass_one_refuses_bad_targets_and_losses(targets, task_loss, error, match) -> None:
    with pytest.raises(error, match=match):
        antehoc_pass_one_loss(_model(), torch.randn(2, 3, 8, 8), targets, task_loss)


def test_pass_one_refuses_outputs_that_are_no_class_scores() -> None:
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"needs \(B, num_classes\) outputs, got \(2, 3, 2\)"):
        antehoc_pass_one_loss(_model(GridOut()), x, y)
    with pytest.raises(TypeError, match="the backbone returned tuple"):
        antehoc_pass_one_loss(_model(TupleOut()), x, y)


def test_pass_one_takes_the_boundary_classes_probabilities_and_scalar_callables() -> None:
    model = _model()
    x = torch.randn(2, 3, 8, 8)
    logits = model.backbone(x).detach()

    def cross_entropy(probabilities: list[list[float]]) -> float:
        """-1/B sum_s sum_k p_sk log softmax(logits_s)_k, one sample and class at a time."""
        total = 0.0
        for s, row in enumerate(probabilities):
            norm = math.log(sum(math.exp(float(v)) for v in logits[s]))
            total -= sum(p * (float(logits[s, k]) - norm) for k, p in enumerate(row))
        return total / len(probabilities)

    edges = antehoc_pass_one_loss(model, x, torch.tensor([0, 2]))  # 0 and K - 1 are classes
    assert float(edges.detach()) == pytest.approx(cross_entropy([[1, 0, 0], [0, 0, 1]]), rel=1e-6)
    soft = [[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]]
    loss = antehoc_pass_one_loss(model, x, torch.tensor(soft))  # class probabilities
    assert float(loss.detach()) == pytest.approx(cross_entropy(soft), rel=1e-6)
    one = antehoc_pass_one_loss(model, x, torch.rand(2, 3), lambda p, t: (p - t).sum().reshape(1))
    assert one.shape == ()


def test_two_pass_step_refuses_optimizers_of_the_wrong_network() -> None:
    model = _model()
    groups = antehoc_parameter_groups(model)
    cnn = torch.optim.SGD(groups["cnn"], lr=0.1)
    weights = torch.optim.SGD(groups["weights"], lr=0.1)
    both = torch.optim.SGD(groups["cnn"] + groups["weights"], lr=0.1)
    stranger = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    cases = [
        ((object(), weights), TypeError, "optimizer_cnn must be a torch.optim.Optimizer"),
        ((cnn, "sgd"), TypeError, "optimizer_weights must be a torch.optim.Optimizer"),
        ((both, weights), ValueError, "optimizer_cnn holds parameters of the other network"),
        ((weights, cnn), ValueError, "optimizer_cnn holds parameters of the other network"),
        ((cnn, both), ValueError, "optimizer_weights holds parameters of the other network"),
        ((stranger, weights), ValueError, "optimizer_cnn holds none of the CNN parameters"),
        ((cnn, stranger), ValueError, "optimizer_weights holds none of the weight parameters"),
    ]
    before = [p.detach().clone() for p in model.parameters()]
    for (first, second), error, match in cases:
        with pytest.raises(error, match=match):
            model.two_pass_step(x, y, "cross_entropy", first, second)  # type: ignore[arg-type]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    losses = model.two_pass_step(x, y, "cross_entropy", cnn, weights)
    assert set(losses) == {"task_loss", "interpret_loss"}


def test_images_of_another_dtype_than_the_model_are_refused_naming_both() -> None:
    model = _model()
    with pytest.raises(TypeError, match=r"images are torch\.float64 but .* torch\.float32"):
        model(torch.randn(1, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"images are torch\.float64"):
        antehoc_pass_two_loss(model, torch.randn(1, 3, 8, 8, dtype=torch.float64))


def test_a_layer_with_no_image_output_is_refused_naming_its_shape() -> None:
    with pytest.raises(ValueError, match=r"layer 'fc' outputs \(1, 3\); a soft attention map"):
        AnteHocModel(Tiny(), layer_names=["conv1", "fc"])(torch.randn(1, 3, 8, 8))
