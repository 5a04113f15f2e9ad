"""A paired lead as a cell, written out by hand: the signed difference in IoU points, a
difference that rounds to zero shown unsigned, bold only when the interval excludes 0 (an
interval that ends at 0 holds it)."""

from __future__ import annotations

from torchlap.report.paired_table import lead_text, paired_table


def _run(entry: dict) -> dict:
    return {
        "paired": {
            "level": 0.95,
            "references": {"lap": {"iou_threshold": {"gradcam": entry}, "iou_topk": {}}},
        }
    }


def test_lead_text_defaults_to_iou_points() -> None:
    entry = {"difference": 0.0361, "interval": [-0.012, 0.0813]}
    assert lead_text(entry) == "+3.61 [-1.20, +8.13]"
    assert lead_text({"difference": -0.5}) == "-50.00"
    assert lead_text({"difference": 2.5, "interval": [1.0, 4.0]}, scale=1.0) == (
        "+2.50 [+1.00, +4.00]"
    )


def test_a_difference_that_rounds_to_zero_has_no_sign() -> None:
    """0.00004 is 0.004 IoU points: shown ``0.00``, not ``+0.00`` (nor ``-0.00``)."""
    assert lead_text({"difference": 0.00004}) == "0.00"
    assert lead_text({"difference": -0.00004}) == "0.00"
    assert lead_text({"difference": 0.00006}) == "+0.01"
    assert lead_text({"difference": 0.0, "interval": [-0.00004, 0.00004]}) == ("0.00 [0.00, 0.00]")


def test_bold_only_when_the_interval_excludes_zero() -> None:
    cases = [
        ([-0.1, 0.0], False),  # ends at 0: holds it
        ([0.0, 0.1], False),
        ([-0.1, -0.001], True),
        ([0.001, 0.1], True),
        (None, False),
    ]
    for interval, bold in cases:
        table = paired_table({"WS": _run({"difference": -0.05, "interval": interval, "n": 4})})
        [row] = table.rows
        assert row.labels == ("WS", "lap", "gradcam")
        assert row.cells[0].bold is bold, interval
        assert row.cells[1].text == "-"  # the other binarization has no entry
    assert "95% percentile bootstrap interval" in table.caption
