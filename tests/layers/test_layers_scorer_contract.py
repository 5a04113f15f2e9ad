"""``ConceptScorer`` used on its own: its defaults, its edge architectures, its input checks.

The LAP layers check their input before the scorer runs and always pass every argument, so the
scorer's own defaults and checks are reached only when it is used directly (as the explainers and
the weak-supervision losses may). Its docstring: ``hidden_channels=0`` is one 1x1 convolution,
any other count two with a ReLU between them (so one hidden unit is two convolutions too); the
aggregation ``A`` applies "only when ``n_concepts > 1``" (one concept builds no "conv"
aggregation: no parameters that never train); the forward refuses a wrong input "before any
work". The values are held to the loop-over-pixels reference of paper 000's Eq. 3.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_layers_scorer_reference import randomize, reference_scorer
from torch import nn

from torchlap.layers.scorer import ConceptScorer


def test_scorer_defaults_are_the_lap_layers_defaults():
    """The README's LAP signature: ``n_concepts=1, hidden_channels=8, aggregation="max"``."""
    scorer = ConceptScorer(5)
    assert scorer.n_concepts == 1 and scorer.hidden_channels == 8
    assert scorer.aggregation_name == "max" and scorer.head_hidden == "shared"
    assert [type(m) for m in scorer.heads] == [nn.Conv2d, nn.ReLU, nn.Conv2d]
    assert scorer.heads[0].out_channels == 8 and scorer.heads[2].out_channels == 1
    concepts, score = scorer(torch.randn(2, 5, 3, 3))
    assert concepts.shape == score.shape == (2, 1, 3, 3)


@pytest.mark.parametrize("n_concepts", [1, 3])
def test_one_hidden_unit_is_two_convolutions(n_concepts):
    scorer = ConceptScorer(4, n_concepts, 1, "sum", dtype=torch.float64)
    assert [type(m) for m in scorer.heads] == [nn.Conv2d, nn.ReLU, nn.Conv2d]
    assert scorer.heads[0].out_channels == 1
    randomize(scorer, seed=6)
    x = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    concepts, score = scorer(x)
    want_concepts, want_score = reference_scorer(scorer, x)
    torch.testing.assert_close(concepts, want_concepts)
    torch.testing.assert_close(score, want_score)


@pytest.mark.parametrize("hidden", [0, 4])
def test_conv_aggregation_of_one_concept_builds_no_module(hidden):
    scorer = ConceptScorer(4, 1, hidden, "conv")
    assert scorer.aggregate is None
    assert all(name.startswith("heads.") for name, _ in scorer.named_parameters())
    x = torch.randn(1, 4, 3, 3)
    concepts, score = scorer(x)
    assert torch.equal(score, concepts)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.randn(1, 3, 4, 4), ValueError, r"ConceptScorer was built for 4 input channels"),
        (torch.randn(4, 4, 4), ValueError, r"ConceptScorer expects \(B, C, H, W\) input"),
        (torch.ones(1, 4, 4, 4, dtype=torch.int64), TypeError, r"float32 parameters"),
    ],
    ids=["channels", "rank", "dtype"],
)
def test_the_scorer_refuses_a_wrong_input_on_its_own(x, error, match):
    scorer = ConceptScorer(4, 2, 3)
    with pytest.raises(error, match=match):
        scorer(x)


def test_per_head_hidden_channels_of_two_heads_match_the_loops():
    """``head_hidden="per_head"``: head ``k`` reads only its own ``hidden_channels`` units
    (``k * hidden ... (k + 1) * hidden - 1`` of the first convolution)."""
    hidden, n = 3, 2
    scorer = ConceptScorer(4, n, hidden, "mean", dtype=torch.float64, head_hidden="per_head")
    randomize(scorer, seed=12)
    x = torch.randn(2, 4, 3, 4, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    with torch.no_grad():
        concepts, score = scorer(x)
    params = {name: p.detach() for name, p in scorer.named_parameters()}
    w1, b1 = params["heads.0.weight"], params["heads.0.bias"]
    w2, b2 = params["heads.2.weight"], params["heads.2.bias"]
    for b in range(2):
        for r in range(3):
            for q in range(4):
                probabilities = []
                for k in range(n):
                    logit = float(b2[k])
                    for u in range(hidden):
                        unit = k * hidden + u
                        total = float(b1[unit]) + sum(
                            float(w1[unit, c, 0, 0]) * float(x[b, c, r, q]) for c in range(4)
                        )
                        logit += float(w2[k, u, 0, 0]) * max(total, 0.0)
                    probabilities.append(1.0 / (1.0 + math.exp(-logit)))
                    assert float(concepts[b, k, r, q]) == pytest.approx(probabilities[k], rel=1e-9)
                assert float(score[b, 0, r, q]) == pytest.approx(sum(probabilities) / n, rel=1e-9)
