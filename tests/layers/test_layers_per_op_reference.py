"""The LAP modules on their per-op CPU paths against the slow references of paper 000, Eq. 1-4.

``test_layers_lap_fused.py`` holds the fused compiled layer to the references; here the same
modules run without it: the per-op path with the compiled window sums (``TORCHLAP_FUSED_LAYER=0``)
and pure PyTorch (``TORCHLAP_NO_EXT=1``), which is also the path of every GPU. Values of all three
outputs (pooled features, concept maps, score map) and the gradients of a random probe of them
with respect to the input and every parameter (scorer, "conv" aggregation, ``alpha``), for every
aggregation the layer offers (an ``nn.Module`` aggregation included) and every geometry: windows
with padding and ceil mode, the global pool and adaptive outputs other than 1x1. The references
compute Eq. 3 pixel by pixel and Eq. 1 and 4 window by window (loops over samples, windows and
pixels); nothing here needs a compiler.
"""

from __future__ import annotations

import pytest
import torch
from test_layers_lap_reference import reference_adaptive, reference_lap
from torch import Tensor, nn

import torchlap._ext as ext
from torchlap.layers import fused
from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d

EPS = 1e-3


class SoftplusAggregation(nn.Module):
    """A user's aggregation ``A`` (Eq. 3): softplus of a weighted sum of the probabilities."""

    def __init__(self, n_concepts: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_concepts))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, concepts: Tensor) -> Tensor:
        mixed = (concepts * self.weight[:, None, None]).sum(1, keepdim=True) + self.bias
        return nn.functional.softplus(mixed)


SCORERS = [
    # (n_concepts, hidden_channels, aggregation)
    (1, 0, "max"),  # one concept: the score is the concept map itself
    (1, 4, "conv"),  # "conv" with one concept: no aggregation either
    (3, 4, "max"),
    (3, 0, "sum"),  # the paper's CelebA aggregation
    (2, 5, "mean"),
    (3, 0, "conv"),  # the paper's ImageNet scorer: one 1x1 convolution, a 1x1 aggregation
    (2, 4, "conv"),
    (3, 2, "module"),  # an nn.Module aggregation (always the per-op path)
    # every head with its own hidden channels (head_hidden="per_head"; the per-op path)
    (3, 4, "sum", "per_head"),
    (2, 3, "conv", "per_head"),
]
GEOMETRIES = [
    # (height, width, geometry): a window (kernel, stride, padding, ceil_mode) or ("adaptive", out)
    (9, 9, ((3, 3), (2, 2), (1, 1), False)),  # the ResNet stem's k3 s2 p1
    (8, 11, ((2, 2), (2, 2), (1, 1), True)),  # padding and ceil mode
    (10, 10, ((3, 3), (2, 2), (0, 0), True)),
    (7, 10, ((3, 2), (3, 1), (1, 1), False)),  # overlapping columns, non-square kernel
    (9, 11, ((2, 2), (2, 2), (0, 0), False)),  # the last row and column are in no window
    (8, 9, ((1, 1), (2, 2), (0, 0), False)),  # a kernel below the stride
    (6, 5, ("adaptive", (1, 1))),  # the global pool
    (5, 7, ("adaptive", (2, 3))),  # overlapping adaptive cells
    (5, 4, ("adaptive", (1, None))),
]


@pytest.fixture(params=["per_op", "no_ext"])
def path(request, monkeypatch):
    """The per-op path with the compiled window sums, or pure PyTorch (no compiled code)."""
    monkeypatch.setenv("TORCHLAP_FUSED_LAYER", "0")
    if request.param == "no_ext":
        # as a fresh process with TORCHLAP_NO_EXT=1; monkeypatch restores the loaded library
        monkeypatch.setenv("TORCHLAP_NO_EXT", "1")
        monkeypatch.setitem(ext._state, "status", ext._state.get("status", "unknown"))
        monkeypatch.delitem(ext._state, "library", raising=False)
        assert ext.lap_kernels() is None
    return request.param


def make_layer(geometry, channels, n_concepts, hidden, aggregation, dtype, head_hidden="shared"):
    torch.manual_seed(7)
    if aggregation == "module":
        aggregation = SoftplusAggregation(n_concepts).to(dtype)
    options = dict(
        n_concepts=n_concepts, hidden_channels=hidden, aggregation=aggregation, alpha=1.4,
        eps=EPS, head_hidden=head_hidden,
    )  # fmt: skip
    if geometry[0] == "adaptive":
        layer = AdaptiveLocalAttentionPool2d(channels, geometry[1], **options, dtype=dtype)
    else:
        kernel, stride, padding, ceil_mode = geometry
        layer = LocalAttentionPool2d(
            channels, kernel, stride, padding, ceil_mode=ceil_mode, **options, dtype=dtype
        )
    with torch.no_grad():  # away from the zero start, so that the scores differ per pixel
        for parameter in layer.parameters():
            if parameter is not layer.alpha:
                parameter.add_(torch.randn_like(parameter))
    return layer


def reference_scorer(layer, x):
    """Eq. 3 one pixel at a time: 1x1 heads (ReLU between two), sigmoid, aggregation ``A``."""
    scorer = layer.scorer
    params = dict(scorer.named_parameters())
    batch, _, height, width = x.shape
    n = scorer.n_concepts
    concepts = torch.zeros(batch, n, height, width, dtype=x.dtype)
    score = torch.zeros(batch, 1, height, width, dtype=x.dtype)
    for b in range(batch):
        for r in range(height):
            for q in range(width):
                logits = [head_logit(scorer, params, k, x[b, :, r, q]) for k in range(n)]
                probabilities = torch.sigmoid(torch.stack(logits))
                concepts[b, :, r, q] = probabilities
                score[b, 0, r, q] = aggregate(scorer, params, probabilities)
    return concepts, score


def head_logit(scorer, params, k, feature):
    """``S_C(x)_k``: head ``k``'s logit for one pixel's feature vector. Its hidden units are all
    ``hidden_channels`` units of the first convolution (shared), or its own block of them
    (``head_hidden="per_head"``: units ``k * hidden ... (k + 1) * hidden``)."""
    w1, b1 = params["heads.0.weight"][:, :, 0, 0], params["heads.0.bias"]
    hidden = scorer.hidden_channels
    if hidden == 0:
        return w1[k] @ feature + b1[k]
    units = torch.relu(w1 @ feature + b1)
    if scorer.head_hidden == "per_head" and scorer.n_concepts > 1:
        units = units[k * hidden : (k + 1) * hidden]
    return params["heads.2.weight"][k, :, 0, 0] @ units + params["heads.2.bias"][k]


def aggregate(scorer, params, probabilities):
    """``A`` of Eq. 3 for one pixel's concept probabilities."""
    if probabilities.numel() == 1:
        return probabilities[0]
    name = scorer.aggregation_name
    if name == "max":
        return probabilities.max()
    if name == "sum":
        return probabilities.sum()
    if name == "mean":
        return probabilities.sum() / probabilities.numel()
    if name == "conv":
        weight, bias = params["aggregate.0.weight"][0, :, 0, 0], params["aggregate.0.bias"][0]
        return torch.sigmoid(weight @ probabilities + bias)
    weight, bias = params["aggregate.weight"], params["aggregate.bias"]
    return nn.functional.softplus(weight @ probabilities + bias)


def reference_forward(layer, x, geometry):
    concepts, score = reference_scorer(layer, x)
    if geometry[0] == "adaptive":
        pooled = reference_adaptive(x, score, geometry[1], layer.alpha, EPS)
    else:
        kernel, stride, padding, ceil_mode = geometry
        pooled = reference_lap(x, score, kernel, stride, padding, layer.alpha, EPS, ceil_mode)
    return pooled, concepts, score


def layer_forward(layer, x):
    calls = dict(fused.fused_layer_calls)
    pooled = layer(x)
    assert fused.fused_layer_calls == calls, "the fused layer ran"
    return pooled, layer.maps.concepts, layer.maps.score


def outputs_and_gradients(layer, x, forward):
    x = x.clone().requires_grad_(True)
    outputs = forward(x)
    generator = torch.Generator().manual_seed(5)
    loss = sum(
        (t * torch.randn(t.shape, generator=generator, dtype=t.dtype)).sum() for t in outputs
    )
    return [*outputs, *torch.autograd.grad(loss, [x, *layer.parameters()])]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scorer", SCORERS, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("case", GEOMETRIES, ids=lambda c: str(c))
def test_per_op_layer_matches_the_slow_references(path, case, scorer, dtype):
    height, width, geometry = case
    layer = make_layer(geometry, 5, *scorer[:3], dtype, *scorer[3:])
    x = torch.randn(2, 5, height, width, generator=torch.Generator().manual_seed(3), dtype=dtype)
    got = outputs_and_gradients(layer, x, lambda inp: layer_forward(layer, inp))
    want = outputs_and_gradients(layer, x, lambda inp: reference_forward(layer, inp, geometry))
    tolerance = {} if dtype == torch.float64 else {"rtol": 2e-4, "atol": 2e-5}
    names = ["pooled", "concepts", "score", "grad x", *(n for n, _ in layer.named_parameters())]
    assert len(names) == len(got) == len(want)
    for name, g, w in zip(names, got, want, strict=True):
        torch.testing.assert_close(g, w, **tolerance, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("aggregation", ["sum", "conv"])
def test_a_fresh_layer_with_per_head_hidden_channels_is_the_average(path, aggregation):
    """Each head its own hidden units, the last convolution at zero: probabilities 0.5, the
    window average (``avg_pool2d(count_include_pad=False)``)."""
    layer = LocalAttentionPool2d(4, 3, 2, 1, n_concepts=3, aggregation=aggregation,
                                 head_hidden="per_head", ceil_mode=True)  # fmt: skip
    assert layer.scorer.heads[0].out_channels == 3 * 8 and layer.scorer.heads[2].groups == 3
    x = torch.randn(2, 4, 9, 8)
    expected = nn.functional.avg_pool2d(x, 3, 2, 1, True, count_include_pad=False)
    torch.testing.assert_close(layer_forward(layer, x)[0], expected)
    assert bool((layer.maps.concepts == 0.5).all())


@pytest.mark.parametrize("bad", ["separate", None, 1])
def test_an_unknown_head_hidden_is_refused(bad):
    with pytest.raises(ValueError, match=r"head_hidden must be one of \('shared', 'per_head'\)"):
        LocalAttentionPool2d(4, 2, n_concepts=2, head_hidden=bad)
