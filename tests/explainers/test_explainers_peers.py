"""The ``bla`` and ``antehoc`` explainers: the peers' own maps from one forward pass."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchlap
from loop_resize import bilinear
from torchlap.explainers import AnteHocExplainer, BlaExplainer
from torchlap.explainers.base import upsample
from torchlap.metrics import pointing_game
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


def bla_reference(model: nn.Module, images: torch.Tensor, variant: str):
    """Soft ``q`` and hard ``delta`` (8x8) from the scorer's logits, eval mode (paper 002, 3.1:
    ``q = softmax(theta l)``, ``delta_i = 1 iff l_i = 0``, the argmax set when none is 0;
    L2X-F: softmax of the logits and the top-k set)."""
    model.eval()
    with torch.no_grad():
        features = model[:6](images)
        module = model[6]
        logits = module.scorer(features)[:, 0].flatten(1)
    if variant == "l2x-f":
        soft = torch.softmax(logits, dim=1)
        hard = torch.zeros_like(logits)
        for b in range(len(images)):
            for i in logits[b].topk(module.k).indices.tolist():
                hard[b, i] = 1.0
    else:
        bounded = logits.clamp(max=0.0)
        soft = torch.softmax(bounded * module.theta, dim=1)
        hard = (bounded == bounded.amax(dim=1, keepdim=True)).float()
    return soft.view(-1, 8, 8), hard.view(-1, 8, 8)


@pytest.mark.parametrize("variant", ["bla", "bla-t", "bla-ph", "l2x-f"])
def test_bla_map_is_the_modules_hard_explanation_by_default(variant):
    # paper 002, 3: "delta = E(f) acts as an explanation for the prediction"; 3.2: "we
    # visualize delta using a colormap, which is upscaled"; q is 4.3's LIME comparison
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
    soft, hard = bla_reference(model, images, variant)
    torch.testing.assert_close(raw, hard)
    assert 0 < float(hard.sum()) < hard.numel()  # a real selection, not every position
    if variant == "l2x-f":
        assert (hard.sum(dim=(1, 2)) == model[6].k).all()
    soft_maps = BlaExplainer(model, kind="soft").raw(images)
    torch.testing.assert_close(soft_maps, soft)
    torch.testing.assert_close(soft_maps.sum(dim=(1, 2)), torch.ones(5))


def test_bla_kind_soft_is_reachable_from_the_evaluate_harness():
    from torchlap.evaluate import EvaluateOptions
    from torchlap.evaluate.common import explain_all, method_options

    model = bla_cnn("bla-t").eval()
    images = torch.rand(3, 3, 16, 16)
    targets = model(images).argmax(dim=1)
    soft, hard = bla_reference(model, images, "bla-t")
    cpu = torch.device("cpu")
    for given, expected in (({}, hard), ({"bla": {"kind": "soft"}}, soft)):
        options = EvaluateOptions(methods=("bla",), method_options=given)
        options.validate()
        chosen = method_options("bla", options, {})
        maps = explain_all(model, images, targets, "bla", chosen, 2, cpu)
        torch.testing.assert_close(maps, upsample(expected, (16, 16)))


def test_the_hard_maps_ties_are_exact_so_the_tie_rules_apply():
    # the 0/1 map, upsampled, ties its maxima exactly (each selected cell gives the same
    # bilinear plateau): the pointing game (and top-K) score tied maxima by their expectation,
    # not by pixel order
    model = bla_cnn("l2x-f").eval()
    images = torch.rand(2, 3, 16, 16)
    maps = BlaExplainer(model)(images)
    tied = maps == maps.amax(dim=(1, 2), keepdim=True)
    assert (tied.flatten(1).sum(dim=1) >= 2).all()  # several pixels share the maximum exactly
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, :8] = True  # the top half
    expected = (tied & masks).flatten(1).sum(dim=1).double() / tied.flatten(1).sum(dim=1)
    torch.testing.assert_close(pointing_game(maps, masks).per_sample, expected)


def antehoc_reference(model: AnteHocModel, images: torch.Tensor) -> torch.Tensor:
    """Paper 004's interpretation map (Eq. 1) by loops, eval mode: each selected layer's
    output (this test's own hooks), its SAM (channel mean, softmax over positions divided by its
    maximum, bilinear resize to the input), the weight maps (the learned autoencoder, called,
    then the pixel-wise softmax across the eta maps) and ``I_map = sum_n WM_n * SAM_n``."""
    model = copy.deepcopy(model).eval()
    seen: dict[str, torch.Tensor] = {}
    modules = dict(model.backbone.named_modules())
    handles = [
        modules[n].register_forward_hook(lambda _m, _a, out, n=n: seen.__setitem__(n, out))
        for n in model.layer_names
    ]
    with torch.no_grad():
        model.backbone(images)
    for handle in handles:
        handle.remove()
    batch, _, side, _ = images.shape
    sams = torch.zeros(batch, model.eta, side, side)
    for b in range(batch):
        for n, name in enumerate(model.layer_names):
            activation = seen[name][b]
            h, w = activation.shape[-2:]
            means = [[float(activation[:, i, j].mean()) for j in range(w)] for i in range(h)]
            total = sum(math.exp(v) for row in means for v in row)
            peak = max(math.exp(v) / total for row in means for v in row)
            sam = [[math.exp(v) / total / peak for v in row] for row in means]
            sams[b, n] = torch.tensor(bilinear(sam, side, side) if h != side else sam)
    with torch.no_grad():
        scores = model.weight_network.decoder(model.weight_network.encoder(sams))
    interpretation = torch.zeros(batch, side, side)
    for b in range(batch):
        for i in range(side):
            for j in range(side):
                exps = [math.exp(float(scores[b, n, i, j])) for n in range(model.eta)]
                for n in range(model.eta):
                    weight = exps[n] / sum(exps)
                    interpretation[b, i, j] += weight * float(sams[b, n, i, j])
    return interpretation


def energy_reference(images: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_c image_c * weight`` per pixel, by loops (the explainer's (B, H, W) energy)."""
    batch, channels, height, width = images.shape
    out = torch.zeros(batch, height, width)
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                pixel = sum(float(images[b, c, i, j]) for c in range(channels))
                out[b, i, j] = pixel * float(weights[b, i, j])
    return out


def binarized_reference(maps: torch.Tensor, threshold: float, normalization: str):
    """``1[I_norm >= threshold]`` by loops; ``I_norm`` per image ``(I - min) / (max - min)``
    (``"min_max"``; a constant map keeps nothing) or ``I / max`` (``"max"``)."""
    mask = torch.zeros(maps.shape)
    for b in range(maps.shape[0]):
        values = maps[b].flatten().tolist()
        low, high = min(values), max(values)
        for index, value in enumerate(values):
            if normalization == "min_max":
                scaled = (value - low) / (high - low) if high > low else 0.0
            else:
                scaled = value / high if high > 0 else 0.0
            mask[b].view(-1)[index] = float(scaled >= threshold)
    return mask


def test_antehoc_maps():
    model = antehoc_cnn().train()
    images = torch.rand(4, 3, 16, 16)
    before = hook_count(model)
    maps = torchlap.explain(model, images, method="antehoc")
    assert maps.shape == (4, 16, 16) and torch.isfinite(maps).all()
    assert hook_count(model) == before and model.training
    reference = antehoc_reference(model, images)
    torch.testing.assert_close(maps, reference)
    assert float(reference.std()) > 0.01  # no trivial map
    energy = torchlap.explain(model, images, method="antehoc", kind="energy")
    torch.testing.assert_close(energy, energy_reference(images, reference))
    cases = [(0.5, "min_max"), (0.8, "min_max"), (0.8, "max")]
    kept = []
    for threshold, normalization in cases:
        binarized = torchlap.explain(
            model, images, method="antehoc", kind="binarized", threshold=threshold,
            normalization=normalization,
        )  # fmt: skip
        mask = binarized_reference(reference, threshold, normalization)
        torch.testing.assert_close(binarized, energy_reference(images, mask))
        kept.append(float(mask.mean()))
    assert 0 < kept[1] < kept[0] < 1 and kept[1] < kept[2]  # real, different selections
    default = torchlap.explain(model, images, "antehoc", kind="binarized")  # 0.8, min-max
    torch.testing.assert_close(default, energy_reference(images, binarized_reference(
        reference, 0.8, "min_max")))  # fmt: skip


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
