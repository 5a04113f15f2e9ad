"""BLA, BLA-T, BLA-PH, L2X-F and blaify (paper 002), with loop references of the equations."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from scipy.stats import spearmanr
from torch import nn

from torchlap.evaluate.bla_comparison import bla_lime_faithfulness
from torchlap.metrics.lime_faithfulness import (
    lime_cell_scores,
    lime_patch_scores,
    lime_spearman,
    patch_means,
    spearman_correlation,
)
from torchlap.models.bla import (
    BoundedLogitAttention,
    L2XFeatureSelection,
    apply_blaify_config,
    bla_maps,
    bla_modules,
    bla_parameters,
    blaify,
)


class TinyNet(nn.Module):
    """A small classifier with a torchvision-style global pool."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class TinyVggLike(nn.Module):
    """VGG's layout: a non-global adaptive pool flattened into the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(8 * 4, 10), nn.ReLU(), nn.Linear(10, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class NoPoolNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.fc = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


# ------------------------------------------------------------------ loop references (paper 002)


def _score(x, s, i, j, weight, bias) -> float:
    """g = u^T f + b at position (i, j) of sample s, one channel at a time."""
    return float(bias) + sum(float(weight[c]) * float(x[s, c, i, j]) for c in range(x.shape[1]))


def reference_bla(x, weight, bias, theta, gamma=None, pool="sum"):
    """Section 3.1 by explicit loops: g_i = u.f_i + b, l_i = min(g_i, 0), q = softmax(theta l),
    v = sum_i w_i f_i with w = q (Eq. 1) or w = relu(q - gamma) (BLA-T, the authors' code sums
    them; pool="normalized" renormalises them)."""
    batch, channels, height, width = x.shape
    weight, bias = weight.detach(), bias.detach()
    out = torch.zeros(batch, channels, dtype=x.dtype)
    soft = torch.zeros(batch, height, width, dtype=x.dtype)
    logits = torch.zeros(batch, height, width, dtype=x.dtype)
    for s in range(batch):
        for i in range(height):
            for j in range(width):
                g = float(bias) + sum(
                    float(weight[c]) * float(x[s, c, i, j]) for c in range(channels)
                )
                logits[s, i, j] = min(g, 0.0)
        denominator = sum(
            math.exp(theta * float(logits[s, i, j])) for i in range(height) for j in range(width)
        )
        for i in range(height):
            for j in range(width):
                soft[s, i, j] = math.exp(theta * float(logits[s, i, j])) / denominator
        weights = soft[s].clone()
        if gamma is not None:
            for i in range(height):
                for j in range(width):
                    weights[i, j] = max(float(soft[s, i, j]) - gamma, 0.0)
            if pool == "normalized":
                weights = weights / weights.sum()
        for i in range(height):
            for j in range(width):
                out[s] += weights[i, j] * x[s, :, i, j]
    return out, soft, logits


def reference_hard(x, weight, bias):
    """delta_i = 1 iff l_i is the largest logit (= l_i = 0 when a logit reaches the bound);
    v = 1/|delta| sum_i delta_i f_i."""
    batch, channels, height, width = x.shape
    weight, bias = weight.detach(), bias.detach()
    out = torch.zeros(batch, channels, dtype=x.dtype)
    delta = torch.zeros(batch, height, width, dtype=torch.bool)
    for s in range(batch):
        logits = {}
        for i in range(height):
            for j in range(width):
                g = float(bias) + sum(
                    float(weight[c]) * float(x[s, c, i, j]) for c in range(channels)
                )
                logits[i, j] = min(g, 0.0)
        best = max(logits.values())
        chosen = [position for position, value in logits.items() if value == best]
        for i, j in chosen:
            delta[s, i, j] = True
            out[s] += x[s, :, i, j] / len(chosen)
    return out, delta


def _bla(channels=3, **options) -> BoundedLogitAttention:
    module = BoundedLogitAttention(channels, init="glorot", dtype=torch.float64, **options)
    with torch.no_grad():
        module.scorer.weight.normal_()
        module.scorer.bias.fill_(0.3)
    return module


# ------------------------------------------------------------------------------ the BLA module


def test_bla_soft_pooling_matches_loop_reference() -> None:
    module = _bla(theta=0.1).train()
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    out = module(x)
    expected, soft, logits = reference_bla(
        x, module.scorer.weight.flatten(), module.scorer.bias, theta=0.1
    )
    torch.testing.assert_close(out.flatten(1), expected)
    torch.testing.assert_close(module.maps.soft[:, 0], soft)
    torch.testing.assert_close(module.maps.logits[:, 0], logits)
    assert (module.maps.logits <= 0).all()
    torch.testing.assert_close(module.maps.weights[:, 0], soft)


def test_bla_hard_explanation_at_eval_matches_loop_reference() -> None:
    module = _bla().eval()
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    out = module(x)
    expected, delta = reference_hard(x, module.scorer.weight.flatten(), module.scorer.bias)
    torch.testing.assert_close(out.flatten(1), expected)
    assert torch.equal(module.maps.hard[:, 0], delta)
    # here some logits reach the bound, and delta is exactly {l_i = 0}
    zero = module.maps.logits[:, 0] == 0
    assert zero.flatten(1).any(dim=1).all() and not zero.all()
    assert torch.equal(delta, zero)


def test_bla_hard_explanation_without_zero_logit_is_the_argmax() -> None:
    module = _bla().eval()
    with torch.no_grad():
        module.scorer.bias.fill_(-100.0)
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    out = module(x)
    expected, delta = reference_hard(x, module.scorer.weight.flatten(), module.scorer.bias)
    assert (delta.flatten(1).sum(dim=1) == 1).all()
    torch.testing.assert_close(out.flatten(1), expected)


@pytest.mark.parametrize("pool", ["sum", "normalized"])
@pytest.mark.parametrize("gamma", [None, 0.05])
def test_bla_t_threshold_matches_loop_reference_and_trains_the_scorer(gamma, pool) -> None:
    module = _bla(threshold=True, gamma=gamma, pool=pool).train()
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    out = module(x)
    used = 1 / 12 if gamma is None else gamma  # the paper's default gamma = 1/n (section 3.1)
    assert module.gamma_for(12) == pytest.approx(used)
    expected, _, _ = reference_bla(
        x, module.scorer.weight.flatten(), module.scorer.bias, 0.1, gamma=used, pool=pool
    )
    torch.testing.assert_close(out.flatten(1), expected)
    selected = module.maps.weights > 0
    assert torch.equal(selected, module.maps.soft > used)  # the support of Eq. 2
    out.square().sum().backward()
    grad = module.scorer.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_bla_t_falls_back_to_q_when_the_threshold_drops_everything() -> None:
    module = _bla(threshold=True, gamma=0.9).train()
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    module(x)
    torch.testing.assert_close(module.maps.weights, module.maps.soft)


def test_zero_init_starts_as_the_global_average() -> None:
    x = torch.randn(2, 5, 4, 3)
    for module in (
        BoundedLogitAttention(5, init="zeros"),
        BoundedLogitAttention(5, threshold=True, pool="normalized", init="zeros"),
        BoundedLogitAttention(5, eval_path="mean", init="zeros"),
        # the default gamma = 1/n drops every position of a uniform q: the fallback to q
        BoundedLogitAttention(5, threshold=True, init="zeros"),
    ):
        for training in (True, False):
            module.train(training)
            torch.testing.assert_close(module(x), x.mean(dim=(2, 3), keepdim=True))
    # the authors' sum pooling with section 4.2's 0.98 / n: weights 1/n - 0.98/n = 0.02/n each
    summed = BoundedLogitAttention(5, threshold=True, gamma_factor=0.98, init="zeros").train()
    torch.testing.assert_close(summed(x), 0.02 * x.mean(dim=(2, 3), keepdim=True))


def test_defaults_are_the_papers_glorot_init_and_gamma_one_over_n() -> None:
    # paper 002, 4.2: "Non-pretrained parameters are set using the Glorot uniform initializer";
    # 3.1: "We propose gamma = 1/n as the default threshold"
    torch.manual_seed(0)
    for module in (BoundedLogitAttention(64), L2XFeatureSelection(64)):
        weight = module.scorer.weight
        assert module.init == "glorot" and weight.abs().min() > 0
        bound = math.sqrt(6 / (64 + 1))  # Glorot uniform of a 64 -> 1 1x1 convolution
        assert weight.abs().max() <= bound and weight.abs().max() > 0.8 * bound
        assert torch.equal(module.scorer.bias, torch.zeros(1))
    assert BoundedLogitAttention(3, threshold=True).gamma_for(49) == 1 / 49
    model, _ = blaify(TinyNet(), "bla-t", input_size=16)
    entry = model.torchlap_config["blaify"]
    assert entry["init"] == "glorot" and model.avgpool.scorer.weight.abs().sum() > 0
    assert entry["gamma_factor"] == 1.0 and model.avgpool.gamma_for(16) == 1 / 16


def test_eval_path_soft_and_mean() -> None:
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    soft = _bla(eval_path="soft").eval()
    expected, _, _ = reference_bla(x, soft.scorer.weight.flatten(), soft.scorer.bias, 0.1)
    torch.testing.assert_close(soft(x).flatten(1), expected)
    mean = _bla(eval_path="mean").eval()
    torch.testing.assert_close(mean(x), x.mean(dim=(2, 3), keepdim=True))


def test_pooling_weights_sum_to_one_only_where_the_docstring_says() -> None:
    # BlaMaps.weights: 1 on the hard/mean paths, for BLA's q and with pool="normalized"; with
    # pool="sum" in training BLA-T's relu(q - gamma) sums below 1, L2X-F's k-hot mask in [1, k]
    torch.manual_seed(0)
    x = torch.randn(3, 6, 4, 4)

    def sums(module: nn.Module, training: bool) -> torch.Tensor:
        module.train(training)
        module(x)
        return module.maps.weights.flatten(1).sum(dim=1)

    one = torch.ones(3)
    for module in (
        BoundedLogitAttention(6),
        BoundedLogitAttention(6, threshold=True, pool="normalized"),
        L2XFeatureSelection(6, k=3, pool="normalized"),
    ):
        torch.testing.assert_close(sums(module, True), one)
    for module in (
        BoundedLogitAttention(6, threshold=True, gamma_factor=0.98),
        L2XFeatureSelection(6, k=3),
        BoundedLogitAttention(6, eval_path="mean"),
    ):
        torch.testing.assert_close(sums(module, False), one)  # eval: hard or mean path
    bla_t = sums(BoundedLogitAttention(6, threshold=True, gamma_factor=0.98), True)
    assert ((bla_t > 0) & (bla_t < 1)).all()
    bla_t_soft = BoundedLogitAttention(6, threshold=True, gamma_factor=0.98, eval_path="soft")
    assert (sums(bla_t_soft, False) < 1).all()
    l2x = sums(L2XFeatureSelection(6, k=3), True)
    assert ((l2x > 1) & (l2x <= 3)).all()


def test_module_validation() -> None:
    with pytest.raises(ValueError, match="theta"):
        BoundedLogitAttention(3, theta=0.0)
    with pytest.raises(ValueError, match="threshold=True"):
        BoundedLogitAttention(3, gamma=0.01)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        BoundedLogitAttention(3, threshold=True, gamma=1.5)
    with pytest.raises(ValueError, match="eval_path"):
        BoundedLogitAttention(3, eval_path="best")
    with pytest.raises(ValueError, match="eval_path"):
        L2XFeatureSelection(3, eval_path="soft")
    with pytest.raises(ValueError, match="init"):
        BoundedLogitAttention(3, init="random")
    with pytest.raises(ValueError, match="4 channels"):
        BoundedLogitAttention(3)(torch.randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        BoundedLogitAttention(3)(torch.randn(3, 2, 2))
    with pytest.raises(ValueError, match="only 4"):
        L2XFeatureSelection(3, k=8)(torch.randn(1, 3, 2, 2))


# --------------------------------------------------------------------------------------- L2X-F


def test_l2x_hard_top_k_matches_loop_reference() -> None:
    module = L2XFeatureSelection(3, k=4, init="glorot", dtype=torch.float64).eval()
    with torch.no_grad():
        module.scorer.weight.normal_()
    x = torch.randn(3, 3, 3, 4, dtype=torch.float64)
    out = module(x)
    weight = module.scorer.weight.detach().flatten()
    bias = float(module.scorer.bias.detach())
    for s in range(3):
        scores = []
        for i in range(3):
            for j in range(4):
                g = bias + sum(float(weight[c]) * float(x[s, c, i, j]) for c in range(3))
                scores.append((g, i, j))
        chosen = sorted(scores, reverse=True)[:4]
        expected = sum(x[s, :, i, j] for _, i, j in chosen) / 4
        torch.testing.assert_close(out[s].flatten(), expected)
        mask = torch.zeros(3, 4, dtype=torch.bool)
        for _, i, j in chosen:
            mask[i, j] = True
        assert torch.equal(module.maps.hard[s, 0], mask)


def test_l2x_relaxation_is_a_k_hot_mask_and_trains_the_scorer() -> None:
    module = L2XFeatureSelection(2, k=3, tau=0.05, pool="normalized").train()
    with torch.no_grad():
        module.scorer.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    x = torch.randn(4, 2, 4, 4)
    x[:, 0] = -30.0
    top = [(0, 1), (2, 2), (3, 0)]
    for i, j in top:
        x[:, 0, i, j] = 30.0  # three positions dominate the inclusion logits
    out = module(x)
    weights = module.maps.weights[:, 0]
    torch.testing.assert_close(weights.sum(dim=(1, 2)), torch.ones(4))
    outside = torch.ones(4, 4, dtype=torch.bool)
    for i, j in top:
        outside[i, j] = False
    assert weights[:, outside].max() < 1e-6
    assert torch.equal(module.maps.hard[0, 0], ~outside)
    out.square().sum().backward()
    assert module.scorer.weight.grad is not None
    assert module.scorer.weight.grad.abs().sum() > 0


# -------------------------------------------------------------------------------------- blaify


def test_blaify_resnet18_keeps_outputs_at_insertion() -> None:
    resnet18 = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = resnet18(x)
    for variant in ("bla", "bla-t", "bla-ph", "l2x-f"):
        # the first call finds the channels by a dry forward pass, the others are told
        extra = {"input_size": 64} if variant == "bla" else {"in_channels": 512}
        extra["init"] = "zeros"  # the exact average pool at insertion (default: "glorot")
        if variant == "l2x-f":
            extra["k"] = 4
        model, names = blaify(resnet18, variant, inplace=False, **extra)
        assert names == ["avgpool"]
        assert isinstance(resnet18.avgpool, nn.AdaptiveAvgPool2d)  # inplace=False: untouched
        expected_type = L2XFeatureSelection if variant == "l2x-f" else BoundedLogitAttention
        assert isinstance(model.avgpool, expected_type)
        assert model.avgpool.in_channels == 512
        with torch.no_grad():
            after = model.eval()(x)
        if variant != "l2x-f":  # zero init: the exact average pool (hard path: every position)
            torch.testing.assert_close(after, before)
        maps = bla_maps(model)
        assert maps["soft"].shape == (2, 1, 2, 2) and maps["hard"].dtype == torch.bool
        entry = model.torchlap_config["blaify"]
        json.dumps(model.torchlap_config)
        assert entry["variant"] == variant and entry["module_name"] == "avgpool"
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        if variant == "bla-ph":
            assert trainable == ["avgpool.scorer.weight", "avgpool.scorer.bias"]
            assert entry["frozen"] is True and model.avgpool.threshold
        else:
            assert len(trainable) == len(list(model.parameters()))


def _small(arch: str) -> nn.Module:
    if arch == "densenet":
        return torchvision.models.DenseNet(8, (1, 1), 8, num_classes=3)
    if arch == "mobilenet_v2":
        return torchvision.models.MobileNetV2(num_classes=3, width_mult=0.25)
    return torchvision.models.get_model(arch, weights=None, num_classes=3)


@pytest.mark.parametrize(
    ("arch", "name"),
    [
        ("densenet", "features.global_pool"),
        ("mobilenet_v2", "features.global_pool"),
        ("shufflenet_v2_x0_5", "conv5.global_pool"),
        ("mnasnet0_5", "layers.global_pool"),
        ("mobilenet_v3_small", "avgpool"),  # its squeeze-excitation pools are left alone
    ],
)
def test_blaify_torchvision_families(arch, name) -> None:
    model = _small(arch).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    model, names = blaify(model, "bla-t", input_size=32, init="zeros")  # the exact average
    assert names == [name]
    assert list(bla_modules(model)) == [name]
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before)
    soft = bla_maps(model)["soft"]
    assert soft.shape[:2] == (2, 1)
    torch.testing.assert_close(soft.sum(dim=(2, 3)), torch.ones(2, 1))


def test_blaify_vgg_layout_needs_resize_head() -> None:
    model = TinyVggLike()
    with pytest.raises(ValueError, match="resize_head=True"):
        blaify(model, input_size=16)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    model, names = blaify(model, input_size=16, resize_head=True)
    assert names == ["avgpool"]
    head = model.classifier[0]
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (8, 10)
    assert model.torchlap_config["blaify"]["resized_head"] == "classifier.0"
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)


def test_blaify_bad_input() -> None:
    with pytest.raises(ValueError, match="no global average pool"):
        blaify(NoPoolNet(), input_size=16)
    with pytest.raises(ValueError, match="unknown variant"):
        blaify(TinyNet(), "bla-x")
    with pytest.raises(ValueError, match="gamma"):
        blaify(TinyNet(), "bla", gamma=0.1)
    with pytest.raises(ValueError, match=r"nn\.AdaptiveAvgPool2d"):
        blaify(TinyNet(), where="fc", input_size=16)
    with pytest.raises(ValueError, match="no such module"):
        blaify(TinyNet(), where="head", input_size=16)
    with pytest.raises(ValueError, match="k=8"):
        blaify(TinyNet(), "l2x-f", input_size=4)  # a 2x2 map
    model, _ = blaify(TinyNet(), input_size=16)
    with pytest.raises(ValueError, match="already has"):
        blaify(model, input_size=16)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        blaify("resnet18")


class FailingNet(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.avgpool(self.features(x))
        raise RuntimeError("boom")


def test_probe_failure_leaves_model_unchanged() -> None:
    model = FailingNet().train()
    model.features[1].eval()
    with pytest.raises(ValueError, match="dry forward pass"):
        blaify(model, input_size=16)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert not model.avgpool._forward_pre_hooks and not model.avgpool._forward_hooks
    assert model.training and model.features[0].training and not model.features[1].training
    assert "torchlap_config" not in vars(model)


def test_probe_failure_messages_of_blaify_and_lapify() -> None:
    """blaify and lapify run their probe through one dry pass; each failure message whole."""
    from torchlap.models import lapify

    failed = (
        "the dry forward pass on a probe input of shape (1, 3, 16, 16) failed (RuntimeError: "
        "boom); pass input_size= a size the model accepts"
    )
    with pytest.raises(ValueError) as caught:
        blaify(FailingNet(), input_size=16)
    assert str(caught.value) == failed + ", or in_channels="
    with pytest.raises(ValueError) as caught:
        lapify(FailingNet(), where="auto", input_size=16)
    assert str(caught.value) == failed + (
        " (the probe's 3 channels are the in_channels of the first Conv2d, 'features.0'; a "
        "model whose stem changes the channel count before it takes another: pass "
        "input_size=(C, H, W))"
    )
    with pytest.raises(ValueError) as caught:
        lapify(FailingNet(), where="auto", input_size=(3, 16, 16))
    assert str(caught.value) == failed


def test_bla_ph_trains_only_the_explanation_module() -> None:
    model, _ = blaify(TinyNet(), "bla-ph", input_size=16, init="glorot")
    assert [id(p) for p in bla_parameters(model)] == [
        id(model.avgpool.scorer.weight),
        id(model.avgpool.scorer.bias),
    ]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    loss = F.cross_entropy(model.train()(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"avgpool.scorer.weight", "avgpool.scorer.bias"}


def test_config_rebuilds_the_model() -> None:
    model, _ = blaify(TinyNet(), "bla-t", gamma=0.2, input_size=16, init="glorot")
    entry = json.loads(json.dumps(model.torchlap_config["blaify"]))
    fresh = apply_blaify_config(TinyNet(), entry)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(fresh.train()(x), model.train()(x))
    assert fresh.avgpool.gamma == 0.2 and fresh.torchlap_config["blaify"] == entry


def test_gamma_factor_is_recorded_and_old_records_replay_0_98() -> None:
    model, _ = blaify(TinyNet(), "bla-t", input_size=16, gamma_factor=0.98)
    entry = json.loads(json.dumps(model.torchlap_config["blaify"]))
    assert entry["gamma_factor"] == 0.98 and model.avgpool.gamma_for(16) == 0.98 / 16
    assert apply_blaify_config(TinyNet(), entry).avgpool.gamma_factor == 0.98
    for variant in ("bla-t", "bla-ph"):  # written when 0.98 / n was the default
        old = dict(entry, variant=variant)
        del old["gamma_factor"]
        assert apply_blaify_config(TinyNet(), old).avgpool.gamma_for(16) == 0.98 / 16
    with_gamma = blaify(TinyNet(), "bla-t", gamma=0.2, input_size=16)[0]
    entry = dict(with_gamma.torchlap_config["blaify"])
    assert entry["gamma_factor"] is None
    del entry["gamma_factor"]
    assert apply_blaify_config(TinyNet(), entry).avgpool.gamma == 0.2


def test_blaify_gamma_factor_validation() -> None:
    with pytest.raises(ValueError, match="gamma_factor sets the threshold of 'bla-t'/'bla-ph'"):
        blaify(TinyNet(), "bla", gamma_factor=0.98)
    with pytest.raises(ValueError, match="not both"):
        blaify(TinyNet(), "bla-t", gamma=0.1, gamma_factor=0.98)
    with pytest.raises(ValueError, match="gamma_factor must be a finite number > 0"):
        blaify(TinyNet(), "bla-t", gamma_factor=0.0)
    with pytest.raises(TypeError, match="gamma_factor must be a finite number > 0"):
        blaify(TinyNet(), "bla-t", gamma_factor=True)


def test_config_merges_with_an_existing_one() -> None:
    model = TinyNet()
    model.torchlap_config = {"arch": "tiny", "lapify": []}
    blaify(model, input_size=16)
    assert model.torchlap_config["arch"] == "tiny" and "blaify" in model.torchlap_config


def test_bla_maps_accessor_errors() -> None:
    with pytest.raises(ValueError, match="no BLA"):
        bla_maps(TinyNet())
    model, _ = blaify(TinyNet(), input_size=16)
    with pytest.raises(ValueError, match="forward pass first"):
        bla_maps(model)


# ------------------------------------------------------------------ faithfulness (section 4.3)


def test_spearman_matches_scipy_with_ties() -> None:
    a = torch.randint(0, 4, (6, 12)).double()
    b = torch.randn(6, 12).double()
    b[:, :3] = 0.5  # ties in b too
    ours = spearman_correlation(a, b)
    for row in range(6):
        expected = spearmanr(a[row].numpy(), b[row].numpy()).statistic
        assert ours[row].item() == pytest.approx(expected, abs=1e-12)
    constant = spearman_correlation(torch.ones(1, 5), torch.arange(5.0).view(1, 5))
    assert torch.isnan(constant).all()


def test_patch_means_matches_loop() -> None:
    maps = torch.rand(2, 10, 12)
    means = patch_means(maps, (10, 12), patch=4)  # a 3x3 grid, border patches smaller
    assert means.shape == (2, 9)
    for s in range(2):
        for r in range(3):
            for c in range(3):
                block = maps[s, r * 4 : (r + 1) * 4, c * 4 : (c + 1) * 4]
                assert means[s, r * 3 + c].item() == pytest.approx(block.mean().item(), rel=1e-5)
    grid = torch.rand(2, 3, 3)
    torch.testing.assert_close(patch_means(grid, (10, 12), patch=4), grid.flatten(1))


class PatchLinear(nn.Module):
    """Class 0's logit is sum_p w_p * mean(x_p) over 4x4 patches of channel 0: LIME's linear
    surrogate is exact, with coefficients w_p * mean(x_p)."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (F.avg_pool2d(x[:, :1], 4)[:, 0] * self.weights).sum(dim=(1, 2))
        return torch.stack([score, torch.zeros_like(score)], dim=1)


def test_lime_spearman_recovers_a_known_linear_model() -> None:
    weights = torch.randn(4, 4)
    model = PatchLinear(weights)
    images = torch.rand(2, 3, 16, 16) + 0.5
    truth = F.avg_pool2d(images[:, :1], 4)[:, 0] * weights
    rng = torch.get_rng_state()
    scores = lime_patch_scores(model, images, 0, patch=4, n_samples=80, seed=3, score="logit")
    assert torch.equal(torch.get_rng_state(), rng)
    torch.testing.assert_close(scores, truth.flatten(1), atol=1e-4, rtol=1e-4)
    result = lime_spearman(model, images, truth, 0, patch=4, lime_scores=scores)
    assert result.value == pytest.approx(1.0) and result.n == 2 and result.higher_is_better
    reverse = lime_spearman(model, images, -truth, 0, patch=4, n_samples=80, score="logit")
    assert reverse.value == pytest.approx(-1.0)
    constant = lime_spearman(model, images, torch.ones(2, 4, 4), 0, patch=4, lime_scores=scores)
    assert constant.n == 0 and constant.n_excluded == 2 and math.isnan(constant.value)


def test_lime_is_seeded() -> None:
    model = TinyNet().eval()
    images = torch.randn(1, 3, 16, 16)
    first = lime_patch_scores(model, images, patch=8, n_samples=20, seed=1)
    again = lime_patch_scores(model, images, patch=8, n_samples=20, seed=1)
    other = lime_patch_scores(model, images, patch=8, n_samples=20, seed=2)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_lime_cell_scores_take_any_cells_and_refuse_a_bad_mask() -> None:
    model = TinyNet().eval()
    images = torch.randn(1, 3, 16, 16)
    # two vertical bands of unequal width: cell 0 the left 5 columns, cell 1 the rest
    mask = torch.zeros(16, 16, dtype=torch.long)
    mask[:, 5:] = 1
    assert lime_cell_scores(model, images, mask, n_samples=20).shape == (1, 2)
    squares = (torch.arange(16) // 8)[:, None] * 2 + (torch.arange(16) // 8)[None, :]
    torch.testing.assert_close(
        lime_cell_scores(model, images, squares, n_samples=20, seed=1),
        lime_patch_scores(model, images, patch=8, n_samples=20, seed=1),
    )
    for bad in (mask.float(), mask[:8], mask.bool(), [[0]]):
        with pytest.raises(ValueError, match=r"mask must be an integer \(16, 16\) tensor"):
            lime_cell_scores(model, images, bad)
    for bad in (mask * 5, mask - 1):  # ids {0, 5} would give 4 phantom cells; -1 is shifted
        with pytest.raises(ValueError, match=r"cell ids must be 0..n_cells-1, each used, got 2"):
            lime_cell_scores(model, images, bad)


def test_bla_lime_faithfulness_runs_on_a_bla_t_model() -> None:
    baseline = TinyNet()
    bla_model, _ = blaify(copy.deepcopy(baseline), "bla-t", input_size=32, init="glorot")
    bla_model.train()
    images = torch.randn(2, 3, 32, 32)
    results = bla_lime_faithfulness(
        bla_model, images, baseline_model=baseline, patch=8, n_samples=40
    )
    assert set(results) == {"bla", "gradcam"}
    for result in results.values():
        assert result.n + result.n_excluded == 2
        valid = result.per_sample[torch.isfinite(result.per_sample)]
        assert ((valid >= -1) & (valid <= 1)).all()
    assert bla_model.training and baseline.training  # flags restored
    with pytest.raises(ValueError, match="explanation maps"):
        lime_spearman(baseline, images, torch.rand(3, 4, 4), patch=8, n_samples=10)


class EvalFails(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            raise RuntimeError("eval broken")
        return super().forward(x)


def test_lime_restores_flags_on_error() -> None:
    model = EvalFails().train()
    model.features[1].eval()
    with pytest.raises(RuntimeError, match="eval broken"):
        lime_patch_scores(model, torch.randn(1, 3, 16, 16), patch=8, n_samples=10)
    assert model.training and model.fc.training and not model.features[1].training
    with pytest.raises(ValueError, match="patch"):
        lime_patch_scores(model, torch.randn(1, 3, 16, 16), patch=0)
    with pytest.raises(ValueError, match="score"):
        lime_patch_scores(model, torch.randn(1, 3, 16, 16), score="odds")


def test_zero_initialised_scorer_receives_gradient():
    from torchlap.models.bla import BoundedLogitAttention

    module = BoundedLogitAttention(4, init="zeros")
    module.train()
    x = torch.randn(2, 4, 3, 3)
    module(x).square().sum().backward()
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_l2x_auto_k_keeps_the_papers_share_of_positions() -> None:
    for size, expected in ((224, 8), (64, 1), (128, 3)):  # 7x7 -> 8, 2x2 -> 1, 4x4 -> 3
        model, (name,) = blaify(
            torchvision.models.resnet18(num_classes=2), "l2x-f", k="auto", input_size=size
        )
        assert model.get_submodule(name).k == expected, size
        assert model.torchlap_config["blaify"]["k"] == expected
    with pytest.raises(ValueError, match=r"k='auto' is the selection size of 'l2x-f'"):
        blaify(torchvision.models.resnet18(num_classes=2), "bla", k="auto")
