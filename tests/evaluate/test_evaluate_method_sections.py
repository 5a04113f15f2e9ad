"""The sections ``evaluate_method`` writes when part of the protocol cannot run: no global
threshold (no validation region, or a fit that fails), no test region at all; its timing; and
the model's predictions it computes itself when the caller gives none."""

from __future__ import annotations

import time

import pytest
import torch
from synthetic_eval import channel_model
from synthetic_eval import split as synthetic_split
from torch import nn

import torchlap.metrics
from torchlap.evaluate.core import EvalData, EvaluateOptions, evaluate_method

SIZE = 8
DEVICE = torch.device("cpu")
OPTIONS = dict(ks=(50,), stability_images=1, stability_fractions=(0.1,), tie_draws=1)


def split(n: int, seed: int, boxes: list[tuple[int, int, int, int]]) -> EvalData:
    """``n`` random images; image i holds the box ``boxes[i]`` (top, left, height, width) when
    there is one, the others no region."""
    return synthetic_split(n, seed, SIZE, boxes)


def regions(data: EvalData) -> int:
    """How many images hold at least one region pixel, pixel by pixel."""
    count = 0
    for mask in data.masks:
        count += any(bool(mask[r, c]) for r in range(SIZE) for c in range(SIZE))
    return count


def predictions(model: nn.Module, data: EvalData) -> torch.Tensor:
    """The model's class of each image, one image at a time."""
    with torch.no_grad():
        return torch.tensor([int(model(image[None]).argmax()) for image in data.images])


# three test images with boxes of different shapes (one a single column), two without any
TEST_BOXES = [(1, 1, 3, 4), (0, 5, 8, 1), (2, 2, 5, 5)]


def test_no_validation_region_leaves_iou_threshold_undefined_with_its_reason() -> None:
    model = channel_model()
    test, val = split(5, 0, TEST_BOXES), split(3, 1, [])
    targets = predictions(model, test)
    options = EvaluateOptions(methods=("gradcam",), **OPTIONS)
    out, _ = evaluate_method(
        "gradcam", model, test, val, targets, predictions(model, val), options, DEVICE
    )
    reason = "no global threshold: no validation image holds a region"
    assert out["notes"] == [reason]
    location = out["localization"]
    assert location["threshold"] is None
    assert location["iou_threshold"] == {
        "value": None, "higher_is_better": True, "n": 0, "n_excluded": regions(test),
        "reason": reason,
    }  # fmt: skip
    assert regions(test) == 3
    # the other localization metrics are scored all the same, on the images with a region
    assert (location["iou_topk"]["n"], location["iou_topk"]["n_excluded"]) == (3, 2)
    # each image's score; None for the images without a region (excluded)
    per_image = out["per_sample"]["iou_topk"]
    assert [value is None for value in per_image] == [False, False, False, True, True]
    assert "iou_threshold" not in out["per_sample"]


def test_a_threshold_that_cannot_be_fitted_is_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(maps, masks, **kwargs):
        raise ValueError("the validation maps are all flat")

    monkeypatch.setattr(torchlap.metrics, "fit_global_threshold", refuse)
    model = channel_model()
    test, val = split(5, 0, TEST_BOXES), split(3, 1, [(0, 0, 4, 4)])
    targets = predictions(model, test)
    options = EvaluateOptions(methods=("gradcam",), **OPTIONS)
    out, _ = evaluate_method(
        "gradcam", model, test, val, targets, predictions(model, val), options, DEVICE
    )
    reason = "no global threshold: the validation maps are all flat"
    assert out["notes"] == [reason]
    assert out["localization"]["threshold"] is None
    assert out["localization"]["iou_threshold"]["reason"] == reason


def test_a_split_without_any_region_skips_localization_only() -> None:
    model = channel_model()
    test, val = split(4, 0, []), split(3, 1, [(0, 0, 4, 4)])
    targets = predictions(model, test)
    options = EvaluateOptions(methods=("gradcam",), **OPTIONS)
    out, _ = evaluate_method(
        "gradcam", model, test, val, targets, predictions(model, val), options, DEVICE
    )
    assert out["notes"] == ["no sample of the split has a region: localization skipped"]
    assert "localization" not in out
    assert not any(name in out["per_sample"] for name in ("iou_topk", "ebpg", "pointing_game"))
    assert out["faithfulness"]["drop"]["n"] == 4  # faithfulness needs no region


def test_an_evaluation_without_notes_has_no_notes_key() -> None:
    model = channel_model()
    test, val = split(5, 0, TEST_BOXES), split(3, 1, [(0, 0, 4, 4), (2, 3, 4, 4)])
    options = EvaluateOptions(methods=("gradcam",), **OPTIONS)
    out, _ = evaluate_method(
        "gradcam", model, test, val, predictions(model, test), predictions(model, val),
        options, DEVICE,
    )  # fmt: skip
    assert "notes" not in out
    assert isinstance(out["localization"]["threshold"], float)


def test_the_timing_is_the_time_of_the_evaluated_maps() -> None:
    model = channel_model()
    test, val = split(5, 0, TEST_BOXES), split(3, 1, [(0, 0, 4, 4)])
    options = EvaluateOptions(methods=("gradcam",), **OPTIONS)
    start = time.perf_counter()
    out, _ = evaluate_method(
        "gradcam", model, test, val, predictions(model, test), predictions(model, val),
        options, DEVICE,
    )  # fmt: skip
    wall = time.perf_counter() - start
    seconds = out["timing"]["seconds"]
    assert 0 < seconds < wall  # the maps' share of the whole evaluation
    assert out["timing"]["images_per_second"] == pytest.approx(5 / seconds)


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_the_predictions_it_computes_are_the_models_classes(batch_size: int) -> None:
    # under target="label" the explained class is the label; the predicted class each image's
    # keep-k% "vs prediction" reads comes from the model (batched): the images whose
    # prediction is not their label are explained again, as many as the model gets wrong
    model = channel_model()
    test, val = split(7, 2, TEST_BOXES), split(3, 1, [(0, 0, 4, 4)])
    predicted = predictions(model, test)
    wrong = int((predicted != test.labels).sum())
    assert 0 < wrong < len(test)
    options = EvaluateOptions(
        methods=("gradcam",), target="label", batch_size=batch_size, **OPTIONS
    )
    out, _ = evaluate_method("gradcam", model, test, val, test.labels, val.labels, options, DEVICE)
    again = out["faithfulness"]["keep_top_k_prediction_maps"]["n_explained_again"]
    assert again == wrong
    given, _ = evaluate_method(
        "gradcam", model, test, val, test.labels, val.labels, options, DEVICE,
        predictions=predicted,
    )  # fmt: skip
    assert given["faithfulness"]["keep_top_k"] == out["faithfulness"]["keep_top_k"]


def test_under_target_prediction_the_explained_classes_are_the_predictions() -> None:
    # the caller's targets are the predicted classes (evaluate_run passes the model's): no
    # forward pass of its own, so no image is explained again for its "prediction"
    model = channel_model()
    test, val = split(7, 2, TEST_BOXES), split(3, 1, [(0, 0, 4, 4)])
    targets = (predictions(model, test) + 1) % 3  # any classes: they are the ones explained
    options = EvaluateOptions(methods=("gradcam",), target="prediction", **OPTIONS)
    out, _ = evaluate_method("gradcam", model, test, val, targets, val.labels, options, DEVICE)
    assert out["faithfulness"]["keep_top_k_prediction_maps"] == {"n_explained_again": 0}
    wrong = int((targets != test.labels).sum())
    assert out["faithfulness"]["keep_top_k_label_maps"] == {"n_explained_again": wrong}
