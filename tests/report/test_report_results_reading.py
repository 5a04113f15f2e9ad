"""How the report reads results (report._common): which run a results dict is, the refusal of
each malformed entry (named by its path, before anything is built), and the accepted edges."""

from __future__ import annotations

import copy

import pytest
from report_synthetic import lap_results

from torchlap.report._common import (
    as_runs,
    check_results,
    format_number,
    method_display_name,
    order_methods,
)


def _run() -> dict:
    return copy.deepcopy(lap_results())


def test_a_single_results_dict_is_named_by_its_run() -> None:
    assert list(as_runs(_run())) == ["WS-LAP"]
    unnamed = _run()
    del unnamed["run"]
    assert list(as_runs(unnamed)) == ["run"]
    blank = _run()
    blank["run"] = {"name": ""}
    assert list(as_runs(blank)) == ["run"]
    assert list(as_runs({"data": {"name": "shapes"}})) == ["run"]


def test_runs_named_like_sections_stay_runs() -> None:
    # a results-by-run dict whose run names are section names: each value is a results dict
    runs = as_runs({"model": _run(), "timing": {}})
    assert list(runs) == ["model", "timing"]
    assert runs["model"]["run"]["name"] == "WS-LAP" and runs["timing"] == {}


@pytest.mark.parametrize(
    ("results", "error", "match"),
    [
        ("results.json", TypeError, r"must be a dict of run name -> results dict .* got str"),
        ({1: {}}, TypeError, r"run names must be str, got 1 \(int\)"),
        ({"a": [1]}, TypeError, r"results_by_run\['a'\] must be a results dict, got list"),
        # one results dict (its "model" is no results dict): the section is named in it
        ({"model": []}, TypeError, r"results_by_run\['run'\]\['model'\] must be a dict"),
    ],
)
def test_what_is_no_results_is_named(results: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        as_runs(results)


def _set(path: tuple, value: object):
    def edit(run: dict) -> None:
        node = run
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return edit


_ACC = ("model", "accuracy")
_IOU = ("localization", "lap", "iou_topk")


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (_set(_ACC, 0.9), TypeError, r"\['model'\]\['accuracy'\] must be a metric dict"),
        (_set(_ACC, {"n": 3}), TypeError, r"\['accuracy'\] must be a metric dict"),
        (_set((*_ACC, "value"), "0.9"), TypeError, r"\['value'\] must be a number or None"),
        (_set((*_ACC, "value"), True), TypeError, r"\['value'\] must be a number or None"),
        (_set((*_IOU, "interval"), [0.1]), TypeError, r"\['interval'\] must be None or \[low"),
        (_set((*_IOU, "interval"), [0.1, 0.2, 0.3]), TypeError, r"must be None or \[low, high"),
        (_set((*_IOU, "interval"), [0.1, "0.2"]), TypeError, r"must be None or \[low, high"),
        (_set((*_IOU, "interval"), [False, 0.2]), TypeError, r"must be None or \[low, high"),
        (
            _set(("faithfulness", "lap", "keep_top_k", "0"), {}),
            ValueError,
            r"\['keep_top_k'\] keys must be percentages in \(0, 100\] .* got '0'",
        ),
        (
            _set(("stability", "gradcam", "0.1", "change_inc"), 2.0),
            TypeError,
            r"\['stability'\]\['gradcam'\]\['0.1'\]\['change_inc'\] must be a metric dict",
        ),
        (
            _set(("timing", "lap", "seconds"), "fast"),
            TypeError,
            r"\['timing'\]\['lap'\]\['seconds'\] must be a number or None",
        ),
        (
            _set(("maps", "lap"), {"n": 4, "n_flat": "4"}),
            TypeError,
            r"\['maps'\]\['lap'\]\['n_flat'\] must be a number or None",
        ),
        (
            _set(("faithfulness", "lap", "keep_top_k", "10", "top1_vs_label"), 0.5),
            TypeError,
            r"\['keep_top_k'\]\['10'\]\['top1_vs_label'\] must be a metric dict",
        ),
        (
            _set(("paired", "references", "lap", "iou_topk", "gradcam"), {"interval": [0.5, 0.1]}),
            TypeError,
            r"\['paired'\]\['lap'\]\['iou_topk'\]\['gradcam'\]\['interval'\] must be None",
        ),
        (
            _set(("sanity", "lap", "threshold"), "0.5"),
            TypeError,
            r"\['sanity'\]\['lap'\]\['threshold'\] must be a number or None",
        ),
        (_set(("notes", "sanity"), 5), TypeError, r"\['notes'\]\['sanity'\] must be a text"),
        (
            _set(("sanity", "lap"), {"cascading": {"steps": ["fc"], "ssim": [0.5, "x"]}}),
            TypeError,
            r"\['sanity'\]\['lap'\]\['cascading'\]\['ssim'\] must be a list of numbers",
        ),
        (
            _set(("sanity", "lap"), {"independent": {"steps": "fc"}}),
            TypeError,
            r"\['independent'\]\['steps'\] must be a list of unit names",
        ),
        (
            _set(("sanity", "lap"), {"passed": "yes"}),
            TypeError,
            r"\['sanity'\]\['lap'\]\['passed'\] must be true, false or None",
        ),
        (
            _set(("grid_pointing_game", "lap"), {"mean": "0.5"}),
            TypeError,
            r"\['grid_pointing_game'\]\['lap'\]\['mean'\] must be a number or None",
        ),
        (
            _set(("grid_pointing_game", "lap"), {"distribution": {"q25": "x"}}),
            TypeError,
            r"\['grid_pointing_game'\]\['lap'\]\['distribution'\]\['q25'\] must be a number",
        ),
        (
            _set(("grid_pointing_setup",), {"shape": [2, "2"], "n_grids": 1}),
            TypeError,
            r"\['grid_pointing_setup'\]\['shape'\] must be a list of cell counts",
        ),
        (
            _set(("data_randomization",), {"threshold": "0.5", "methods": {}}),
            TypeError,
            r"\['data_randomization'\]\['threshold'\] must be a number or None",
        ),
        (
            _set(("grid_pointing_game", "lap"), {"scores": "0.5"}),
            TypeError,
            r"\['grid_pointing_game'\]\['lap'\]\['scores'\] must be a list of numbers",
        ),
    ],
)
def test_each_malformed_entry_is_named(edit, error: type, match: str) -> None:
    run = _run()
    edit(run)
    with pytest.raises(error, match=r"^results(?=\[).*" + match):
        check_results(run)
    with pytest.raises(error, match=r"^results_by_run\['r'\].*" + match):
        as_runs({"r": run})


def test_the_accepted_edges_are_read() -> None:
    run = _run()
    run["localization"]["lap"]["iou_topk"]["interval"] = [0.3, 0.3]  # a zero-width interval
    run["sanity"] = {"lap": {"cascading": {"steps": ["fc"], "ssim": [None, 0.5]}, "passed": None}}
    run["model"]["accuracy"]["n"] = 0
    keep = run["faithfulness"]["lap"]["keep_top_k"]
    for level in ("0.5", "100"):  # keep-k% levels in (0, 100]
        keep[level] = keep["10"]
    check_results(run)
    for level in ("100.5", "120"):
        edited = copy.deepcopy(run)
        edited["faithfulness"]["lap"]["keep_top_k"][level] = keep["10"]
        with pytest.raises(ValueError, match=rf"percentages in \(0, 100\] .* got '{level}'"):
            check_results(edited)
    assert as_runs({"r": run})["r"]["localization"]["lap"]["iou_topk"]["interval"] == [0.3, 0.3]


def test_display_names_and_column_order_come_from_the_facts() -> None:
    facts = {
        "a": {"display_name": "", "column_rank": 2},
        "b": {"display_name": "B", "column_rank": True},  # a bool is no rank
        "c": {"display_name": 7, "column_rank": 0},
        "d": {"column_rank": 1},
    }
    assert [method_display_name(m, facts) for m in "abcde"] == ["a", "B", "c", "d", "e"]
    # ranked first by rank (c 0, d 1, a 2), then the others in first-seen order (e, b)
    assert order_methods(["e", "a", "b", "e", "d", "c"], facts) == ["c", "d", "a", "e", "b"]
    assert order_methods(["b", "a"]) == ["b", "a"]
    with pytest.raises(TypeError, match=r"method must be an explainer's name \(a str\), got 5"):
        method_display_name(5, facts)  # type: ignore[arg-type]


def test_numbers_are_shown_with_their_decimals_and_huge_ones_in_scientific_notation() -> None:
    assert format_number(0.125, 3) == "0.125"
    assert format_number(12.3456) == "12.35"  # two decimals by default
    assert format_number(999999.994) == "999999.99"
    assert format_number(1e6) == "1.00e+06"  # from 1e6 in magnitude
    assert format_number(-1e6, 1) == "-1.0e+06"
    assert format_number(1.2e300) == "1.20e+300"
