"""Batch norms folded into their convolutions for the masked forwards: only where it is safe,
with the model's logits, parameters and modules as they were, and undone on every exit."""

import pytest
import torch
from torch import nn

from torchlap.models.folding import folded_batch_norms


def randomized_bn(model: nn.Module) -> nn.Module:
    """Eval-mode batch norms with running statistics and affine parameters far from identity."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.2)
            if module.affine:
                module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    return model.eval()


def conv_bn_net(bias: bool = True, affine: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    return randomized_bn(
        nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1, bias=bias),
            nn.BatchNorm2d(6, affine=affine),
            nn.ReLU(inplace=True),
            nn.Conv2d(6, 5, 3, stride=2, bias=bias),
            nn.BatchNorm2d(5, affine=affine),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(5, 4),
        )
    )


def reference_fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The folded weight and bias, one output channel at a time, from the definitions:
    bn(y)_c = (y_c - mean_c) / sqrt(var_c + eps) * gamma_c + beta_c, y_c = W_c * x + b_c."""
    weight = torch.empty_like(conv.weight)
    bias = torch.empty(conv.out_channels)
    for c in range(conv.out_channels):
        gamma = bn.weight[c] if bn.weight is not None else 1.0
        beta = bn.bias[c] if bn.bias is not None else 0.0
        b = conv.bias[c] if conv.bias is not None else 0.0
        std = (bn.running_var[c] + bn.eps) ** 0.5
        weight[c] = conv.weight[c] * gamma / std
        bias[c] = (b - bn.running_mean[c]) * gamma / std + beta
    return weight, bias


@pytest.mark.parametrize(("bias", "affine"), [(True, True), (False, True), (True, False)])
def test_folds_every_pair_to_the_reference_weights_and_restores_the_model(bias, affine):
    model = conv_bn_net(bias=bias, affine=affine)
    images = torch.randn(3, 3, 9, 9)
    with torch.no_grad():
        expected = model(images)
    params = {name: (p, p.detach().clone()) for name, p in model.named_parameters()}
    modules = dict(model.named_modules())
    with torch.no_grad():
        references = [reference_fold(model[0], model[1]), reference_fold(model[3], model[4])]
    with torch.inference_mode(), folded_batch_norms(model, images[:1]) as folded:
        assert folded == 2
        assert isinstance(model[1], nn.Identity) and isinstance(model[4], nn.Identity)
        for conv, (weight, fold_bias) in zip((model[0], model[3]), references, strict=True):
            torch.testing.assert_close(conv.weight, weight)
            torch.testing.assert_close(conv.bias, fold_bias)
        torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-6)
    assert dict(model.named_modules()) == modules
    for name, param in model.named_parameters():
        original, values = params[name]
        assert param is original and torch.equal(param, values), name
    assert (model[0].bias is None) == (not bias)


class Residual(nn.Module):
    """The convolution's output is read twice: by the batch norm and by the skip connection."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return (self.bn(y) + y).mean(dim=(2, 3))


class SharedBatchNorm(nn.Module):
    """One batch norm after two convolutions: folding it into either changes the other."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.bn(self.a(x)) + self.bn(self.b(x))).mean(dim=(2, 3))


@pytest.mark.parametrize("make", [Residual, SharedBatchNorm])
def test_does_not_fold_what_something_else_reads(make):
    torch.manual_seed(0)
    model = randomized_bn(make())
    images = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        expected = model(images)
    with torch.no_grad(), folded_batch_norms(model, images[:1]) as folded:
        assert folded == 0
        assert isinstance(model.bn, nn.BatchNorm2d)
        torch.testing.assert_close(model(images), expected, rtol=0, atol=0)


def test_training_batch_norms_and_models_without_them_run_unchanged():
    model = conv_bn_net().train()
    with torch.no_grad(), folded_batch_norms(model, torch.randn(2, 3, 9, 9)) as folded:
        assert folded == 0 and isinstance(model[1], nn.BatchNorm2d)
    calls = []
    plain = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten())
    plain.register_forward_hook(lambda *args: calls.append(1))
    with folded_batch_norms(plain, torch.randn(1, 3, 2, 2)) as folded:
        assert folded == 0
    assert calls == []  # no batch norm: no probe forward


def test_restores_the_model_when_the_block_raises():
    model = conv_bn_net()
    bn, weight = model[1], model[0].weight
    probe = torch.randn(1, 3, 9, 9)
    with (
        pytest.raises(RuntimeError, match="inside"),
        torch.no_grad(),
        folded_batch_norms(model, probe) as folded,
    ):
        assert folded == 2
        raise RuntimeError("inside")
    assert model[1] is bn and model[0].weight is weight


def test_rejects_what_is_not_a_model_or_a_tensor():
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"), folded_batch_norms("net", None):
        pass
    model = conv_bn_net()
    with pytest.raises(TypeError, match="probe must be a tensor"), folded_batch_norms(model, [1]):
        pass


def test_removes_its_probe_hooks_when_the_probe_forward_fails():
    model = conv_bn_net()
    model[8].register_forward_pre_hook(lambda *args: (_ for _ in ()).throw(ValueError("bad")))
    with pytest.raises(ValueError, match="bad"), folded_batch_norms(model, torch.randn(1, 3, 9, 9)):
        pass
    for module in model[:5]:
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert isinstance(model[1], nn.BatchNorm2d)
