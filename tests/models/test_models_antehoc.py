"""The ante-hoc weight network (paper 004): SAMs, Eq. 1, the two passes (Eq. 2-3), energy maps."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from torchlap.metrics import binarize_map, drop_inc_win
from torchlap.models.antehoc import (
    AnteHocModel,
    WeightNetwork,
    antehoc_parameter_groups,
    antehoc_pass_one_loss,
    antehoc_pass_two_loss,
    select_conv_layers,
    soft_attention_map,
)


class TinyClassifier(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class Regressor(nn.Module):
    """Landmark regressor: convolutions, then a dense layer (paper 004, section 3.2)."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(16 * (size // 4) ** 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def landmark_batch(n: int, generator: torch.Generator, size: int = 16):
    """Noisy images with a bright 3x3 square; the target is its centre (row, col) / size."""
    images = 0.1 * torch.randn(n, 1, size, size, generator=generator)
    centers = torch.randint(2, size - 2, (n, 2), generator=generator)
    rows = torch.arange(size).view(1, size, 1)
    cols = torch.arange(size).view(1, 1, size)
    square = ((rows - centers[:, :1, None]).abs() <= 1) & ((cols - centers[:, 1:, None]).abs() <= 1)
    images[:, 0] += square.float()
    return images, centers.float() / size


def _no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        for m in model.modules()
    )


def _randomize_weight_network(model: AnteHocModel) -> None:
    with torch.no_grad():
        for parameter in model.weight_network.parameters():
            parameter.normal_(0, 0.5)


# ----------------------------------------------------------------------------- layer selection


def test_select_conv_layers_on_resnet18() -> None:
    backbone = torchvision.models.resnet18(weights=None, num_classes=2)
    # 20 convolutions (downsample ones included), indices round(i * 19 / 7)
    assert select_conv_layers(backbone, 8) == [
        "conv1",
        "layer1.1.conv1",
        "layer2.0.conv1",
        "layer2.1.conv1",
        "layer3.0.conv2",
        "layer3.1.conv2",
        "layer4.0.conv2",
        "layer4.1.conv2",
    ]
    assert select_conv_layers(backbone, 1) == ["layer4.1.conv2"]
    assert len(select_conv_layers(backbone, 20)) == 20
    with pytest.raises(ValueError, match=r"eta=21 is larger than the number of conv"):
        select_conv_layers(backbone, 21)
    with pytest.raises(ValueError, match="eta must be >= 1"):
        select_conv_layers(backbone, 0)
    model = AnteHocModel(backbone)
    assert model.eta == 8 and model.torchlap_config["antehoc"]["eta"] == 8
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 2)
    assert model.maps.sams.shape == (2, 8, 32, 32)
    torch.testing.assert_close(model.maps.weight_maps.sum(dim=1), torch.ones(2, 32, 32))


def test_bad_layer_choices() -> None:
    with pytest.raises(ValueError, match="eta=5 is larger"):
        AnteHocModel(TinyClassifier(), eta=5)
    with pytest.raises(ValueError, match="no module"):
        AnteHocModel(TinyClassifier(), layer_names=["features.0", "features.9"])
    with pytest.raises(ValueError, match="eta=3 but 2"):
        AnteHocModel(TinyClassifier(), eta=3, layer_names=["features.0", "features.3"])
    with pytest.raises(ValueError, match="a soft attention map needs"):
        AnteHocModel(TinyClassifier(), layer_names=["features.0", "fc"])(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="autoencoder_channels"):
        AnteHocModel(TinyClassifier(), eta=2, autoencoder_channels=())


# ---------------------------------------------------------------------- SAM and Eq. 1 by loops


def test_soft_attention_map_matches_loop_reference() -> None:
    activation = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    sam = soft_attention_map(activation)
    expected = torch.zeros(2, 1, 3, 5, dtype=torch.float64)
    for s in range(2):
        means = {
            (i, j): sum(float(activation[s, c, i, j]) for c in range(4)) / 4
            for i in range(3)
            for j in range(5)
        }
        total = sum(math.exp(v) for v in means.values())
        peak = max(math.exp(v) / total for v in means.values())
        for (i, j), value in means.items():
            expected[s, 0, i, j] = math.exp(value) / total / peak
    torch.testing.assert_close(sam, expected)
    resized = soft_attention_map(activation, (6, 10))
    torch.testing.assert_close(
        resized, F.interpolate(expected, size=(6, 10), mode="bilinear", align_corners=False)
    )


def test_interpretation_map_matches_eq1_by_loops() -> None:
    backbone = TinyClassifier().eval()
    model = AnteHocModel(backbone, eta=4)
    _randomize_weight_network(model)
    x = torch.randn(2, 3, 8, 8)
    # the activations, captured independently of the model's own hooks
    activations = {}
    handles = [
        backbone.get_submodule(name).register_forward_hook(
            lambda _m, _a, out, name=name: activations.__setitem__(name, out.detach())
        )
        for name in model.layer_names
    ]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    sams = torch.cat(
        [soft_attention_map(activations[name], (8, 8)) for name in model.layer_names], dim=1
    )
    torch.testing.assert_close(model.maps.sams, sams)
    scores = model.weight_network.scores(sams).detach()
    weight_maps = torch.zeros_like(scores)
    interpretation = torch.zeros(2, 1, 8, 8)
    for s in range(2):
        for i in range(8):
            for j in range(8):
                exps = [math.exp(float(scores[s, n, i, j])) for n in range(4)]
                for n in range(4):
                    weight_maps[s, n, i, j] = exps[n] / sum(exps)
                interpretation[s, 0, i, j] = sum(
                    float(weight_maps[s, n, i, j]) * float(sams[s, n, i, j]) for n in range(4)
                )
    torch.testing.assert_close(model.maps.weight_maps, weight_maps)
    torch.testing.assert_close(model.maps.interpretation, interpretation)
    assert model.layer_names == ["features.0", "features.3", "features.5", "features.7"]


def test_weight_maps_start_uniform() -> None:
    network = WeightNetwork(eta=3, channels=(4, 8))
    maps = network(torch.rand(2, 3, 13, 9))  # odd sizes are resized back
    torch.testing.assert_close(maps, torch.full((2, 3, 13, 9), 1 / 3))


# --------------------------------------------------------------------------- Eq. 2 and Eq. 3


def test_pass_one_loss_is_eq2() -> None:
    model = AnteHocModel(TinyClassifier().eval(), eta=4)
    x, y = torch.randn(3, 3, 8, 8), torch.tensor([0, 2, 1])
    loss = antehoc_pass_one_loss(model, x, y, "cross_entropy")
    logits = model.backbone(x)
    expected = -sum(logits[s, y[s]] - torch.logsumexp(logits[s], dim=0) for s in range(3)) / 3
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is None for p in model.weight_network.parameters())
    assert all(p.grad is not None for p in model.backbone.parameters())

    regression = AnteHocModel(Regressor(), eta=3)
    images, targets = torch.randn(4, 1, 16, 16), torch.rand(4, 2)
    loss = antehoc_pass_one_loss(regression, images, targets, "mse")
    predictions = regression.backbone(images).detach()
    expected = sum(
        (float(predictions[s, d]) - float(targets[s, d])) ** 2 for s in range(4) for d in range(2)
    )
    assert float(loss.detach()) == pytest.approx(expected / 8, rel=1e-5)


@pytest.mark.parametrize("mode", ["current", "eval"])
def test_pass_two_loss_is_eq3_and_trains_only_the_weight_network(mode) -> None:
    model = AnteHocModel(TinyClassifier(), eta=4).train()
    _randomize_weight_network(model)
    x = torch.randn(3, 3, 8, 8)
    reference = copy.deepcopy(model.backbone)
    if mode == "eval":
        reference.eval()
    running = model.backbone.features[1].running_mean.clone()
    loss = antehoc_pass_two_loss(model, x, backbone_mode=mode)
    # hand-written: Y_first on the image, I_map by Eq. 1, Y_second on the energy map
    with torch.no_grad():
        first = reference(x)
        sams = model.maps.sams
        weight_maps = model.weight_network(sams)
        interpretation = (weight_maps * sams).sum(dim=1, keepdim=True)
        second = reference(x * interpretation)
    torch.testing.assert_close(loss, ((second - first) ** 2).mean())
    loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.weight_network.parameters())
    torch.testing.assert_close(model.backbone.features[1].running_mean, running)
    assert model.training and model.backbone.features[1].training
    assert _no_hooks(model)


def test_pass_two_in_current_mode_is_blind_to_a_uniform_dimming(monkeypatch) -> None:
    # antehoc_pass_two_loss's docstring: with batch statistics (a training backbone, the
    # default "current") the batch norm re-normalises the energy maps' batch, so a flat map
    # I_map = c scores as well as the image itself; with running statistics ("eval") it does not
    import torchlap.models.antehoc as antehoc

    model = AnteHocModel(TinyClassifier(), eta=4).train()
    x = torch.randn(8, 3, 8, 8)
    with torch.no_grad():  # running statistics of the images themselves
        for _ in range(20):
            model.backbone(x)

    def flat(sams, weight_maps):
        return torch.full_like(sams[:, :1], 0.3) + 0 * weight_maps.sum()

    monkeypatch.setattr(antehoc, "interpretation_from_maps", flat)
    blind = float(antehoc_pass_two_loss(model, x, backbone_mode="current").detach())
    seen = float(antehoc_pass_two_loss(model, x, backbone_mode="eval").detach())
    assert seen > 1e-6 and blind < 1e-4 * seen  # measured: 1e-11 against 5e-5


def test_two_pass_step_updates_each_network_in_its_pass() -> None:
    model = AnteHocModel(TinyClassifier(), eta=4)
    groups = antehoc_parameter_groups(model)
    optimizer_cnn = torch.optim.SGD(groups["cnn"], lr=0.1)
    optimizer_weights = torch.optim.SGD(groups["weights"], lr=0.1)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    cnn_before = [p.detach().clone() for p in groups["cnn"]]
    weights_before = [p.detach().clone() for p in groups["weights"]]
    losses = model.two_pass_step(x, y, "cross_entropy", optimizer_cnn, optimizer_weights)
    assert set(losses) == {"task_loss", "interpret_loss"}
    assert all(math.isfinite(v) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(groups["cnn"], cnn_before, strict=True))
    assert any(
        not torch.equal(a, b) for a, b in zip(groups["weights"], weights_before, strict=True)
    )
    # pass two alone leaves the CNN as it is
    cnn_after = [p.detach().clone() for p in groups["cnn"]]
    optimizer_weights.zero_grad()
    antehoc_pass_two_loss(model, x).backward()
    optimizer_weights.step()
    assert all(torch.equal(a, b) for a, b in zip(groups["cnn"], cnn_after, strict=True))
    with pytest.raises(ValueError, match="other network"):
        model.two_pass_step(x, y, "cross_entropy", optimizer_weights, optimizer_weights)
    everything = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="other network"):
        model.two_pass_step(x, y, "cross_entropy", everything, optimizer_weights)


def test_landmark_regression_is_learned_with_two_passes() -> None:
    generator = torch.Generator().manual_seed(0)
    backbone = Regressor()
    model = AnteHocModel(backbone, eta=3, autoencoder_channels=(8,))
    groups = antehoc_parameter_groups(model)
    optimizer_cnn = torch.optim.Adam(groups["cnn"], lr=3e-3)
    optimizer_weights = torch.optim.Adam(groups["weights"], lr=3e-3)
    test_images, test_targets = landmark_batch(64, generator)
    for _ in range(100):
        images, targets = landmark_batch(16, generator)
        losses = model.two_pass_step(images, targets, "mse", optimizer_cnn, optimizer_weights)
        assert math.isfinite(losses["interpret_loss"])
    with torch.no_grad():
        error = F.mse_loss(backbone(test_images), test_targets)
    # the mean predictor's error is the targets' variance
    variance = (test_targets - test_targets.mean(dim=0)).square().mean()
    assert error < 0.25 * variance
    interpretation = model.interpretation_map(test_images[:2])
    assert interpretation.shape == (2, 1, 16, 16) and torch.isfinite(interpretation).all()


def test_task_loss_bad_input() -> None:
    regression = AnteHocModel(Regressor(), eta=3)
    images = torch.randn(4, 1, 16, 16)
    with pytest.raises(ValueError, match="class labels"):
        antehoc_pass_one_loss(regression, images, torch.tensor([0, 1, 1, 0]), "mse")
    with pytest.raises(ValueError, match="do not match"):
        antehoc_pass_one_loss(regression, images, torch.rand(4, 3), "mse")
    with pytest.raises(ValueError, match="regression targets"):
        antehoc_pass_one_loss(regression, images, torch.rand(4, 3), "cross_entropy")
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        antehoc_pass_one_loss(regression, images, torch.tensor([0, 1, 5, 0]), "cross_entropy")
    with pytest.raises(ValueError, match="unknown task_loss"):
        antehoc_pass_one_loss(regression, images, torch.rand(4, 2), "huber")
    with pytest.raises(ValueError, match="3 targets for 4 images"):
        antehoc_pass_one_loss(regression, images, torch.rand(3, 2), "mse")
    custom = antehoc_pass_one_loss(
        regression, images, torch.rand(4, 2), lambda p, t: (p - t).abs().mean()
    )
    assert custom.dim() == 0


# ---------------------------------------------------------------------- explanations and hooks


def test_energy_and_binarized_energy_maps() -> None:
    model = AnteHocModel(TinyClassifier(), eta=4).train()
    _randomize_weight_network(model)
    x = torch.randn(2, 3, 8, 8)
    interpretation = model.interpretation_map(x)
    assert model.training  # eval for the explanation, flags restored
    torch.testing.assert_close(model.energy_map(x), x * interpretation)
    low = interpretation.amin(dim=(2, 3), keepdim=True)
    high = interpretation.amax(dim=(2, 3), keepdim=True)
    mask = (interpretation - low) / (high - low) >= 0.8
    assert mask.any() and not mask.all()
    torch.testing.assert_close(model.binarized_energy_map(x), x * mask)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.binarized_energy_map(x, threshold=1.5)
    with pytest.raises(TypeError, match="threshold"):
        model.interpretation_mask(x, "0.8")
    with pytest.raises(ValueError, match="normalization must be one of"):
        model.interpretation_mask(x, normalization="minmax")


def test_binarized_energy_map_is_the_one_the_metric_feeds() -> None:
    # one definition (torchlap.metrics.binarize_map): the metric divided by the maximum and
    # kept > 0.8, which keeps every pixel of a map with a high floor; the model kept >= 0.8
    # of the min-max normalised map
    model = AnteHocModel(TinyClassifier(), eta=4).eval()  # the wrapper below is no nn.Module
    _randomize_weight_network(model)
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    interpretation = model.interpretation_map(x)[:, 0]
    for normalization in ("min_max", "max"):
        mask = model.interpretation_mask(x, normalization=normalization)
        assert torch.equal(mask[:, 0], binarize_map(interpretation, normalization=normalization))
    seen = []

    def classifier(inputs: torch.Tensor) -> torch.Tensor:
        seen.append(inputs.clone())
        return model(inputs)

    drop_inc_win(
        classifier, x, interpretation, torch.zeros(3, dtype=torch.long), variants="binarized"
    )
    torch.testing.assert_close(seen[-1], model.binarized_energy_map(x))
    kept = int((seen[-1] != 0).any(dim=1).sum())
    assert 0 < kept < int(binarize_map(interpretation, normalization="max").sum())


def test_no_hook_survives_a_pass_or_an_error() -> None:
    model = AnteHocModel(TinyClassifier(), eta=4)
    x = torch.randn(2, 3, 8, 8)
    model(x)
    assert _no_hooks(model)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 5, 8, 8))  # the first convolution fails
    assert _no_hooks(model)
    with pytest.raises(ValueError, match="float"):
        model(torch.ones(2, 3, 8, 8, dtype=torch.long))
    antehoc_pass_two_loss(model, x)
    model.interpretation_map(x)
    assert _no_hooks(model)
    clone = copy.deepcopy(model)
    clone(torch.randn(1, 3, 8, 8))
    assert clone.maps.sams.shape[0] == 1 and model.maps.sams.shape[0] == 2
    with model as same:
        assert same is model
    assert model.maps is None  # close() frees the cached maps


def test_layer_running_twice_is_rejected() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.other = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.other(self.conv(self.conv(x))).mean(dim=(2, 3))

    model = AnteHocModel(Twice(), eta=2)
    with pytest.raises(ValueError, match="more than once"):
        model(torch.randn(1, 3, 8, 8))
    assert _no_hooks(model)
