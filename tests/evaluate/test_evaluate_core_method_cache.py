"""The check of a cached ``methods/<method>.json`` before it is reused: results that the report
would refuse, or without one score per evaluated image, are refused (TypeError) so that the
method is recomputed instead of failing after the work."""

from __future__ import annotations

import pytest

from torchlap.evaluate.core import _check_method_cache

VALID = {
    "localization": {"iou_topk": {"value": 0.5, "higher_is_better": True, "n": 2}},
    "timing": {"seconds": 0.2, "images_per_second": 10.0},
    "per_sample": {"iou_topk": [0.4, 0.6]},
}


def test_results_as_evaluate_writes_them_pass() -> None:
    _check_method_cache("gradcam", 2)(VALID)
    _check_method_cache("gradcam", 2)({"per_sample": {}})  # no section: nothing to check


@pytest.mark.parametrize(
    ("cached", "message"),
    [
        ([VALID], r"^its results must be a dict, got list$"),
        ({**VALID, "timing": "fast"}, r"\['timing'\]\['gradcam'\] must be a dict, got str"),
        (
            {**VALID, "localization": {"iou_topk": {"value": "abc"}}},
            r"\['localization'\]\['gradcam'\]\['iou_topk'\]\['value'\] must be a number",
        ),
        (
            {**VALID, "per_sample": {"iou_topk": [0.4, 0.6, 0.1]}},  # three images, not two
            r"\['per_sample'\]\['iou_topk'\] must be a list of 2 numbers or None",
        ),
    ],
    ids=["not a dict", "a section not a dict", "a value not a number", "scores of 3 images"],
)
def test_damaged_results_are_refused_naming_what_is_wrong(cached, message) -> None:
    with pytest.raises(TypeError, match=message):
        _check_method_cache("gradcam", 2)(cached)
