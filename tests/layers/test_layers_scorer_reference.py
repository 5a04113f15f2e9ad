"""Paper 000 Eq. 3, the concept scorer ``S(x) = A(sigmoid(S_C(x)))``, against a slow reference.

The reference reads the scorer's parameter tensors by name and computes, for every sample and
pixel, the 1x1 heads ``S_C`` as explicit sums over channels (a ReLU between two of them), the
sigmoid, and the aggregation ``A`` of the ConceptScorer docstring (max / sum / mean over the
concepts, or "conv": a weighted sum of the probabilities plus a bias, then a sigmoid; one concept
needs no aggregation). It is compared with ``ConceptScorer.forward`` and with the maps a whole LAP
layer keeps (``layer.maps`` and ``attention_maps``) on every CPU path: the default (the fused
compiled layer when a C compiler exists), the per-op path (``TORCHLAP_FUSED_LAYER=0``) and pure
PyTorch (``TORCHLAP_NO_EXT=1``). Nothing here needs a compiler.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import torchlap._ext as ext
from torchlap.layers import fused
from torchlap.layers.lap import (
    AdaptiveLocalAttentionPool2d,
    ConceptScorer,
    LocalAttentionPool2d,
    attention_maps,
)

# loaded once here, so that the path switches below find (and restore) the library entry
KERNEL = ext.lap_kernels() is not None

SCORERS = [
    # (n_concepts, hidden_channels, aggregation)
    (1, 0, "max"),  # one concept: the score is the concept map itself
    (1, 4, "conv"),  # "conv" with one concept: no aggregation either
    (3, 0, "max"),  # one 1x1 convolution (the paper's ImageNet heads)
    (3, 4, "max"),  # two 1x1 convolutions with a ReLU (the paper's RSNA heads)
    (3, 4, "sum"),  # the paper's CelebA aggregation
    (2, 5, "mean"),
    (3, 0, "conv"),  # the paper's ImageNet aggregation: a 1x1 convolution and a sigmoid
    (2, 4, "conv"),
]


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def randomize(module: nn.Module, seed: int) -> None:
    """Away from the zero start (every probability 0.5), so that the pixels differ."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(
                torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            )


def reference_scorer(scorer: ConceptScorer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3 one sample, one pixel, one channel at a time, from the parameter tensors."""
    params = {name: p.detach() for name, p in scorer.named_parameters()}
    hidden = scorer.hidden_channels
    n = scorer.n_concepts
    batch, channels, height, width = x.shape
    concepts = torch.zeros(batch, n, height, width, dtype=torch.float64)
    score = torch.zeros(batch, 1, height, width, dtype=torch.float64)
    for b in range(batch):
        for r in range(height):
            for q in range(width):
                feature = [float(x[b, c, r, q]) for c in range(channels)]
                if hidden > 0:  # heads.0: C -> hidden, ReLU, heads.2: hidden -> n
                    w1, b1 = params["heads.0.weight"], params["heads.0.bias"]
                    units = []
                    for u in range(hidden):
                        total = float(b1[u])
                        for c in range(channels):
                            total += float(w1[u, c, 0, 0]) * feature[c]
                        units.append(max(total, 0.0))
                    w2, b2 = params["heads.2.weight"], params["heads.2.bias"]
                    inputs, last = units, hidden
                else:  # heads.0: C -> n
                    w2, b2 = params["heads.0.weight"], params["heads.0.bias"]
                    inputs, last = feature, channels
                probabilities = []
                for k in range(n):
                    total = float(b2[k])
                    for u in range(last):
                        total += float(w2[k, u, 0, 0]) * inputs[u]
                    probabilities.append(sigmoid(total))
                    concepts[b, k, r, q] = probabilities[k]
                score[b, 0, r, q] = aggregate(scorer, params, probabilities)
    return concepts, score


def aggregate(scorer: ConceptScorer, params: dict, probabilities: list[float]) -> float:
    """``A`` of Eq. 3 for one pixel (ConceptScorer docstring)."""
    if len(probabilities) == 1:
        return probabilities[0]
    name = scorer.aggregation_name
    if name == "max":
        return max(probabilities)
    if name == "sum":
        return sum(probabilities)
    if name == "mean":
        return sum(probabilities) / len(probabilities)
    assert name == "conv", name  # test-internal: no other built-in aggregation
    weight, bias = params["aggregate.0.weight"], params["aggregate.0.bias"]
    total = float(bias[0])
    for k, p in enumerate(probabilities):
        total += float(weight[0, k, 0, 0]) * p
    return sigmoid(total)


def reference_global_pool(x, score, alpha, eps):
    """Eq. 1 with Eq. 4's weights over the whole map (the adaptive layer's 1x1 output)."""
    batch, channels, height, width = x.shape
    out = torch.zeros(batch, channels, 1, 1, dtype=torch.float64)
    for b in range(batch):
        values = [float(score[b, 0, r, q]) for r in range(height) for q in range(width)]
        peak = max(values)
        weights = [math.exp(-(alpha**2) * (peak - v) ** 2) * v + eps for v in values]
        for c in range(channels):
            feats = [float(x[b, c, r, q]) for r in range(height) for q in range(width)]
            out[b, c, 0, 0] = sum(w * f for w, f in zip(weights, feats, strict=True)) / sum(weights)
    return out


@pytest.mark.parametrize(("n_concepts", "hidden", "aggregation"), SCORERS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_concept_scorer_forward_matches_eq3_by_loops(n_concepts, hidden, aggregation, dtype):
    scorer = ConceptScorer(4, n_concepts, hidden, aggregation, dtype=dtype)
    randomize(scorer, seed=3)
    x = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(4), dtype=dtype)
    concepts, score = scorer(x)
    expected_concepts, expected_score = reference_scorer(scorer, x)
    # float64: the default tolerances of assert_close; float32: a few ulps of the sums
    tolerance = {} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(concepts.double(), expected_concepts, **tolerance)
    torch.testing.assert_close(score.double(), expected_score, **tolerance)
    assert concepts.dtype == score.dtype == dtype


@pytest.fixture(params=["default", "per_op", "no_ext"])
def path(request, monkeypatch):
    """The CPU path of the LAP layer; yields whether the fused layer must run."""
    if request.param == "per_op":
        monkeypatch.setenv("TORCHLAP_FUSED_LAYER", "0")
    elif request.param == "no_ext":
        # as a fresh process with TORCHLAP_NO_EXT=1: the library is looked up again, finds the
        # variable and stays off; monkeypatch puts the loaded library back afterwards
        monkeypatch.setenv("TORCHLAP_NO_EXT", "1")
        monkeypatch.setitem(ext._state, "status", ext._state.get("status", "unknown"))
        monkeypatch.delitem(ext._state, "library")
        assert ext.lap_kernels() is None
    return request.param == "default" and KERNEL


def build_layer(kind, n_concepts, hidden, aggregation, dtype):
    if kind == "window":  # the ResNet stem's k3 s2 p1
        layer = LocalAttentionPool2d(
            4, 3, 2, 1, n_concepts, hidden, aggregation, alpha=1.3, eps=1e-3, dtype=dtype
        )
    else:  # the global pool replacing AdaptiveAvgPool2d
        layer = AdaptiveLocalAttentionPool2d(
            4, 1, n_concepts, hidden, aggregation, alpha=1.3, eps=1e-3, dtype=dtype
        )
    randomize(layer.scorer, seed=5)
    return layer


@pytest.mark.parametrize(("n_concepts", "hidden", "aggregation"), SCORERS)
@pytest.mark.parametrize("kind", ["window", "global"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_layer_keeps_the_eq3_maps_on_every_path(path, kind, n_concepts, hidden, aggregation, dtype):
    layer = build_layer(kind, n_concepts, hidden, aggregation, dtype)
    model = nn.Sequential(layer)
    x = torch.randn(2, 4, 7, 6, generator=torch.Generator().manual_seed(6), dtype=dtype)
    calls = sum(fused.fused_layer_calls.values())
    with torch.no_grad():
        pooled = model(x)
    assert sum(fused.fused_layer_calls.values()) == calls + int(path)  # the path was taken
    expected_concepts, expected_score = reference_scorer(layer.scorer, x)
    tolerance = {} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    kept = attention_maps(model)["0"]
    for maps in (layer.maps, kept):
        torch.testing.assert_close(maps.concepts.double(), expected_concepts, **tolerance)
        torch.testing.assert_close(maps.score.double(), expected_score, **tolerance)
        assert maps.input_size == (7, 6)
    if kind == "global":  # the score the pooling used is the one kept
        expected = reference_global_pool(x, expected_score, float(layer.alpha.detach()), layer.eps)
        torch.testing.assert_close(pooled.double(), expected, **tolerance)
