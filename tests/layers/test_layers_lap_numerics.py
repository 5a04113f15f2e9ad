"""LAP on extreme but finite settings, double backward and torch.func, on every path.

Each case failed before its fix: ``alpha`` above 1.8e19 made Eq. 4's ``alpha**2`` overflow
float32 (NaN weights at every window's maximum, ``inf * 0``; in float16 from ``alpha`` 256);
float16 score maps summed a large map's weights to ``inf`` (a zero output); the compiled
window sums' backward was not differentiable (a silently wrong double backward); the bmm with
``out=`` of the PyTorch path refused a double backward; torch.func transforms could not enter
the per-op path's autograd functions.
"""

import pytest
import torch

from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d
from torchlap.layers.functional import adaptive_local_attention_pool2d, local_attention_pool2d

LAYERS = {
    "windowed": lambda **kw: LocalAttentionPool2d(4, 3, 2, 1, ceil_mode=True, **kw),
    "global": lambda **kw: AdaptiveLocalAttentionPool2d(4, **kw),
    "adaptive": lambda **kw: AdaptiveLocalAttentionPool2d(4, (2, 3), **kw),
}


def _random_scorer(layer):
    for parameter in layer.scorer.parameters():
        torch.nn.init.normal_(parameter)
    return layer


@pytest.mark.parametrize("fused", ["1", "0"])
@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("alpha", [2e19, 1e30, -1e38])
def test_a_huge_alpha_gives_finite_outputs_and_gradients(monkeypatch, kind, alpha, fused):
    monkeypatch.setenv("TORCHLAP_FUSED_LAYER", fused)
    layer = _random_scorer(LAYERS[kind]())
    x = torch.randn(2, 4, 7, 9, requires_grad=True)
    with torch.no_grad():
        layer.alpha.fill_(1e19)
    limit = layer(x).detach()  # alpha**2 = 1e38 still fits float32
    with torch.no_grad():
        layer.alpha.fill_(alpha)
    out = layer(x)
    out.sum().backward()
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.detach(), limit)
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_half_precision_layers_stay_finite_with_a_large_alpha(kind, dtype):
    # alpha**2 = 90000 overflows float16 (65504): the weight at each window's maximum was NaN
    layer = _random_scorer(LAYERS[kind](alpha=300.0, dtype=dtype))
    x = torch.randn(2, 4, 7, 9, dtype=dtype)
    out = layer(x)
    assert torch.isfinite(out).all()
    assert out.abs().max() <= x.abs().max()  # a weighted average of the input


def test_float16_global_pool_of_a_large_map_is_its_average():
    # 400 x 400 weights of 0.5 sum past float16's 65504: the output used to be 0
    layer = AdaptiveLocalAttentionPool2d(2, dtype=torch.float16)
    out = layer(torch.full((1, 2, 400, 400), 3.0, dtype=torch.float16))
    expected = torch.full((1, 2, 1, 1), 3.0, dtype=torch.float16)
    torch.testing.assert_close(out, expected, rtol=0.01, atol=0)  # float16 sums


POOLS = {
    "windowed": lambda x, s, backend: local_attention_pool2d(
        x, s, 3, 2, 1, alpha=0.7, ceil_mode=True, backend=backend
    ),
    "global": lambda x, s, backend: adaptive_local_attention_pool2d(
        x, s, 1, alpha=0.7, backend=backend
    ),
    "adaptive": lambda x, s, backend: adaptive_local_attention_pool2d(
        x, s, (2, 3), alpha=0.7, backend=backend
    ),
}


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("kind", sorted(POOLS))
def test_double_backward_of_the_per_op_path(kind, backend):
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    score = torch.rand(2, 1, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: POOLS[kind](a, b, backend), (x, score))


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_the_layer_double_backward_on_the_per_op_path(monkeypatch, kind):
    monkeypatch.setenv("TORCHLAP_FUSED_LAYER", "0")
    layer = _random_scorer(LAYERS[kind](dtype=torch.float64))
    x = torch.randn(2, 4, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a: layer(a), (x,))


def test_the_fused_layer_names_the_paths_with_a_double_backward():
    layer = LocalAttentionPool2d(4, 2)
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    with pytest.raises(RuntimeError, match="TORCHLAP_FUSED_LAYER=0"):
        torch.autograd.grad(layer(x).sum(), x, create_graph=True)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_torch_func_transforms_run_the_layer(kind):
    from torch.func import functional_call, grad, vmap

    layer = _random_scorer(LAYERS[kind]())
    x = torch.randn(3, 4, 7, 9)
    expected = layer(x)
    batched = vmap(lambda sample: layer(sample.unsqueeze(0)).squeeze(0))(x)
    torch.testing.assert_close(batched, expected)
    params = {name: p.detach() for name, p in layer.named_parameters()}
    grads = grad(lambda p: functional_call(layer, p, (x,)).square().sum())(params)
    layer.zero_grad()
    layer(x).square().sum().backward()
    for name, parameter in layer.named_parameters():
        torch.testing.assert_close(grads[name], parameter.grad)


@pytest.mark.parametrize("eps", [1e-50, 1e-39, 2e29, 1e39])
def test_an_eps_that_float32_cannot_hold_is_refused(eps):
    # before: 1e-50 is 0 in float32 (windows of zero scores divided 0 by 0 on the fused path,
    # not on the per-op path); 1e39 is inf (every weight NaN)
    with pytest.raises(ValueError, match=r"eps must be a finite float > 0, from 1.2e-38"):
        LocalAttentionPool2d(4, 2, eps=eps)
    with pytest.raises(ValueError, match="eps must be"):
        local_attention_pool2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), 2, eps=eps)


@pytest.mark.parametrize("fused", ["1", "0"])
@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("eps", [1.2e-38, 1e29])
def test_the_extreme_accepted_eps_give_the_average_of_zero_scores(monkeypatch, kind, eps, fused):
    monkeypatch.setenv("TORCHLAP_FUSED_LAYER", fused)
    layer = LAYERS[kind](eps=eps)
    with torch.no_grad():
        layer.scorer.heads[-1].bias.fill_(-1000.0)  # every concept probability is exactly 0
    x = torch.randn(2, 4, 7, 9)
    average = LAYERS[kind]()  # a fresh layer computes the plain average
    torch.testing.assert_close(layer(x), average(x))
