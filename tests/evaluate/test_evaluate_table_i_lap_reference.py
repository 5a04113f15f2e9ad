"""Paper 000's Table I, "LAP predictions" and "Faithfulness to model", end to end on a real LAP
model, against references written from section IV:

- RSNA layout (one head, present in positives only): "if a LAP has assigned a probability of more
  than 0.5 to at least one pixel, it means it has found infection in the sample. The prediction
  of the LAP for these samples is assumed positive and otherwise negative";
- CelebA layout (a head per class and a common head): "we took the class with the higher sum of
  importance scores as the final prediction of the LAP module" (the common head is in both
  classes' sums, so it cannot decide; ties go to the lower class index);

predictivity is the share of test images whose LAP prediction is the label, faithfulness the
share where it is the model's prediction, per LAP layer. The reference runs the model one image
at a time and reads each layer's concept maps pixel by pixel.
"""

from __future__ import annotations

import pytest
import torch
from lap_table_i import lap_model, split
from torch import nn

from torchlap.evaluate.lap_predictors import lap_predictor_results
from torchlap.layers import attention_maps, clear_attention_maps
from torchlap.losses import ConceptSets


def ref_layer_concepts(model: nn.Module, image: torch.Tensor) -> dict[str, list]:
    """Each LAP layer's concept maps of one image, as nested lists [head][row][column]."""
    clear_attention_maps(model)
    with torch.no_grad():
        model(image[None])
    maps = {name: m.concepts[0].tolist() for name, m in attention_maps(model).items()}
    clear_attention_maps(model)
    return maps


def ref_any_pixel_above_half(head_map: list) -> int:
    return int(any(value > 0.5 for row in head_map for value in row))


def ref_higher_sum(heads: list, class_heads: list[list[int]]) -> int:
    sums = [sum(value for h in own for row in heads[h] for value in row) for own in class_heads]
    return max(range(len(sums)), key=lambda c: (sums[c], -c))


@pytest.mark.parametrize("layout, seed", [("rsna", 3), ("celeba", 4)])
def test_lap_predictions_and_faithfulness_match_the_papers_rules(layout: str, seed: int) -> None:
    n_concepts = 1 if layout == "rsna" else 3
    model = lap_model(n_concepts, 2, seed)
    sets = ConceptSets.default(2, n_concepts)
    classes = ["negative", "positive"]
    test, val = split(12, 0, classes), split(4, 1, classes)
    with torch.no_grad():
        predictions = model(test.images).argmax(1)
    out = lap_predictor_results(
        model, test, val, predictions, sets, batch_size=5, device=torch.device("cpu")
    )
    rule = "binary" if layout == "rsna" else "concept_sum"
    per_layer: dict[str, list[int]] = {}
    for image in test.images:
        for name, heads in ref_layer_concepts(model, image).items():
            if layout == "rsna":  # the one head is the pneumonia head
                chosen = ref_any_pixel_above_half(heads[0])
            else:  # head c of class c; head 2 common to both, left out of the comparison
                chosen = ref_higher_sum(heads, [[0], [1]])
            per_layer.setdefault(name, []).append(chosen)
    assert list(out) == list(per_layer)  # every LAP layer, in forward order
    for name, chosen in per_layer.items():
        entry = out[name]
        assert entry["rule"] == rule
        labels, model_says = test.labels.tolist(), predictions.tolist()
        accuracy = sum(a == b for a, b in zip(chosen, labels, strict=True)) / len(chosen)
        agreement = sum(a == b for a, b in zip(chosen, model_says, strict=True)) / len(chosen)
        torch.testing.assert_close(entry["predictivity"]["value"], accuracy)
        torch.testing.assert_close(entry["faithfulness"]["value"], agreement)
        assert entry["predictivity"]["n"] == len(chosen)
    # a case that tells the rules apart: the layers do not all predict one class everywhere
    assert any(0 < sum(chosen) < len(chosen) for chosen in per_layer.values())
