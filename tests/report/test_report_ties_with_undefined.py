"""Bolding of a comparison group holding undefined ('n/a') or missing ('-') values: only the
defined values compete, so defined values that are all equal are "all equal", not a tie."""

from __future__ import annotations

from report_synthetic import metric

from torchlap.report.tables import localization_table


def test_equal_defined_values_next_to_an_undefined_one_are_all_equal() -> None:
    """IoUs 0.2, 0.2 and n/a in one row: nothing bold or tied, one 'All values equal' note."""
    run = {
        "localization": {
            "lap": {"iou_topk": metric(0.2)},
            "rise": {"iou_topk": metric(0.2)},
            "gradcam": {"iou_topk": metric(None)},
        }
    }
    table = localization_table({"r": run})
    cells = table.rows[0].cells
    shown = {c.text for c in cells}
    assert shown >= {"20.00", "n/a"}
    assert not any(c.bold or c.tied for c in cells)
    notes = " ".join(table.notes)
    assert "All values equal, so nothing bold: r, Top-Scored Selection (20.00)." in notes
    assert "Tied for the best" not in notes


def test_a_tie_below_nothing_undefined_is_still_a_tie() -> None:
    """IoUs 0.3, 0.3, 0.1 and n/a: the two 0.3 are tied (flagged, not bold); 0.1 is not."""
    run = {
        "localization": {
            "lap": {"iou_topk": metric(0.3)},
            "rise": {"iou_topk": metric(0.3)},
            "gradcam": {"iou_topk": metric(0.1)},
            "deeplift": {"iou_topk": metric(None)},
        }
    }
    table = localization_table({"r": run})
    by_text = [(c.text, c.tied, c.bold) for c in table.rows[0].cells if c.text != "-"]
    assert sorted(by_text) == [
        ("10.00", False, False),
        ("30.00", True, False),
        ("30.00", True, False),
        ("n/a", False, False),
    ]
    assert "Tied for the best" in " ".join(table.notes)
