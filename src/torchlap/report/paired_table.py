"""The paired-lead table: how far, and how surely, each run's own-map method (LAP) is above or
below every other method on the same images (``results["paired"]``, written by ``torchlap
evaluate`` from the per-image scores; :mod:`torchlap.evaluate.intervals`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchlap.report._common import (
    MISSING,
    UNDEFINED,
    as_runs,
    method_display_name,
    method_facts,
    order_methods,
)
from torchlap.report.table_data import _LEGEND, Cell, Column, Table, _table

__all__ = ["lead_text", "paired_table"]

#: the metrics of the table: paper 000's Table II, both binarizations
_GROUPS = (("iou_threshold", "Thresholding"), ("iou_topk", "Top-Scored Selection"))


def _signed(value: float) -> str:
    """A difference in IoU points with its sign (``+3.61``, ``-0.52``, ``0.00``)."""
    points = 100 * value
    return f"{points:+.2f}" if round(points, 2) != 0 else "0.00"


def lead_text(entry: Mapping[str, Any]) -> str:
    """A paired lead as the report shows it: ``+3.61 [-1.20, +8.13]`` (IoU points; the
    interval left out when there is none). ``entry["difference"]`` must be a number."""
    text = _signed(entry["difference"])
    interval = entry.get("interval")
    if interval is not None:
        text += f" [{_signed(interval[0])}, {_signed(interval[1])}]"
    return text


def _cell(entry: Any) -> Cell:
    """``+3.61 [-1.20, +8.13]``, bold when the interval excludes 0 (the lead, or the deficit,
    is not the chance of which images were drawn)."""
    if not isinstance(entry, Mapping):
        return Cell(MISSING)
    difference, interval = entry.get("difference"), entry.get("interval")
    n = entry.get("n")
    note = f"n = {n} images scored by both" if isinstance(n, int) else ""
    if difference is None:
        return Cell(UNDEFINED, note=note)
    beyond = interval is not None and (interval[0] > 0 or interval[1] < 0)
    return Cell(lead_text(entry), bold=beyond, note=note)


def paired_table(results_by_run: object) -> Table:
    """Rows = (run, own-map method, other method); per binarization the mean per-image IoU
    difference (own - other, IoU points) and its bootstrap interval; bold where the interval
    excludes 0. Empty (no rows) when no run has a ``paired`` section."""
    runs = as_runs(results_by_run)
    facts = method_facts(runs.values())
    labels: list[tuple[str, ...]] = []
    cells: list[list[Cell]] = []
    level = None
    for name, run in runs.items():
        paired = run.get("paired")
        if not isinstance(paired, Mapping):
            continue
        level = paired.get("level", level)
        for reference, metrics in paired.get("references", {}).items():
            others = order_methods(
                (m for key, _ in _GROUPS for m in metrics.get(key, {})), facts
            )  # fmt: skip
            for other in others:
                labels.append((name, method_display_name(reference, facts),
                               method_display_name(other, facts)))  # fmt: skip
                cells.append([_cell(metrics.get(key, {}).get(other)) for key, _ in _GROUPS])
    coverage = f"{100 * level:g}%" if isinstance(level, (int, float)) else "bootstrap"
    return _table(
        "table-paired",
        "Paired leads",
        "The own-map method's IoU minus each other method's, image by image on the same "
        f"images, with its {coverage} percentile bootstrap interval over the images.",
        ("Run", "Method", "Against"),
        [Column("Own - other", group) for _, group in _GROUPS],
        labels,
        cells,
        [
            "IoU points (own minus other); bold: the interval excludes 0 (above 0: the own "
            f"map localizes better on these images beyond their sampling); {_LEGEND}"
        ],
    )
