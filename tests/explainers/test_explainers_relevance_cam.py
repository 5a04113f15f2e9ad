"""Relevance-CAM on zennit, checked against a slow hand-written LRP on a tiny conv net."""

import pytest
import torch
import torchvision
from torch import nn

import torchlap
from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d
from torchlap.explainers import RelevanceCam, upsample
from torchlap.layers import LapBase

EPS = 1e-6  # zennit's default epsilon / stabilizer


def stab(z: float) -> float:
    """zennit's stabilizer: z + eps * sign(z), with sign(0) = +1."""
    return z + EPS * (1.0 if z >= 0 else -1.0)


def reference_relevance_cam(net: nn.Sequential, x: torch.Tensor, target: int) -> torch.Tensor:
    """Relevance-CAM at the output of ``net[1]`` for one image ``x`` (C, H, W), by loops.

    LRP rules as zennit's EpsilonPlus composite applies them (Bach et al. 2015, Montavon et al.
    2017): epsilon rule on the Linear layer, z+ rule (positive weights and bias on positive
    inputs) on the second convolution, average pooling redistributed in proportion to the
    inputs, relevance passed unchanged through ReLU and Flatten.
    """
    conv1, relu1, conv2, relu2, pool, _, linear = net
    with torch.no_grad():
        a1 = relu1(conv1(x[None]))[0]  # (C1, H, W): the explained layer
        a2 = relu2(conv2(a1[None]))[0]  # (C2, H, W)
        a3 = pool(a2[None])[0]  # (C2, H/2, W/2)
        flat = a3.flatten()
        z_out = linear(flat[None])[0]
    # Linear, epsilon rule, initial relevance y_c (the target logit's value) at the target
    r_flat = torch.zeros_like(flat)
    y_c = z_out[target].item()
    for j in range(flat.numel()):
        r_flat[j] = flat[j] * linear.weight[target, j] * y_c / stab(y_c)
    r3 = r_flat.view_as(a3)
    # average pooling 2x2: R_in = x / 4 * R_out / stab(out)
    r2 = torch.zeros_like(a2)
    for c in range(a2.shape[0]):
        for i in range(a3.shape[1]):
            for j in range(a3.shape[2]):
                out = a3[c, i, j].item()
                for di in range(2):
                    for dj in range(2):
                        y, xx = 2 * i + di, 2 * j + dj
                        r2[c, y, xx] = a2[c, y, xx] / 4 * r3[c, i, j] / stab(out)
    # ReLU: pass. Conv2 (3x3, padding 1), z+ rule on non-negative inputs a1
    weight = conv2.weight.detach().clamp(min=0)
    bias = conv2.bias.detach().clamp(min=0)
    channels_in, height, width = a1.shape
    r1 = torch.zeros_like(a1)
    for o in range(weight.shape[0]):
        for y in range(height):
            for xx in range(width):
                contributions = {}
                z = bias[o].item()
                for c in range(channels_in):
                    for dy in range(3):
                        for dx in range(3):
                            yy, xi = y + dy - 1, xx + dx - 1
                            if 0 <= yy < height and 0 <= xi < width:
                                value = (a1[c, yy, xi] * weight[o, c, dy, dx]).item()
                                contributions[(c, yy, xi)] = value
                                z += value
                for (c, yy, xi), value in contributions.items():
                    r1[c, yy, xi] += value * r2[o, y, xx].item() / stab(z)
    # Relevance-CAM: channel weights = summed relevance, map = ReLU(sum_k w_k A_k)
    weights = [r1[k].sum().item() for k in range(channels_in)]
    cam = sum(w * a1[k] for k, w in enumerate(weights))
    return cam.clamp(min=0)


def tiny_net() -> nn.Sequential:
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 3),
    ).double()
    with torch.no_grad():
        for conv in (net[0], net[2]):
            conv.bias.uniform_(-0.2, 0.2)
    return net.eval()


def test_relevance_cam_matches_hand_written_lrp():
    net = tiny_net()
    images = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    targets = torch.tensor([0, 2, 1])
    ours = RelevanceCam(net, layer="1").raw(images, targets)
    for i in range(3):
        expected = reference_relevance_cam(net, images[i], int(targets[i]))
        torch.testing.assert_close(ours[i], expected)
    assert ours.dtype == torch.float64
    assert (ours > 0).any()
    # the automatic layer of this net is the last spatial one before the classifier
    auto = RelevanceCam(net)
    assert auto.feature_probe(images).cam_layer == "4"


def test_relevance_is_conserved_through_the_lap_layers():
    """With no classifier bias, the relevance at the layer before the global LAP sums to the
    target logit (the initial relevance): the LAP rule redistributes, it neither creates nor
    loses relevance."""
    model, _ = torchlap.lapify(torchvision.models.resnet18(num_classes=4), where="resnet18")
    for module in model.modules():
        if isinstance(module, LapBase):
            nn.init.normal_(module.scorer.heads[-1].weight, std=0.5)
    nn.init.zeros_(model.fc.bias)
    model.eval()
    images = torch.randn(2, 3, 64, 64)
    explainer = RelevanceCam(model)
    relevance = explainer.run(images, None, lambda i, t: explainer.relevance(i, t)[1])
    with torch.no_grad():
        logits = model(images).amax(dim=1)  # the predicted class's logit
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), logits, rtol=1e-3, atol=1e-3)
    maps = explainer(images)
    assert maps.shape == (2, 64, 64) and torch.isfinite(maps).all()


def test_lap_cnn_relevance_flows_through_both_lap_layers():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        LocalAttentionPool2d(6, 2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        AdaptiveLocalAttentionPool2d(8, 1),
        nn.Flatten(),
        nn.Linear(8, 3, bias=False),
    ).eval()
    for module in model.modules():
        if isinstance(module, LapBase):
            nn.init.normal_(module.scorer.heads[-1].weight, std=0.5)
    images = torch.randn(2, 3, 16, 16)
    explainer = RelevanceCam(model, layer="1")  # before the first LAP: through both
    activations, relevance = explainer.run(
        images, 0, lambda i, t: torch.stack(explainer.relevance(i, t)[:2])
    )
    assert relevance.shape == activations.shape == (2, 6, 16, 16)
    maps = explainer(images, 0)
    assert torch.isfinite(maps).all()
    weights = relevance.sum(dim=(2, 3))[..., None, None]
    expected = torch.relu((weights * activations).sum(dim=1))
    torch.testing.assert_close(maps, upsample(expected, (16, 16)))


def test_options_are_checked():
    net = tiny_net()
    with pytest.raises(ValueError, match="unknown composite"):
        RelevanceCam(net, composite="lrp0")
    with pytest.raises(TypeError, match="canonizers"):
        RelevanceCam(net, canonizers="resnet")
    images = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    for name in ("epsilon_plus_flat", "epsilon_alpha2_beta1"):
        maps = RelevanceCam(net, layer="1", composite=name)(images)
        assert torch.isfinite(maps).all()


def _lapified_resnet18() -> nn.Module:
    """A lapified ResNet18 whose BatchNorms merge into zero biases (fresh running stats), so
    that z+ conserves relevance; no classifier bias; LAP scores far from uniform."""
    torch.manual_seed(1)
    model, _ = torchlap.lapify(torchvision.models.resnet18(num_classes=4), where="resnet18")
    for module in model.modules():
        if isinstance(module, LapBase):
            nn.init.normal_(module.scorer.heads[-1].weight, std=0.5)
    nn.init.zeros_(model.fc.bias)
    return model.eval()


def _relevance_total(explainer: RelevanceCam, images: torch.Tensor, layer: str) -> torch.Tensor:
    explainer.layer = layer
    relevance = explainer.run(images, 0, lambda i, t: explainer.relevance(i, t)[1])
    return relevance.sum(dim=(1, 2, 3))


def test_lap_residual_blocks_are_canonized_and_conserve_relevance(monkeypatch):
    """Relevance entering layer4.0 (a LapResidualBlock) leaves it whole: the residual sum and
    the main path's shared-score pooling get Norm rules. Without that canonizer (zennit's
    ResNetCanonizer alone) the residual `+` hands the whole relevance to both branches."""
    from torchlap.explainers import relevance_cam

    model = _lapified_resnet18()
    images = torch.randn(2, 3, 64, 64)
    explainer = RelevanceCam(model)
    after = _relevance_total(explainer, images, "layer4.0")
    before = _relevance_total(explainer, images, "layer3")
    with torch.no_grad():
        logit = model(images)[:, 0]  # the initial relevance, at class 0
    torch.testing.assert_close(after, logit, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(before, after, rtol=1e-2, atol=1e-2)

    monkeypatch.setattr(relevance_cam, "_shared_score_attribute_map", lambda name, module: None)
    assert (_relevance_total(explainer, images, "layer3") / logit > 1.5).all()


def test_shared_score_canonizer_is_removed_and_changes_nothing_outside_lrp():
    model = _lapified_resnet18()
    block = model.layer3[0]
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)
    maps = RelevanceCam(model, layer="layer2")(images)
    assert torch.isfinite(maps).all() and (maps > 0).any()
    # the canonizer's attributes are gone and the block computes what it computed before
    for name in ("canonizer_pools", "canonizer_sum", "pool_shared", "residual_sum"):
        assert name not in vars(block) and name not in block._modules
    assert not any("canonizer" in name for name, _ in model.named_modules())
    with torch.no_grad():
        torch.testing.assert_close(model(images), expected)
    assert not model.training


def test_inception_reduction_blocks_get_the_shared_score_rule():
    from torchlap.explainers.relevance_cam import SharedScorePool

    torch.manual_seed(0)
    model = torchvision.models.inception_v3(num_classes=3, aux_logits=False, init_weights=False)
    model, _ = torchlap.lapify(model, where="inception_v3")
    model.eval()
    explainer = RelevanceCam(model)
    composite = explainer._make_composite(torch.rand(1, 3, 96, 96), model.Mixed_7c)
    seen = []
    with composite.context(model):
        seen = [m for m in model.modules() if isinstance(m, SharedScorePool)]
    # Mixed_6a has one strided branch unit pooled by the score, Mixed_7a two
    assert len(seen) >= 3
    assert not any(isinstance(m, SharedScorePool) for m in model.modules())


def test_canonizers_must_be_zennit_canonizers():
    from zennit.canonizers import SequentialMergeBatchNorm

    net = tiny_net()
    # was "'int' object has no attribute 'apply'" at the first call
    with pytest.raises(TypeError, match=r"canonizers\[0\] is 1 \(int\)"):
        RelevanceCam(net, canonizers=[1])
    with pytest.raises(TypeError, match=r"zennit\.canonizers\.Canonizer"):
        torchlap.explain(net, torch.randn(1, 2, 6, 6).double(), "relevance_cam", canonizers=[1])
    maps = RelevanceCam(net, layer="2", canonizers=[SequentialMergeBatchNorm()])(
        torch.randn(1, 2, 6, 6, dtype=torch.float64)
    )
    assert torch.isfinite(maps).all()


def test_a_negative_target_logit_does_not_flip_the_map():
    """Shifting only the target class's classifier bias (+5 -> -5) changes no feature's
    contribution ``a_j w_jc``: Grad-CAM is unchanged, and so must Relevance-CAM be. LRP
    started from relevance 1 scaled every channel weight by ``1 / y_c`` (zennit's epsilon
    rule divides by ``y_c``): the map flipped sign, then became all zero after the ReLU."""
    from torchlap.models.wrapping import SmallCNN

    torch.manual_seed(0)
    net = SmallCNN(2).eval()
    images = torch.rand(4, 3, 32, 32)
    maps = []
    for bias in (5.0, -5.0):
        with torch.no_grad():
            net.fc.bias[1] = bias
        assert (net(images)[:, 1] * bias > 0).all()  # the target logit takes the bias's sign
        maps.append(RelevanceCam(net, layer="layer2")(images, 1))
    assert (maps[0] > 0).any()
    torch.testing.assert_close(maps[1], maps[0], rtol=1e-4, atol=1e-9)


def test_a_canonizer_failing_midway_leaves_the_model_as_it_was():
    """zennit's composite context undid nothing when registering failed: the batch norm a
    first canonizer had merged stayed merged into the convolution's weights for good, and an
    attribute canonizer's first module kept its replaced forward."""
    from zennit.canonizers import AttributeCanonizer, SequentialMergeBatchNorm

    seen = []

    def fails_on_the_second_conv(name: str, module: nn.Module) -> dict | None:
        if not isinstance(module, nn.Conv2d):
            return None
        seen.append(name)
        if len(seen) > 1:
            raise RuntimeError("a user's canonizer failing")
        return {"forward": lambda x: x, "extra": nn.Identity()}

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].weight.uniform_(0.5, 2)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    attributes = [set(vars(m)) for m in net.modules()]
    children = [dict(m._modules) for m in net.modules()]
    canonizers = [SequentialMergeBatchNorm(), AttributeCanonizer(fails_on_the_second_conv)]
    with pytest.raises(RuntimeError, match="a user's canonizer failing"):
        RelevanceCam(net, layer="2", canonizers=canonizers)(torch.randn(1, 3, 8, 8))
    assert net.state_dict().keys() == state.keys()
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)
    assert [set(vars(m)) for m in net.modules()] == attributes
    assert [dict(m._modules) for m in net.modules()] == children
    assert not any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in net.modules()
    )
    # and the model explains as a fresh copy does
    fresh = RelevanceCam(net, layer="2")(torch.ones(1, 3, 8, 8))
    assert torch.isfinite(fresh).all()


@pytest.mark.parametrize(
    ("batch_norm", "missing"),
    [
        (nn.BatchNorm2d(4, affine=False), r"affine parameters \(affine=False\)"),
        (
            nn.BatchNorm2d(4, track_running_stats=False),
            r"running statistics \(track_running_stats=False\)",
        ),
    ],
)
def test_a_batch_norm_the_default_canonizers_cannot_merge_is_named(batch_norm, missing):
    """Before: AttributeError ("'NoneType' object has no attribute 'data'") from inside
    zennit at the first call, with the batch norm before it left merged into the weights."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        batch_norm,
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    with pytest.raises(ValueError, match=rf"'4' has no {missing}; pass canonizers=\[\]"):
        RelevanceCam(net)
    maps = RelevanceCam(net, canonizers=[])(torch.rand(1, 3, 8, 8))
    assert maps.shape == (1, 8, 8) and torch.isfinite(maps).all()


def _random_statistics(model: nn.Module) -> nn.Module:
    """Batch norms away from the identity, so that a wrong merge changes the logits."""
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.randn(shape, generator=generator))
            module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            with torch.no_grad():
                module.weight.copy_(torch.rand(shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(shape, generator=generator))
    return model.eval()


class _PreActivation(nn.Module):
    """A pre-activation residual block: the input is normalised and added to the output."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x)))))) + x


def _tolerance(logits: torch.Tensor) -> float:
    """The tolerance the merge is checked to: 1e-4 of the largest logit (at least 1e-4)."""
    return 1e-4 * max(1.0, float(logits.abs().max()))


def _canonized_logits(explainer: RelevanceCam, images: torch.Tensor, layer: str) -> torch.Tensor:
    from torchlap.explainers.relevance_cam import composite_on

    model = explainer.model
    composite = explainer._make_composite(images[:1], model.get_submodule(layer))
    with composite_on(composite, model), torch.no_grad():
        return model(images)


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "efficientnet_b0", "densenet121"])
def test_default_canonizers_keep_the_outputs_of_lapified_and_branching_models(arch):
    """zennit's SequentialMergeBatchNorm merged by module order: into a LAP scorer's last 1x1
    convolution after a lapified strided convolution (the call failed on the score's shape),
    and DenseNet's batch norms on concatenations into the convolution before (a deep zennit
    error). The merge now follows a probe forward: the canonized model gives the same logits."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=3)
    if arch != "densenet121":
        model, _ = torchlap.lapify(model, where="auto")
    model = _random_statistics(model)
    images = torch.rand(2, 3, 32, 32)
    explainer = RelevanceCam(model)
    maps = explainer(images, 0)
    assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all()
    layer = explainer.resolve_layer(None, images)
    with torch.no_grad():
        plain = model(images)
    # merging is exact up to float rounding: within the tolerance the merge is checked to
    torch.testing.assert_close(
        _canonized_logits(explainer, images, layer), plain, rtol=0, atol=_tolerance(plain)
    )


def test_a_batch_norm_read_by_another_branch_too_is_not_merged():
    """The first convolution's output is normalised by the block's bn1 and added to its output:
    merging bn1 into it would change the sum, so only conv1 -> bn2 is merged."""
    torch.manual_seed(0)
    model = _random_statistics(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            _PreActivation(8),
            _PreActivation(8),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 2),
        )
    )
    images = torch.rand(2, 3, 12, 12)
    explainer = RelevanceCam(model, layer="2")
    with torch.no_grad():
        plain = model(images)
    torch.testing.assert_close(
        _canonized_logits(explainer, images, "2"), plain, rtol=0, atol=_tolerance(plain)
    )
    assert torch.isfinite(explainer(images, 1)).all()


def test_default_canonizers_that_change_the_outputs_are_refused():
    """A torchvision BasicBlock selects zennit's ResNetCanonizer, which also merges the
    pre-activation block's bn1 into the convolution registered before it: refused, naming the
    way out, instead of explaining another network."""
    from torchvision.models.resnet import BasicBlock

    torch.manual_seed(0)
    model = _random_statistics(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            _PreActivation(8),
            BasicBlock(8, 8),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 2),
        )
    )
    with pytest.raises(
        ValueError, match=r"canonizers change this model's outputs .*canonizers=\[\]"
    ):
        RelevanceCam(model)(torch.rand(1, 3, 12, 12), 0)
    assert torch.isfinite(RelevanceCam(model, canonizers=[])(torch.rand(1, 3, 12, 12), 0)).all()
