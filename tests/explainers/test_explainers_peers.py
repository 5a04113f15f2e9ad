"""The ``bla`` and ``antehoc`` explainers: the peers' own maps from one forward pass."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchlap
from torchlap.explainers import AnteHocExplainer, BlaExplainer
from torchlap.models.antehoc import AnteHocModel
from torchlap.models.bla import blaify


def tiny_cnn(num_classes: int = 3) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def bla_cnn(variant: str = "bla") -> nn.Module:
    model, _ = blaify(tiny_cnn(), variant=variant, input_size=16, init="glorot", k=4)
    return model


def antehoc_cnn() -> AnteHocModel:
    model = AnteHocModel(tiny_cnn(), eta=2)
    with torch.no_grad():  # non-uniform weight maps (the last convolution starts at zero)
        model.weight_network.decoder[-1].weight.normal_(0, 0.5)
    return model


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("variant", ["bla", "bla-t", "bla-ph", "l2x-f"])
def test_bla_map_is_the_modules_soft_explanation(variant):
    model = bla_cnn(variant).train()
    images = torch.rand(5, 3, 16, 16)
    before = hook_count(model)
    explainer = BlaExplainer(model)
    raw = explainer.raw(images)
    maps = explainer(images)
    assert raw.shape == (5, 8, 8) and maps.shape == (5, 16, 16)
    assert torch.isfinite(maps).all()
    assert hook_count(model) == before and model.training  # flags restored, no hook left
    assert explainer.last_stats["forwards_per_image"] == 1.0
    # reference: the softmax over the 8x8 positions of the scorer's bounded logits, eval mode
    model.eval()
    with torch.no_grad():
        features = model[:6](images)
        module = model[6]
        logits = module.scorer(features)[:, 0]
    if variant != "l2x-f":
        logits = logits.clamp(max=0.0) * module.theta
    expected = torch.softmax(logits.flatten(1), dim=1).view(5, 8, 8)
    torch.testing.assert_close(raw, expected)
    torch.testing.assert_close(raw.sum(dim=(1, 2)), torch.ones(5))
    hard = BlaExplainer(model, kind="hard").raw(images)
    assert set(hard.unique().tolist()) <= {0.0, 1.0}


def test_antehoc_maps():
    model = antehoc_cnn().train()
    images = torch.rand(4, 3, 16, 16)
    before = hook_count(model)
    maps = torchlap.explain(model, images, method="antehoc")
    assert maps.shape == (4, 16, 16) and torch.isfinite(maps).all()
    assert hook_count(model) == before and model.training
    torch.testing.assert_close(maps, model.interpretation_map(images)[:, 0])
    energy = torchlap.explain(model, images, method="antehoc", kind="energy")
    torch.testing.assert_close(energy, model.energy_map(images).sum(dim=1))
    binarized = torchlap.explain(model, images, method="antehoc", kind="binarized", threshold=0.5)
    torch.testing.assert_close(binarized, model.binarized_energy_map(images, 0.5).sum(dim=1))
    by_max = torchlap.explain(
        model, images, method="antehoc", kind="binarized", normalization="max"
    )
    expected = model.binarized_energy_map(images, normalization="max").sum(dim=1)
    torch.testing.assert_close(by_max, expected)
    assert not torch.equal(by_max, torchlap.explain(model, images, "antehoc", kind="binarized"))
    # explicit per-pixel reference of Eq. 1 from the SAMs and weight maps
    with torch.no_grad():
        model.eval()
        model(images)
    sams, weights = model.maps.sams, model.maps.weight_maps
    reference = torch.zeros(4, 16, 16)
    for b in range(4):
        for n in range(sams.shape[1]):
            reference[b] += weights[b, n] * sams[b, n]
    torch.testing.assert_close(maps, reference)


def test_antehoc_inside_a_wrapper_upsamples_to_the_input():
    class Resize(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(F.interpolate(x, size=(8, 8), mode="bilinear"))

    wrapped = Resize(antehoc_cnn())
    maps = torchlap.explain(wrapped, torch.rand(2, 3, 16, 16), method="antehoc")
    assert maps.shape == (2, 16, 16) and torch.isfinite(maps).all()


def test_errors_on_the_wrong_model():
    with pytest.raises(ValueError, match="needs a model with a BLA"):
        torchlap.explain(tiny_cnn(), torch.rand(1, 3, 16, 16), method="bla")
    with pytest.raises(ValueError, match="needs an AnteHocModel"):
        torchlap.explain(tiny_cnn(), torch.rand(1, 3, 16, 16), method="antehoc")
    with pytest.raises(ValueError, match="unknown kind"):
        AnteHocExplainer(antehoc_cnn(), kind="heat")
    with pytest.raises(ValueError, match="normalization must be one of"):
        AnteHocExplainer(antehoc_cnn(), kind="binarized", normalization="minmax")
    with pytest.raises(TypeError, match=r"threshold must be a number in \[0, 1\]"):
        AnteHocExplainer(antehoc_cnn(), kind="binarized", threshold="0.8")
    with pytest.raises(ValueError, match="unknown kind"):
        BlaExplainer(bla_cnn(), kind="heat")
    with pytest.raises(ValueError, match="no BLA/L2X-F module named"):
        BlaExplainer(bla_cnn(), name="nope")
    with pytest.raises(ValueError, match="target classes"):
        torchlap.explain(bla_cnn(), torch.rand(1, 3, 16, 16), method="bla", target=7)
