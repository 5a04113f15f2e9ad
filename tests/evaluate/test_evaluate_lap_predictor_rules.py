"""Which of Table I's LAP predictors ``lap_predictor_results`` reports, at the boundaries of
the rules (paper 000, section IV), and the ImageNet "Top-5 Acc." of the learned predictor
against a reference.

- ``concept_sum`` needs every class to have a concept of its own: one concept per class is
  enough;
- the learned MLP needs a validation split of at least 2 images with every class;
- with more than 5 classes (ImageNet's Table I) the learned predictor also reports
  ``top5_predictivity``/``top5_faithfulness``: the share of test images whose label (model
  prediction) is among its 5 highest logits, computed here image by image.

Found by mutation testing: none of these boundaries was tested (the tests used 2 classes).
"""

from __future__ import annotations

import pytest
import torch
from lap_table_i import lap_model, split
from torch import nn

from torchlap.evaluate.common import EvalData
from torchlap.evaluate.lap_predictors import lap_predictor_results
from torchlap.layers import attention_maps, clear_attention_maps
from torchlap.losses import ConceptSets
from torchlap.metrics import LearnedConceptPredictor


def ref_features(model: nn.Module, images: torch.Tensor) -> dict[str, list[list[float]]]:
    """Per LAP layer and image, each head's sum of concept probabilities over the pixels (F_C),
    the model run one image at a time."""
    features: dict[str, list[list[float]]] = {}
    for image in images:
        clear_attention_maps(model)
        with torch.no_grad():
            model(image[None])
        for name, maps in attention_maps(model).items():
            heads = maps.concepts[0].tolist()
            sums = [sum(v for row in head for v in row) for head in heads]
            features.setdefault(name, []).append(sums)
    clear_attention_maps(model)
    return features


def _results(
    num_classes: int, n_test: int, n_val: int
) -> tuple[dict, nn.Module, EvalData, EvalData]:
    model = lap_model(num_classes, num_classes, seed=5)
    classes = [f"c{k}" for k in range(num_classes)]
    test, val = split(n_test, 0, classes), split(n_val, 1, classes)
    with torch.no_grad():
        predictions = model(test.images).argmax(1)
    sets = ConceptSets.default(num_classes, num_classes)
    out = lap_predictor_results(model, test, val, predictions, sets, 4, torch.device("cpu"))
    return out, model, test, val


def test_one_concept_per_class_is_enough_for_the_concept_sum_rule() -> None:
    out, *_ = _results(num_classes=3, n_test=6, n_val=6)
    assert out and all("concept_sum" in entry["rules"] for entry in out.values())


def test_two_validation_images_of_both_classes_train_the_learned_predictor() -> None:
    out, *_ = _results(num_classes=2, n_test=6, n_val=2)
    assert out and all("learned" in entry["rules"] for entry in out.values())


def test_five_classes_report_no_top5() -> None:
    out, *_ = _results(num_classes=5, n_test=10, n_val=10)
    assert out
    for entry in out.values():
        assert not any(key.startswith("top5") for key in entry["rules"]["learned"])


@pytest.mark.parametrize("num_classes", [6, 8])
def test_the_top5_of_the_learned_predictor_matches_a_per_image_reference(num_classes) -> None:
    out, model, test, val = _results(num_classes, n_test=3 * num_classes, n_val=2 * num_classes)
    with torch.no_grad():
        predictions = model(test.images).argmax(1).tolist()
    val_features, test_features = ref_features(model, val.images), ref_features(model, test.images)
    assert list(out) == list(test_features)
    for name, entry in out.items():
        learned = entry["rules"]["learned"]
        predictor = LearnedConceptPredictor(num_classes, num_classes, seed=0)  # the documented seed
        predictor.fit(torch.tensor(val_features[name]), val.labels)
        with torch.no_grad():
            logits = predictor(torch.tensor(test_features[name])).tolist()
        hits_label = hits_model = 0
        for scores, label, said in zip(logits, test.labels.tolist(), predictions, strict=True):
            ranked = sorted(range(num_classes), key=lambda c: -scores[c])[:5]
            hits_label += label in ranked
            hits_model += said in ranked
        n = len(logits)
        torch.testing.assert_close(learned["top5_predictivity"]["value"], hits_label / n)
        torch.testing.assert_close(learned["top5_faithfulness"]["value"], hits_model / n)
        assert learned["top5_predictivity"]["n"] == n
    # a case that tells top-5 from top-6: not every label is always among the 5 best
    assert any(
        entry["rules"]["learned"]["top5_predictivity"]["value"] < 1 for entry in out.values()
    )
