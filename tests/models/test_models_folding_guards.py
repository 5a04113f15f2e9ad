"""Batch-norm folding's guards: a batch norm that does not read a convolution's output, or a pair
with a user's hook, is left alone; a model without batch norms is never probed; the folded
logits are checked against the largest logit (rounding) and on every logit (a wrong fold), and
models whose logits cannot be compared (no tensor, no element) are not folded."""

from __future__ import annotations

import logging

import pytest
import torch
from test_models_folding import Residual, conv_bn_net, randomized_bn
from torch import nn

from torchlap.models.folding import folded_batch_norms


def unchanged_inside(model: nn.Module, probe: torch.Tensor, images: torch.Tensor) -> int:
    """The number of folded pairs, after checking the model's outputs within the block."""
    with torch.no_grad():
        expected = model(images)
    with torch.no_grad(), folded_batch_norms(model, probe) as folded:
        got = model(images)
    if isinstance(expected, torch.Tensor):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    return folded


def test_a_batch_norm_after_a_relu_is_not_folded_into_the_convolution_before_it():
    torch.manual_seed(0)
    model = randomized_bn(
        nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2)
        )
    )
    images = torch.randn(2, 3, 6, 6)
    model(images)  # materialise the lazy layer
    with torch.no_grad(), folded_batch_norms(model, images[:1]) as folded:
        assert folded == 0 and isinstance(model[2], nn.BatchNorm2d)


@pytest.mark.parametrize(
    ("hooked", "register"), [(0, "register_forward_hook"), (1, "register_forward_pre_hook")]
)
def test_a_pair_with_a_users_hook_is_not_folded(hooked, register):
    # a hook on the convolution sees its output (folding would hand it the batch-normed one);
    # a pre hook on the batch norm sees its input (folding would skip it)
    model = conv_bn_net()
    getattr(model[hooked], register)(lambda module, *args: None)
    with torch.no_grad(), folded_batch_norms(model, torch.randn(1, 3, 9, 9)) as folded:
        assert folded == 1  # only the second pair (modules 3 and 4)
        assert isinstance(model[1], nn.BatchNorm2d) and isinstance(model[4], nn.Identity)


def test_an_eval_model_without_batch_norms_is_not_probed():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()).eval()
    calls = []
    model.register_forward_pre_hook(lambda *args: calls.append(1))
    with folded_batch_norms(model, torch.randn(1, 3, 2, 2)) as folded:
        assert folded == 0
    assert calls == []


def test_rounding_is_judged_against_the_largest_logit():
    # logits near 0 and near 1e5: float32 rounding of the fold moves the large ones by far more
    # than 1e-4, but by far less than 1e-4 of the largest logit, so the fold is kept
    model = conv_bn_net()
    with torch.no_grad():
        model[8].weight.mul_(1e5)
        model[8].weight[0] = 0.0
        model[8].bias.zero_()
    images = torch.randn(3, 3, 9, 9)
    with torch.no_grad():
        expected = model(images)
    assert expected[:, 0].abs().max() == 0 and expected.abs().max() > 1e3
    with torch.no_grad(), folded_batch_norms(model, images[:1]) as folded:
        assert folded == 2
        torch.testing.assert_close(model(images), expected, rtol=1e-4, atol=1e-2)


class ResidualAndConstant(Residual):
    """Logit 0 reads the convolution's output twice (a wrong fold changes it); logit 1 is a
    constant that no fold changes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = super().forward(x).mean(dim=1)
        return torch.stack((first, torch.zeros_like(first)), dim=1)


def test_a_wrong_fold_is_undone_even_when_some_logits_do_not_move(caplog):
    torch.manual_seed(0)
    model = randomized_bn(ResidualAndConstant())
    images = torch.randn(2, 3, 6, 6)
    with caplog.at_level(logging.INFO, logger="torchlap.models.folding"):
        folded = unchanged_inside(model, images[:1], images)
    assert folded == 0 and isinstance(model.bn, nn.BatchNorm2d)
    assert any("batch norms not folded" in message for message in caplog.messages)


def test_a_single_logit_is_compared_and_folded():
    torch.manual_seed(0)
    model = randomized_bn(
        nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4, 1),
        )
    )  # fmt: skip
    images = torch.randn(1, 3, 6, 6)
    assert unchanged_inside(model, images, images) == 1


class TupleLogits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = conv_bn_net()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)
        return logits, logits.softmax(dim=1)


def test_logits_that_cannot_be_compared_are_not_folded():
    # no tensor to compare (a tuple), or no element (an empty probe batch): run unchanged
    model = TupleLogits().eval()
    with torch.no_grad(), folded_batch_norms(model, torch.randn(1, 3, 9, 9)) as folded:
        assert folded == 0 and isinstance(model.net[1], nn.BatchNorm2d)
    plain = conv_bn_net()
    images = torch.randn(2, 3, 9, 9)
    assert unchanged_inside(plain, images[:0], images) == 0
