"""The paired-lead tables: how far, and how surely, each run's own-map method (LAP) is above or
below every other method on the same images (``results["paired"]``, written by ``torchlap
evaluate`` from the per-image scores; :mod:`torchlap.evaluate.intervals`): IoU (paper 000's
Table II) and Drop%/Increase% (paper 003's faithfulness)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torchlap.report._common import (
    MISSING,
    UNDEFINED,
    as_runs,
    method_display_name,
    method_facts,
    order_methods,
)
from torchlap.report.table_data import _IOU_GROUPS, _LEGEND, Cell, Column, Table, _table

__all__ = ["faithfulness_paired_table", "lead_text", "paired_table"]


@dataclass(frozen=True)
class _Pairing:
    """One paired table: its id and title, the metrics (``results["paired"]`` key, column
    group), the scale of a difference as shown (100: IoU points) and what the numbers mean."""

    table_id: str
    title: str
    what: str
    groups: tuple[tuple[str, str], ...]
    scale: float
    legend: str


_LOCALIZATION = _Pairing(
    "table-paired",
    "Paired leads",
    "The own-map method's IoU minus each other method's",
    _IOU_GROUPS,
    100.0,
    "IoU points (own minus other); bold: the interval excludes 0 (above 0: the own map "
    "localizes better on these images beyond their sampling)",
)
_FAITHFULNESS = _Pairing(
    "table-paired-faithfulness",
    "Paired faithfulness",
    "The own-map method's Drop% and Increase% (the top 15% of each map kept, paper 003) minus "
    "each other method's",
    (
        ("faithfulness/drop", "Drop% (lower is better)"),
        ("faithfulness/increase", "Increase% (higher is better)"),
    ),
    1.0,
    "percentage points (own minus other); bold: the interval excludes 0 (a Drop% below 0 or an "
    "Increase% above 0: the pixels the own map keeps hold more of the class score, on these "
    "images beyond their sampling)",
)


def _signed(value: float, scale: float) -> str:
    """A difference shown ``scale`` times (100: IoU points) with its sign (``+3.61``,
    ``-0.52``, ``0.00``)."""
    shown = scale * value
    return f"{shown:+.2f}" if round(shown, 2) != 0 else "0.00"


def lead_text(entry: Mapping[str, Any], scale: float = 100.0) -> str:
    """A paired lead as the report shows it: ``+3.61 [-1.20, +8.13]`` (IoU points, or the
    difference times ``scale``; the interval left out when there is none).
    ``entry["difference"]`` must be a number."""
    text = _signed(entry["difference"], scale)
    interval = entry.get("interval")
    if interval is not None:
        text += f" [{_signed(interval[0], scale)}, {_signed(interval[1], scale)}]"
    return text


def _cell(entry: Any, scale: float) -> Cell:
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
    return Cell(lead_text(entry, scale), bold=beyond, note=note)


def _paired(results_by_run: object, pairing: _Pairing) -> Table:
    """Rows = (run, own-map method, other method); per metric of ``pairing`` the mean
    per-image difference (own - other) and its bootstrap interval."""
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
                (m for key, _ in pairing.groups for m in metrics.get(key, {})), facts
            )  # fmt: skip
            for other in others:
                labels.append((name, method_display_name(reference, facts),
                               method_display_name(other, facts)))  # fmt: skip
                cells.append([_cell(metrics.get(key, {}).get(other), pairing.scale)
                              for key, _ in pairing.groups])  # fmt: skip
    coverage = f"{100 * level:g}%" if isinstance(level, (int, float)) else "bootstrap"
    return _table(
        pairing.table_id,
        pairing.title,
        f"{pairing.what}, image by image on the same images, with its {coverage} percentile "
        "bootstrap interval over the images.",
        ("Run", "Method", "Against"),
        [Column("Own - other", group) for _, group in pairing.groups],
        labels,
        cells,
        [f"{pairing.legend}; {_LEGEND}"],
    )


def paired_table(results_by_run: object) -> Table:
    """Rows = (run, own-map method, other method); per binarization the mean per-image IoU
    difference (own - other, IoU points) and its bootstrap interval; bold where the interval
    excludes 0. Empty (no rows) when no run has a ``paired`` section."""
    return _paired(results_by_run, _LOCALIZATION)


def faithfulness_paired_table(results_by_run: object) -> Table:
    """Rows = (run, own-map method, other method); the mean per-image difference of Drop% and
    of Increase% (own - other, percentage points) and its bootstrap interval; bold where the
    interval excludes 0. Empty (no rows) when no run has paired faithfulness scores."""
    return _paired(results_by_run, _FAITHFULNESS)
