"""The "At a glance" numbers and choices, each traced to its field: ties at the shown
precision, the fallbacks, the accuracy detail line, the one figure, the revision warning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from torchlap.report.glance import (
    GlanceNumber,
    glance_figure,
    glance_numbers,
    glance_warnings,
    ranked,
    revision_warnings,
)


def _m(value: float | None, n: int | None = 50) -> dict:
    return {"value": value, "higher_is_better": True, "n": n, "n_excluded": 0}


def test_a_glance_number_is_a_plain_value_that_does_not_warn_by_default():
    number = GlanceNumber("Model accuracy", "90.00%", "top-1, n = 50")
    assert number.warn is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        number.value = "99.00%"  # type: ignore[misc]
    assert number == GlanceNumber("Model accuracy", "90.00%", "top-1, n = 50")
    assert len({number, GlanceNumber("Model accuracy", "90.00%", "top-1, n = 50")}) == 1
    # nothing computed: three dashes, none of them a warning
    numbers = glance_numbers({})
    assert [(n.value, n.detail, n.warn) for n in numbers] == [("-", "not computed", False)] * 3


def test_ranked_groups_values_equal_at_the_shown_precision():
    entries = {"a": {"iou": _m(0.442911)}, "b": {"iou": _m(0.442889)}, "c": {"iou": _m(0.5)},
               "d": {"iou": _m(None)}, "e": "failed", "f": {}}  # fmt: skip
    assert ranked(entries, "iou", True, 100.0) == [(50.0, ["c"]), (44.29, ["a", "b"])]
    assert ranked(entries, "iou", False, 100.0) == [(44.29, ["a", "b"]), (50.0, ["c"])]
    assert ranked(entries, "iou", True, 1.0) == [(0.5, ["c"]), (0.44, ["a", "b"])]
    assert ranked({}, "iou", True, 1.0) == []


def test_localization_falls_back_to_thresholding_and_ties_are_named():
    run = {"localization": {"gradcam": {"iou_threshold": _m(0.3)},
                            "lap": {"iou_threshold": _m(0.30001)},
                            "rise": {"iou_threshold": _m(0.1)}},
           "methods": {"lap": {"display_name": "LAP"}}}  # fmt: skip
    _, best, _ = glance_numbers(run)
    assert best == GlanceNumber(
        "Best localization",
        "gradcam = LAP 30.00%",
        "IoU with the regions, thresholding; next: rise 10.00%",
    )
    run["localization"]["rise"]["iou_threshold"] = _m(0.3)  # three tied, one after them
    run["localization"]["bcos"] = {"iou_threshold": _m(0.2)}
    _, best, _ = glance_numbers(run)
    assert best.value == "3 methods 30.00%"
    assert best.detail == (
        "IoU with the regions, thresholding; tie: gradcam, LAP, rise; next: bcos 20.00%"
    )


def test_the_lead_needs_one_best_and_one_next_method():
    paired = {"references": {"lap": {"faithfulness/drop": {
        "gradcam": {"difference": -15.0, "interval": None, "n": 16}}}}}  # fmt: skip
    run = {"faithfulness": {"lap": {"drop": _m(10.0)}, "gradcam": {"drop": _m(25.0)}},
           "paired": paired}  # fmt: skip
    faithfulness = glance_numbers(run)[2]
    assert faithfulness.value == "lap 10.00%"
    assert faithfulness.detail.endswith(
        "next: gradcam 25.00%; lap's lead, image by image: -15.00 points"
    )
    run["faithfulness"]["rise"] = {"drop": _m(25.0)}  # two tied next: whose lead is it?
    assert glance_numbers(run)[2].detail.endswith("next: gradcam = rise 25.00%")
    run["faithfulness"]["rise"] = {"drop": _m(10.0)}  # two tied best
    assert glance_numbers(run)[2].detail.endswith("next: gradcam 25.00%")
    del run["faithfulness"]["rise"]
    run["faithfulness"]["gradcam"]["drop"] = _m(5.0)  # gradcam first: lap's gap to the best
    assert glance_numbers(run)[2].detail.endswith(
        "next: lap 10.00%; lap's gap to the best, image by image: -15.00 points"
    )
    paired["references"]["lap"]["faithfulness/drop"]["gradcam"]["difference"] = None
    assert "image by image" not in glance_numbers(run)[2].detail


@pytest.mark.parametrize(
    ("model", "value", "detail"),
    [
        ({"accuracy": _m(0.9), "top1_accuracy": _m(0.8), "balanced_accuracy": _m(0.7, n=None)},
         "70.00%", "balanced, n = n/a"),
        ({"accuracy": _m(0.9), "top1_accuracy": _m(0.8), "top5_accuracy": _m(0.97)},
         "80.00%", "top-1, n = 50; top-5: 97.00%"),
        ({"accuracy": _m(None), "top5_accuracy": _m(None)}, "n/a", "plain, n = 50"),
        ({"accuracy": {"value": 0.9}}, "90.00%", "plain, n = ?"),
    ],
)  # fmt: skip
def test_the_accuracy_shown_and_its_detail_line(model: dict, value: str, detail: str):
    accuracy = glance_numbers({"model": model})[0]
    assert (accuracy.value, accuracy.detail, accuracy.warn) == (value, detail, False)


def test_a_model_at_chance_is_warned_about_once_per_run():
    run = {"model": {"balanced_accuracy": _m(0.52)}, "data": {"n_classes": 2}}
    accuracy = glance_numbers(run)[0]
    assert accuracy.warn and accuracy.detail == "balanced, n = 50; † not above chance (50.00%)"
    assert glance_warnings("r", run) == [
        "r: the model's accuracy (52.00%, balanced accuracy) is not above chance (50.00%): "
        "its maps may explain guesses."
    ]
    run["model"]["balanced_accuracy"] = _m(0.9)
    assert glance_warnings("r", run) == [] and not glance_numbers(run)[0].warn
    assert glance_warnings("r", {"model": {"accuracy": _m(0.1)}}) == []  # chance unknown


def _figures(*stems: str) -> list[tuple[Path, str, bytes]]:
    return [(Path(f"{stem}.png"), stem, b"") for stem in stems]


def test_the_glance_figure_prefers_lap_then_the_best_localizing_method():
    runs = {"a": {"localization": {"gradcam": {"iou_topk": _m(0.2)},
                                   "rise": {"iou_topk": _m(0.4)}}}}  # fmt: skip
    pick = lambda *stems: glance_figure(_figures(*stems), runs)  # noqa: E731
    assert pick("keep_k", "overlays_gradcam", "overlays_lap_a", "overlays_rise") == 2
    assert pick("keep_k", "overlays_gradcam", "overlays_rise") == 2  # rise localizes best
    assert pick("keep_k", "overlays_gradcam") == 1  # then the next best
    assert pick("keep_k", "iou_bars", "overlays") == 2
    assert pick("keep_k", "iou_bars") == 1
    assert pick("x", "keep_k_a") == 1
    assert pick("x", "y") == 0
    assert glance_figure([], runs) is None


def test_one_revision_gives_no_warning_two_are_listed_in_order():
    def run(revision):
        return {"protocol": {"metrics_revision": revision}}

    assert revision_warnings({"a": run(7), "b": run(7)}) == []
    assert revision_warnings({"a": run(7)}) == []
    assert revision_warnings({}) == []
    (warning,) = revision_warnings({"a": run(6), "b": run(7), "c": run(6)})
    assert warning.startswith(
        "These results were computed under different metric definitions (revision 6: a, c; "
        "revision 7: b): numbers"
    )


def test_methods_tied_at_the_shown_iou_keep_their_order_for_the_figure():
    # 12.34% and 12.344% are one shown value: the first listed method's overlays are shown
    runs = {"a": {"localization": {"gradcam": {"iou_topk": _m(0.1234)},
                                   "rise": {"iou_topk": _m(0.12344)}}}}  # fmt: skip
    assert glance_figure(_figures("overlays_rise", "overlays_gradcam"), runs) == 1
    runs["a"]["localization"]["rise"]["iou_topk"] = _m(0.1236)  # 12.36%: rise first
    assert glance_figure(_figures("overlays_rise", "overlays_gradcam"), runs) == 0
