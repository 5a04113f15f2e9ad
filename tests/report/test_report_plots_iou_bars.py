"""IoU bars (paper 000, Table II as bars): each bar's position, width and height read back
from the matplotlib Axes, the n/a and missing markers, and which runs get a panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from report_figures import capture_figures
from report_synthetic import METHOD_FACTS, metric

from torchlap.report import plot_iou_bars


def localization(values: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    return {
        "methods": METHOD_FACTS,
        "localization": {
            method: {key: metric(value) for key, value in entry.items()}
            for method, entry in values.items()
        },
    }


def bars(ax: Any) -> list[tuple[float, float, float]]:
    """(left edge, width, height) of every bar, in drawing order."""
    return [(p.get_x(), p.get_width(), p.get_height()) for p in ax.patches]


def test_bars_are_the_iou_in_percent_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    first = localization(
        {
            "lap": {"iou_threshold": 0.25, "iou_topk": 0.5},
            "gradcam": {"iou_threshold": 0.1, "iou_topk": None},  # undefined: n/a
            "deeplift": {"iou_threshold": 0.4},  # not computed: "-"
        }
    )
    second = localization({"lap": {"iou_threshold": 0.3, "iou_topk": 0.6}})
    runs = {"first": first, "no localization": {"methods": METHOD_FACTS}, "second": second}
    plot_iou_bars(runs, tmp_path / "iou.png")
    (figure,) = figures
    top, bottom = figure.axes  # one panel per run with localization results
    assert [top.get_title(), bottom.get_title()] == ["first", "second"]
    # methods in the tables' order: DL (0), GC (2), LAP (8); x = i - 0.4 + 0.4 * (j + 0.5)
    assert [label.get_text() for label in top.get_xticklabels()] == ["DL", "GC", "LAP"]
    assert list(top.get_xticks()) == [0, 1, 2]
    expected = [
        (-0.4, 0.4, 40.0), (0.6, 0.4, 10.0), (1.6, 0.4, 25.0),  # thresholding, left
        (0.0, 0.4, None), (1.0, 0.4, None), (2.0, 0.4, 50.0),  # top-scored, right
    ]  # fmt: skip
    actual = bars(top)
    assert len(actual) == len(expected)
    for (x, w, h), (ex, ew, eh) in zip(actual, expected, strict=True):
        assert (x, w) == pytest.approx((ex, ew))
        assert h == pytest.approx(eh) if eh is not None else h != h  # nan: no bar
    assert sum(bars(bottom), ()) == pytest.approx((-0.4, 0.4, 30.0, 0.0, 0.4, 60.0))
    # the two kinds have their own colors, the same in every panel
    assert top.patches[0].get_facecolor() != top.patches[3].get_facecolor()
    assert bottom.patches[1].get_facecolor() == top.patches[3].get_facecolor()
    # undefined -> "n/a", absent -> "-", at the missing bar's position, on the axis
    marks = sorted((*t.get_position(), t.get_text()) for t in top.texts)
    assert [text for *_, text in marks] == ["-", "n/a"]
    assert [xy for *xy, _ in marks] == [pytest.approx([0.2, 1]), pytest.approx([1.2, 1])]
    assert len(bottom.texts) == 0
    assert top.get_ylim() == bottom.get_ylim() == (0.0, 100.0)
    legend = top.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == [
        "Thresholding",
        "Top-scored selection",
    ]
    assert bottom.get_legend() is None
