"""LAP layers as standalone predictors (paper 000, section IV) against loops over samples,
concepts and pixels, in the cases the other references leave out: float64 maps, a batch of one,
1x1 maps, maps exactly at 0.5 and class sums that tie.

- ``F_C``: "the sum of pixels' importances in each concept map";
- RSNA: "if a LAP has assigned a probability of more than 0.5 to at least one pixel ... The
  prediction of the LAP for these samples is assumed positive and otherwise negative";
- CelebA: "the class with the higher sum of importance scores" (ties to the lower class, the
  rule's docstring).
"""

from __future__ import annotations

import pytest
import torch

from torchlap.metrics import binary_rule, concept_size_features, concept_sum_rule


def loop_features(concepts: torch.Tensor) -> list[list[float]]:
    batch, heads, height, width = concepts.shape
    return [
        [
            sum(float(concepts[s, c, i, j]) for i in range(height) for j in range(width))
            for c in range(heads)
        ]
        for s in range(batch)
    ]


def loop_binary(concepts: torch.Tensor, positive: list[int]) -> list[int]:
    out = []
    for sample in concepts:
        values = [float(v) for c in positive for v in sample[c].flatten()]
        out.append(1 if any(v > 0.5 for v in values) else 0)
    return out


def loop_higher_sum(concepts: torch.Tensor, classes: list[list[int]]) -> list[int]:
    out = []
    for features in loop_features(concepts):
        sums = [sum(features[c] for c in members) for members in classes]
        out.append(next(k for k, value in enumerate(sums) if value == max(sums)))
    return out


@pytest.mark.parametrize("shape", [(1, 2, 1, 1), (1, 3, 4, 5), (4, 3, 2, 3)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rules_and_features_match_loops(shape, dtype) -> None:
    generator = torch.Generator().manual_seed(sum(shape))
    # quarters: pixels exactly at 0.5 (not "more than 0.5") and equal class sums
    concepts = (torch.randint(0, 3, shape, generator=generator) / 4).to(dtype)
    concepts[0, 0] = 0.5  # the first sample's first map sits at 0.5 everywhere
    features = concept_size_features(concepts)
    assert features.dtype == dtype and features.shape == shape[:2]
    torch.testing.assert_close(features, torch.tensor(loop_features(concepts), dtype=dtype))
    for positive in ([0], list(range(shape[1]))):
        got = binary_rule(concepts, positive_concepts=positive)
        assert got.tolist() == loop_binary(concepts, positive)
    classes = [[0], list(range(1, shape[1]))]
    assert concept_sum_rule(concepts, classes).tolist() == loop_higher_sum(concepts, classes)


def test_equal_class_sums_go_to_the_lower_class() -> None:
    concepts = torch.zeros(1, 2, 1, 1, dtype=torch.float64)
    assert (
        concept_sum_rule(concepts, [[0], [1]]).tolist()
        == [0]
        == loop_higher_sum(concepts, [[0], [1]])
    )
    concepts[0, 1] = 0.25
    assert concept_sum_rule(concepts, [[0], [1]]).tolist() == [1]
    assert binary_rule(torch.full((1, 1, 1, 1), 0.5, dtype=torch.float64)).tolist() == [0]
