"""When a LAP layer may not take the fused compiled layer, it runs the scorer as it stands.

The fused layer (``torchlap.layers.fused``) stands in for the built-in ``ConceptScorer`` only:
its 1x1 convolutions with biases, a ReLU between them, the built-in aggregations, and no hook
that the fused call would bypass (``LapBase._fused_forward``). Anything else must run PyTorch's
path, which calls the scorer and its aggregation as modules. Each case here changes the scorer
one way (a hook of each kind on the scorer, a global module hook, a hook on the ReLU or on the
"conv" aggregation's modules, a replaced ReLU or sigmoid, a last convolution without a bias, a
forward or an aggregation of the user's, a subclass) and checks that the fused layer did not run,
that the hooks ran, and that the pooled values are paper 000's Eq. 1-4 of the scorer as it now
stands: its modules called in turn, the sigmoid, the aggregation, then a loop over windows.
"""

from __future__ import annotations

import pytest
import torch
from test_layers_lap_kernel import slow_lap
from torch import nn
from torch.nn.modules import module as module_globals

from torchlap._ext import lap_kernels
from torchlap.layers import fused
from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, ConceptScorer, LocalAttentionPool2d

needs_kernel = pytest.mark.skipif(lap_kernels() is None, reason="no C compiler: kernel not built")


def _layer(kind: str = "window", aggregation: str = "max", hidden: int = 3, n: int = 3):
    """A float64 layer with random scorer parameters (away from the uniform start)."""
    if kind == "window":
        layer = LocalAttentionPool2d(4, 3, 2, 1, n, hidden, aggregation, alpha=1.2, eps=1e-3,
                                     ceil_mode=True, dtype=torch.float64)  # fmt: skip
    else:
        layer = AdaptiveLocalAttentionPool2d(4, 1, n, hidden, aggregation, alpha=1.2, eps=1e-3,
                                             dtype=torch.float64)  # fmt: skip
    generator = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for parameter in layer.scorer.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return layer


def reference(layer, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3 from the scorer's modules as they stand, then Eq. 1 and 4 window by window."""
    scorer = layer.scorer
    with torch.no_grad():
        hidden = x
        for module in scorer.heads:
            hidden = nn.functional.conv2d(hidden, module.weight, module.bias) if isinstance(
                module, nn.Conv2d
            ) else module(hidden)  # fmt: skip
        concepts = torch.sigmoid(hidden)
        if scorer.n_concepts == 1:
            score = concepts
        elif scorer.__dict__.get("aggregate") is not None or "aggregate" in scorer._modules:
            score = scorer.aggregate(concepts)
        else:
            score = concepts.amax(dim=1, keepdim=True)
        if isinstance(layer, AdaptiveLocalAttentionPool2d):  # the global pool: one window
            height, width = x.shape[-2:]
            return slow_lap(x, score, (height, width), (1, 1), (0, 0), 1.2, 1e-3)
        return slow_lap(x, score, (3, 3), (2, 2), (1, 1), 1.2, 1e-3, ceil_mode=True)


def _run(layer, calls: list | None = None) -> torch.Tensor:
    """Forward and backward on a random input; asserts the fused layer did not run, and that
    the hook recording into ``calls`` ran once (before the reference calls the modules)."""
    x = torch.randn(2, 4, 7, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    before = dict(fused.fused_layer_calls)
    inp = x.clone().requires_grad_(True)
    pooled = layer(inp)
    pooled.square().sum().backward()
    assert inp.grad is not None and torch.isfinite(inp.grad).all()
    assert fused.fused_layer_calls == before, "the fused layer ran"
    if calls is not None:
        assert calls == [1]
    torch.testing.assert_close(pooled.detach(), reference(layer, x))
    return pooled


@needs_kernel
@pytest.mark.parametrize("kind", ["window", "global"])
@pytest.mark.parametrize("aggregation", ["max", "conv"])
def test_the_unchanged_layer_takes_the_fused_path(kind, aggregation):
    """The control: the same layers, unchanged, do run the fused layer."""
    layer = _layer(kind, aggregation)
    calls = sum(fused.fused_layer_calls.values())
    x = torch.randn(2, 4, 7, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    torch.testing.assert_close(layer(x).detach(), reference(layer, x))
    assert sum(fused.fused_layer_calls.values()) == calls + 1


HOOKS = {
    "forward": lambda m, record: m.register_forward_hook(lambda *a: record()),
    "forward_pre": lambda m, record: m.register_forward_pre_hook(lambda *a: record()),
    "full_backward": lambda m, record: m.register_full_backward_hook(lambda *a: record()),
    "full_backward_pre": lambda m, record: m.register_full_backward_pre_hook(lambda *a: record()),
}


@pytest.mark.parametrize("kind", ["window", "global"])
@pytest.mark.parametrize("hook", list(HOOKS))
def test_a_hook_on_the_scorer_runs(kind, hook):
    layer = _layer(kind)
    calls = []
    HOOKS[hook](layer.scorer, lambda: calls.append(1))
    _run(layer, calls)


GLOBAL_HOOKS = {
    "forward": lambda record: module_globals.register_module_forward_hook(lambda *a: record()),
    "forward_pre": lambda record: module_globals.register_module_forward_pre_hook(
        lambda *a: record()
    ),
    "full_backward": lambda record: module_globals.register_module_full_backward_hook(
        lambda *a: record()
    ),
    "full_backward_pre": lambda record: module_globals.register_module_full_backward_pre_hook(
        lambda *a: record()
    ),
}


@pytest.mark.parametrize("hook", list(GLOBAL_HOOKS))
def test_a_global_module_hook_sees_the_scorer(hook):
    layer = _layer()
    seen = []
    handle = GLOBAL_HOOKS[hook](lambda: seen.append(1))
    try:
        _run(layer)
    finally:
        handle.remove()
    assert seen  # the layer, the scorer and its modules each called it


@pytest.mark.parametrize("hook", ["forward", "forward_pre"])
def test_a_hook_on_the_relu_between_the_heads_runs(hook):
    layer = _layer()
    calls = []
    HOOKS[hook](layer.scorer.heads[1], lambda: calls.append(1))
    _run(layer, calls)


@pytest.mark.parametrize("where", ["sequence", "sigmoid"])
@pytest.mark.parametrize("hook", ["forward", "forward_pre"])
def test_a_hook_on_the_conv_aggregation_runs(where, hook):
    layer = _layer(aggregation="conv")
    calls = []
    module = layer.scorer.aggregate if where == "sequence" else layer.scorer.aggregate[1]
    HOOKS[hook](module, lambda: calls.append(1))
    _run(layer, calls)


def test_another_activation_between_the_heads_is_used():
    layer = _layer()
    layer.scorer.heads[1] = nn.Tanh()
    _run(layer)


def test_a_third_module_in_the_heads_is_used():
    layer = _layer(hidden=0)
    layer.scorer.heads.append(nn.Hardtanh(-1.0, 0.5))
    _run(layer)


def test_another_squashing_of_the_conv_aggregation_is_used():
    layer = _layer(aggregation="conv")
    layer.scorer.aggregate[1] = nn.Hardsigmoid()
    _run(layer)


def test_a_longer_conv_aggregation_is_used():
    layer = _layer(aggregation="conv")
    layer.scorer.aggregate.append(nn.Hardtanh(0.1, 0.6))
    _run(layer)


@pytest.mark.parametrize("aggregation", ["max", "conv"])
def test_a_last_convolution_without_a_bias_is_used(aggregation):
    layer = _layer(aggregation=aggregation)
    last = nn.Conv2d(3, 3, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        last.weight.copy_(layer.scorer.heads[2].weight)
    layer.scorer.heads[2] = last
    _run(layer)


def test_a_conv_aggregation_without_a_bias_is_used():
    layer = _layer(aggregation="conv")
    conv = nn.Conv2d(3, 1, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(layer.scorer.aggregate[0].weight)
    layer.scorer.aggregate[0] = conv
    _run(layer)


def test_an_aggregation_function_set_on_the_scorer_is_used():
    layer = _layer(aggregation="max")
    layer.scorer.aggregate = lambda concepts: concepts.mean(dim=1, keepdim=True)
    _run(layer)


def test_a_forward_set_on_the_scorer_is_used():
    layer = _layer()
    scorer = layer.scorer
    original = scorer.forward
    calls = []

    def forward(x):
        calls.append(1)
        return original(x)

    scorer.forward = forward
    _run(layer, calls)


def test_a_subclass_of_the_scorer_is_used():
    class Halved(ConceptScorer):
        def forward(self, x):
            concepts, score = super().forward(x)
            return concepts, score / 2

    layer = _layer()
    scorer = Halved(4, 3, 3, "max", dtype=torch.float64)
    scorer.load_state_dict(layer.scorer.state_dict())
    layer.scorer = scorer
    x = torch.randn(2, 4, 7, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    calls = dict(fused.fused_layer_calls)
    pooled = layer(x)
    assert fused.fused_layer_calls == calls
    with torch.no_grad():
        score = scorer(x)[1]
    assert torch.equal(layer.maps.score, score)
    want = slow_lap(x, score, (3, 3), (2, 2), (1, 1), 1.2, 1e-3, ceil_mode=True)
    torch.testing.assert_close(pooled.detach(), want)


def _module_aggregation(n: int) -> nn.Module:
    generator = torch.Generator().manual_seed(10)
    conv = nn.Conv2d(n, 1, 1, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator, dtype=torch.float64))
    return nn.Sequential(conv, nn.Sigmoid())


@pytest.mark.parametrize("kind", ["window", "global"])
def test_a_module_aggregation_of_two_concepts_is_used(kind):
    layer = _layer(kind, n=2)
    layer.scorer = ConceptScorer(4, 2, 3, _module_aggregation(2), dtype=torch.float64)
    _run(layer)


@needs_kernel
def test_one_concept_takes_the_fused_path_whatever_its_aggregation():
    """``_fused_forward``: the fused layer serves "aggregation max/sum/mean/conv or one concept":
    one concept's score is its probability, the aggregation module is never called."""
    layer = _layer(n=1)
    layer.scorer = ConceptScorer(4, 1, 3, _module_aggregation(1), dtype=torch.float64)
    layer.scorer.heads.load_state_dict(_layer(n=1).scorer.heads.state_dict())
    x = torch.randn(2, 4, 7, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    calls = sum(fused.fused_layer_calls.values())
    pooled = layer(x)
    assert sum(fused.fused_layer_calls.values()) == calls + 1
    torch.testing.assert_close(pooled.detach(), reference(layer, x))
