"""A fresh LAP layer's documented start: every concept probability exactly 0.5 everywhere.

``ConceptScorer``: "The last convolution starts at zero, so every concept probability starts at
exactly 0.5 everywhere"; the README: "every score is the same (0.5; ``n_concepts / 2`` with the
``sum`` aggregation)". Uniform scores alone would keep Eq. 1 the plain average, so this checks
the maps themselves, pixel by pixel, on a random input.
"""

from __future__ import annotations

import pytest
import torch

from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, ConceptScorer, LocalAttentionPool2d

SCORERS = [
    # (n_concepts, hidden_channels, aggregation, expected score)
    (1, 0, "max", 0.5),
    (1, 4, "max", 0.5),
    (3, 0, "max", 0.5),
    (3, 4, "mean", 0.5),
    (3, 4, "sum", 1.5),
    (4, 2, "conv", 0.5),
]


@pytest.mark.parametrize(("n_concepts", "hidden", "aggregation", "score"), SCORERS)
def test_fresh_scorer_gives_probability_one_half_everywhere(
    n_concepts: int, hidden: int, aggregation: str, score: float
) -> None:
    """sigmoid(0) = 0.5 at every pixel and head of a fresh scorer, whatever the input."""
    torch.manual_seed(0)
    scorer = ConceptScorer(5, n_concepts, hidden, aggregation)
    concepts, aggregated = scorer(torch.randn(2, 5, 3, 4) * 10)
    assert concepts.shape == (2, n_concepts, 3, 4)
    for value in concepts.flatten().tolist():
        assert value == 0.5
    for value in aggregated.flatten().tolist():
        assert value == pytest.approx(score, abs=1e-6)


@pytest.mark.parametrize("kind", ["window", "global"])
@pytest.mark.parametrize(("n_concepts", "hidden", "aggregation", "score"), SCORERS)
def test_fresh_layer_keeps_maps_of_one_half(
    kind: str, n_concepts: int, hidden: int, aggregation: str, score: float
) -> None:
    """The maps a fresh LAP layer keeps (on its default CPU path) hold 0.5 at every pixel."""
    torch.manual_seed(1)
    if kind == "window":
        layer = LocalAttentionPool2d(5, 2, n_concepts=n_concepts, hidden_channels=hidden,
                                     aggregation=aggregation)  # fmt: skip
    else:
        layer = AdaptiveLocalAttentionPool2d(5, 1, n_concepts=n_concepts, hidden_channels=hidden,
                                             aggregation=aggregation)  # fmt: skip
    layer(torch.randn(2, 5, 4, 6) * 10)
    for value in layer.maps.concepts.flatten().tolist():
        assert value == pytest.approx(0.5, abs=1e-6)
    for value in layer.maps.score.flatten().tolist():
        assert value == pytest.approx(score, abs=1e-6)
