"""``alpha = 0`` in training: paper 000 (III.A, Eq. 4) says "when alpha = 0, N(V) = V +
epsilon", so ``TrainConfig`` accepts 0 (a negative alpha, which Eq. 4 squares, stays refused).
alpha is trainable, and Eq. 4's derivative in alpha, -2 alpha d^2 exp(-(alpha d)^2), is 0 at
alpha = 0: a LAP started there keeps it, on the fused path and the plain one alike."""

from __future__ import annotations

import pytest
import torch

from torchlap.layers import (
    AdaptiveLocalAttentionPool2d,
    LocalAttentionPool2d,
    adaptive_local_attention_pool2d,
    local_attention_pool2d,
)
from torchlap.train import TrainConfig


def test_alpha_zero_is_accepted_and_a_negative_one_refused() -> None:
    assert TrainConfig(data="concepts", out="runs/x", alpha=0.0).validate() is None
    with pytest.raises(ValueError, match=r"alpha must be a finite number >= 0, got -0.5"):
        TrainConfig(data="concepts", out="runs/x", alpha=-0.5).validate()


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("global_pool", [False, True])
def test_alpha_zero_gets_no_gradient(backend: str, global_pool: bool) -> None:
    """The functional pools (pure PyTorch, and the compiled kernel where it builds)."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    score = torch.rand(2, 1, 6, 6)  # scores that differ per pixel: d != 0
    alpha = torch.zeros((), requires_grad=True)
    if global_pool:
        out = adaptive_local_attention_pool2d(x, score, 1, alpha=alpha, backend=backend)
    else:
        out = local_attention_pool2d(x, score, 3, 2, 1, alpha=alpha, backend=backend)
    out.square().sum().backward()
    assert alpha.grad is not None and float(alpha.grad) == 0.0
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize("global_pool", [False, True])
def test_a_lap_layer_started_at_alpha_zero_keeps_it(global_pool: bool) -> None:
    """The module (its own path, fused where it can) through one optimizer step."""
    torch.manual_seed(0)
    layer = (
        AdaptiveLocalAttentionPool2d(4, 1, n_concepts=2, alpha=0.0)
        if global_pool
        else LocalAttentionPool2d(4, 3, 2, 1, n_concepts=2, alpha=0.0)
    )
    torch.nn.init.normal_(layer.scorer.heads[-1].weight)  # scores that differ per pixel
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    layer(torch.randn(2, 4, 6, 6)).square().sum().backward()
    assert float(layer.alpha.grad) == 0.0
    optimizer.step()
    assert float(layer.alpha.detach()) == 0.0
