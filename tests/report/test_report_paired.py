"""The paired-lead table and the intervals in the report: each number traced to its field."""

from __future__ import annotations

import pytest
from report_synthetic import lap_results, parse_markdown_table, results_by_run

from torchlap.report import write_report
from torchlap.report._common import check_results
from torchlap.report.glance import glance_numbers
from torchlap.report.paired_table import faithfulness_paired_table, paired_table
from torchlap.report.tables import all_tables, localization_table


def _with_paired() -> dict:
    results = lap_results()
    results["methods"] = {
        "lap": {"display_name": "LAP", "kind": "own map", "column_rank": 0},
        "gradcam": {"display_name": "Grad-CAM", "kind": "gradient", "column_rank": 1},
        "rise": {"display_name": "RISE", "kind": "perturbation", "column_rank": 2},
    }
    results["paired"] = {
        "level": 0.9,
        "resamples": 100,
        "seed": 0,
        "references": {
            "lap": {
                "iou_threshold": {
                    "gradcam": {"difference": 0.0361, "interval": [-0.012, 0.0813], "n": 8},
                    "rise": {"difference": 0.05, "interval": [0.01, 0.09], "n": 8},
                },
                "iou_topk": {
                    "gradcam": {"difference": -0.04, "interval": [-0.07, -0.002], "n": 8},
                    "rise": {"difference": None, "interval": None, "n": 0},
                },
            }
        },
    }
    results["localization"]["lap"]["iou_topk"]["interval"] = [0.1234, 0.5678]
    return results


def test_paired_table_shows_each_lead_with_its_interval():
    table = paired_table({"WS-LAP": _with_paired()})
    header, rows = parse_markdown_table(table.to_markdown())
    assert header == [
        "Run", "Method", "Against", "Thresholding: Own - other",
        "Top-Scored Selection: Own - other",
    ]  # fmt: skip
    assert rows == [
        ["WS-LAP", "LAP", "Grad-CAM", "+3.61 [-1.20, +8.13]", "**-4.00 [-7.00, -0.20]**"],
        ["WS-LAP", "LAP", "RISE", "**+5.00 [+1.00, +9.00]**", "n/a"],
    ]
    assert "90% percentile bootstrap interval" in table.caption
    assert table.rows[0].cells[0].note == "n = 8 images scored by both"


def test_localization_tooltip_names_the_interval():
    table = localization_table({"WS-LAP": _with_paired()})
    notes = [cell.note for row in table.rows for cell in row.cells]
    assert any("bootstrap interval [12.34, 56.78]" in note for note in notes), notes


def test_runs_without_paired_leads_have_no_table(tmp_path):
    assert not paired_table(results_by_run()).rows
    assert "table-paired" not in [t.id for t in all_tables(results_by_run())]
    runs = {"WS-LAP": _with_paired()}
    assert "table-paired" in [t.id for t in all_tables(runs)]
    report = write_report(tmp_path, runs)
    assert "Localization: paired leads" in report.read_text()


def test_faithfulness_leads_in_percentage_points_with_their_direction(tmp_path):
    """Drop% and Increase% are percentages already: shown as they are (not times 100); bold
    where the interval excludes 0, whichever side; a run without them has no table."""
    runs = {"WS-LAP": _with_paired()}
    assert "table-paired-faithfulness" not in [t.id for t in all_tables(runs)]
    runs["WS-LAP"]["paired"]["references"]["lap"] |= {
        "faithfulness/drop": {
            "gradcam": {"difference": -12.5, "interval": [-20.25, -3.0], "n": 16},
            "rise": {"difference": 4.0, "interval": [-1.0, 9.5], "n": 16},
        },
        "faithfulness/increase": {
            "gradcam": {"difference": 6.25, "interval": [0.0, 12.5], "n": 16},
        },
    }
    table = faithfulness_paired_table(runs)
    header, rows = parse_markdown_table(table.to_markdown())
    assert header == [
        "Run", "Method", "Against", "Drop% (lower is better): Own - other",
        "Increase% (higher is better): Own - other",
    ]  # fmt: skip
    assert rows == [
        ["WS-LAP", "LAP", "Grad-CAM", "**-12.50 [-20.25, -3.00]**", "+6.25 [0.00, +12.50]"],
        ["WS-LAP", "LAP", "RISE", "+4.00 [-1.00, +9.50]", "-"],
    ]
    assert "percentage points" in table.notes[0]
    assert "table-paired-faithfulness" in [t.id for t in all_tables(runs)]
    assert "Faithfulness: paired leads" in write_report(tmp_path, runs).read_text()
    # the IoU table is unchanged by them
    assert [r.labels for r in paired_table(runs).rows] == [r.labels for r in table.rows]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["localization"]["lap"]["iou_topk"].update(interval=[0.5, 0.1]), "interval"),
        (lambda r: r["localization"]["lap"]["iou_topk"].update(interval="wide"), "interval"),
        (
            lambda r: r["paired"]["references"]["lap"]["iou_topk"]["gradcam"].update(
                difference="big"
            ),
            "difference",
        ),
        (lambda r: r["paired"].update(references=[1]), "references"),
    ],
)
def test_malformed_intervals_are_named(edit, message):
    results = _with_paired()
    edit(results)
    with pytest.raises(TypeError, match=message):
        check_results(results)


def _lap_and_gradcam_only(results: dict, section: str) -> dict:
    """``results[section]`` with every method but LAP and Grad-CAM removed (first and next)."""
    entries = results[section]
    for method in list(entries):
        if method not in ("lap", "gradcam"):
            del entries[method]
    return entries


def test_at_a_glance_says_whether_the_first_place_is_more_than_the_draw():
    results = _with_paired()
    localization = _lap_and_gradcam_only(results, "localization")
    localization["lap"]["iou_topk"]["value"] = 0.30
    localization["gradcam"]["iou_topk"]["value"] = 0.34
    best = glance_numbers(results)[1]
    assert best.value == "Grad-CAM 34.00%"
    assert best.detail.endswith("next: LAP 30.00%; LAP's gap to the best, image by image: "
                                "-4.00 [-7.00, -0.20] points")  # fmt: skip
    localization["lap"]["iou_topk"]["value"] = 0.40  # LAP first: its lead as recorded
    assert "LAP's lead, image by image: -4.00" in glance_numbers(results)[1].detail
    del results["paired"]
    assert "image by image" not in glance_numbers(results)[1].detail


def test_at_a_glance_gives_the_paired_drop_of_the_best_faithfulness():
    """Drop% is a percentage already: the paired difference is shown as it is."""
    results = _with_paired()
    faithfulness = _lap_and_gradcam_only(results, "faithfulness")
    faithfulness["lap"]["drop"]["value"] = 10.0
    faithfulness["gradcam"]["drop"]["value"] = 25.0
    results["paired"]["references"]["lap"]["faithfulness/drop"] = {
        "gradcam": {"difference": -15.0, "interval": [-22.5, -7.25], "n": 16}
    }
    detail = glance_numbers(results)[2].detail
    assert detail.endswith("LAP's lead, image by image: -15.00 [-22.50, -7.25] points"), detail
