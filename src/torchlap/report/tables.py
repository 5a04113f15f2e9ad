"""Result tables in the layouts of paper 000 (LAP), section IV, from results dicts.

Each table is first built as data (:class:`Table`: columns with groups, rows of cells with a
bold flag) and then rendered; Markdown here (:meth:`Table.to_markdown`), HTML in
:mod:`torchlap.report.html`, so both show the same numbers and the same bolding.

- :func:`table_model_and_lap`: Table I (model performance, LAP predictivity, LAP
  faithfulness to the model);
- :func:`table_localization`: Table II (IoU by thresholding and by top-scored selection);
- :func:`table_faithfulness`: keep-k% agreement (Fig. 4 as numbers), Drop/Increase/Win %;
- :func:`table_other_localization`: EBPG, mIoU (top 20%), Bbox, pointing game (paper 003);
- :func:`table_lime`: Spearman correlation with LIME of BLA and Grad-CAM (paper 002);
- :func:`table_stability`, :func:`table_timing`, :func:`table_runs`.

Conventions: metric fractions in [0, 1] are shown as percentages with 2 decimals; metrics
that are percentages already (Drop, Increase, Win, stability changes) are shown as they are.
``-`` means not computed (key absent), ``n/a`` means undefined (value ``None``: no usable
sample). The best value of each comparison group is bold, following the metric's
``higher_is_better``, when at least two values are defined and it is unique at the shown
precision; a tie for the best is bolded nowhere and named once in the table's notes.

Marks after a value: :data:`CHANCE_MARK` when the value is not above chance (see
:func:`at_chance`), :data:`FLAT_MARK` when the method's maps are flat (constant within the
tolerance of ``results["maps"]``) on some of the images.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchlap.report._common import (
    MISSING,
    UNDEFINED,
    as_runs,
    atomic_write_text,
    method_display_name,
    metric_value,
    order_methods,
    section,
)

__all__ = [
    "CHANCE_MARK",
    "FLAT_MARK",
    "Cell",
    "Column",
    "Row",
    "Table",
    "all_tables",
    "at_chance",
    "faithfulness_table",
    "lime_table",
    "localization_table",
    "model_and_lap_table",
    "other_localization_table",
    "runs_table",
    "split_by_group",
    "stability_table",
    "table_faithfulness",
    "table_lime",
    "table_localization",
    "table_model_and_lap",
    "table_other_localization",
    "table_stability",
    "table_timing",
    "tables_markdown",
    "timing_table",
    "write_tables",
]


# ------------------------------------------------------------------------------ data model


@dataclass(frozen=True)
class Cell:
    """One rendered table value; ``note`` is a tooltip (sample counts) for HTML; ``tied``:
    shares the best value of its comparison group with others (not bold); ``mark``: symbols
    shown after the value (:data:`CHANCE_MARK`, :data:`FLAT_MARK`)."""

    text: str
    bold: bool = False
    note: str = ""
    tied: bool = False
    mark: str = ""

    @property
    def shown(self) -> str:
        """The text with its marks, as both renderings show it."""
        return f"{self.text}{self.mark}"


@dataclass(frozen=True)
class Column:
    """A value column; ``group`` is the spanning header above it (e.g. "Thresholding");
    ``numeric`` columns are right-aligned, text columns left-aligned."""

    label: str
    group: str = ""
    numeric: bool = True


@dataclass(frozen=True)
class Row:
    """``labels`` fill the stub columns (run, or run and method); ``cells`` the columns."""

    labels: tuple[str, ...]
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Table:
    """A table as data: ``stub`` names the label columns, ``columns`` the value columns."""

    id: str
    title: str
    caption: str
    stub: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()
    split_groups: bool = False  # HTML: one table per column group (e.g. per binarization)

    @property
    def has_values(self) -> bool:
        """True when at least one cell holds something other than ``-``."""
        return any(cell.text != MISSING for row in self.rows for cell in row.cells)

    def header_labels(self) -> list[str]:
        """Flat column headers: stub labels, then ``"group: label"`` per value column."""
        flat = [f"{c.group}: {c.label}" if c.group else c.label for c in self.columns]
        return list(self.stub) + flat

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown: a bold title and caption line, the table, the notes.

        Markdown has no spanning headers, so a column's group prefixes its label.
        """
        lines = [f"**{_md(self.title)}.** {_md(self.caption)}", ""]
        lines.append("| " + " | ".join(_md(h) for h in self.header_labels()) + " |")
        align = [":---"] * len(self.stub) + ["---:" if c.numeric else ":---" for c in self.columns]
        lines.append("|" + "|".join(align) + "|")
        for row in self.rows:
            cells = [_md(label) for label in row.labels]
            cells += [f"**{_md(c.shown)}**" if c.bold else _md(c.shown) for c in row.cells]
            lines.append("| " + " | ".join(cells) + " |")
        lines.extend(["", *(f"{_md(note)}  " for note in self.notes)])
        return "\n".join(lines).rstrip() + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "-", text.lower()).strip("-") or "group"


def split_by_group(table: Table) -> list[Table]:
    """``table`` as one table per run of columns sharing a group (e.g. Table II by
    binarization), each with the stub columns and all rows; titles name the group
    (``"Table II (Thresholding)"``), ids get its slug, the caption stays on the first part and
    the notes go under the last. A table with fewer than two groups is returned as is."""
    spans: list[tuple[str, int, int]] = []
    for index, column in enumerate(table.columns):
        if spans and spans[-1][0] == column.group:
            spans[-1] = (column.group, spans[-1][1], index + 1)
        else:
            spans.append((column.group, index, index + 1))
    if len(spans) < 2:
        return [table]
    parts = []
    for number, (group, start, stop) in enumerate(spans):
        columns = tuple(Column(c.label, "", c.numeric) for c in table.columns[start:stop])
        rows = tuple(Row(row.labels, row.cells[start:stop]) for row in table.rows)
        name = group or "other"
        parts.append(
            Table(
                f"{table.id}-{_slug(name)}",
                f"{table.title} ({name})",
                table.caption if number == 0 else "",
                table.stub,
                columns,
                rows,
                table.notes if number == len(spans) - 1 else (),
            )
        )
    return parts


_MD_SPECIAL = re.compile(r"([\\|*`])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def _md(text: str) -> str:
    """Escape Markdown: pipes (cell breaks), emphasis markers, code ticks, raw HTML."""
    escaped = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)
    return escaped.replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


# --------------------------------------------------------------------------- value cells


@dataclass(frozen=True)
class _Entry:
    """A metric dict (``None`` when absent) and how to show it."""

    metric: Mapping[str, Any] | None
    scale: float = 100.0  # 100: fraction shown as %; 1: shown as stored
    decimals: int = 2
    chance: float | None = None  # chance level of the metric (as a fraction), when known
    flat: str = ""  # why the map is flat ("4 of 4 maps flat"), when it is

    @property
    def shown(self) -> float | None:
        value = metric_value(self.metric)
        return None if value is None else round(value * self.scale, self.decimals)

    @property
    def higher_is_better(self) -> bool:
        return bool(self.metric.get("higher_is_better", True)) if self.metric else True

    def text(self) -> str:
        if self.metric is None:
            return MISSING
        shown = self.shown
        return UNDEFINED if shown is None else f"{shown:.{self.decimals}f}"

    def note(self) -> str:
        if self.metric is None:
            return "not computed"
        n, excluded = self.metric.get("n"), self.metric.get("n_excluded")
        parts = []
        if n is not None:
            parts.append(f"n = {n}")
        if excluded:
            parts.append(f"{excluded} excluded")
        if self.shown is None:
            reason = self.metric.get("reason")
            parts.append(f"undefined: {reason}" if reason else "undefined: no usable sample")
        if self.at_chance:
            parts.append(f"not above chance ({100 * self.chance:.2f}%)")  # type: ignore[operator]
        if self.flat:
            parts.append(self.flat)
        return ", ".join(parts)

    @property
    def at_chance(self) -> bool:
        if self.chance is None or self.metric is None:
            return False
        return at_chance(metric_value(self.metric), self.chance, self.metric.get("n"))

    def mark(self) -> str:
        return (CHANCE_MARK if self.at_chance else "") + (FLAT_MARK if self.flat else "")


CHANCE_MARK = "†"
FLAT_MARK = "‡"
_CHANCE_Z = 1.6449  # one-sided 5% normal quantile


def at_chance(value: float | None, chance: float, n: object) -> bool:
    """True when a mean ``value`` of ``n`` per-sample scores in [0, 1] is not above the
    ``chance`` level: ``value <= chance + 1.645 * sqrt(chance * (1 - chance) / n)``, a one-sided
    5% test (a [0, 1] variable with mean ``chance`` has variance at most
    ``chance * (1 - chance)``, so the test is conservative). False when anything is unknown."""
    if value is None or isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        return False
    if not 0.0 < chance < 1.0:
        return False
    return value <= chance + _CHANCE_Z * math.sqrt(chance * (1.0 - chance) / n)


def _plain(value: float | None, decimals: int, higher_is_better: bool) -> _Entry:
    """An entry for a bare number (timing), shown with ``decimals``."""
    if value is None:
        return _Entry(None, 1.0, decimals)
    return _Entry({"value": value, "higher_is_better": higher_is_better}, 1.0, decimals)


def _best_positions(entries: Sequence[_Entry]) -> list[int]:
    """Indices holding the best shown value of a comparison group (several on a tie); empty
    when fewer than 2 values are defined."""
    defined = [(i, e.shown) for i, e in enumerate(entries) if e.shown is not None]
    if len(defined) < 2:
        return []
    directions = {entries[i].higher_is_better for i, _ in defined}
    higher = directions.pop() if len(directions) == 1 else True
    values = [v for _, v in defined]
    best = max(values) if higher else min(values)
    return [i for i, value in defined if value == best]


Position = tuple[int, int]


Tie = tuple[list[Position], bool]  # positions tied for the best; whether all values are


def _cells(
    grid: list[list[_Entry]], groups: Iterable[list[Position]]
) -> tuple[list[list[Cell]], list[Tie]]:
    """Render a grid of entries; each group (a list of (row, column) positions) gets its
    unique best value in bold. Returns the cells and the groups' ties for the best (the
    positions, flagged ``tied`` and bolded nowhere, and whether every defined value of the
    group is in the tie)."""
    bold = [[False] * len(row) for row in grid]
    tied = [[False] * len(row) for row in grid]
    ties = []
    for group in groups:
        entries = [grid[r][c] for r, c in group]
        best = [group[i] for i in _best_positions(entries)]
        if len(best) == 1:
            bold[best[0][0]][best[0][1]] = True
        elif best:
            all_equal = len(best) == sum(entry.shown is not None for entry in entries)
            ties.append((best, all_equal))
            for r, c in best:
                tied[r][c] = not all_equal  # all equal: no best to point at
    cells = [
        [
            Cell(entry.text(), bold[r][c], entry.note(), tied[r][c], entry.mark())
            for c, entry in enumerate(row)
        ]
        for r, row in enumerate(grid)
    ]
    return cells, ties


def _column_groups(grid: list[list[_Entry]], rows: Sequence[int]) -> list[list[tuple[int, int]]]:
    """One comparison group per column over ``rows``."""
    n_columns = len(grid[0]) if grid else 0
    return [[(r, c) for r in rows] for c in range(n_columns)]


def _run_blocks(labels: Sequence[tuple[str, ...]]) -> list[list[int]]:
    """Row indices grouped by run (first stub label), in order."""
    blocks: dict[str, list[int]] = {}
    for i, row_labels in enumerate(labels):
        blocks.setdefault(row_labels[0], []).append(i)
    return list(blocks.values())


def _common_prefix(parts: list[tuple[str, ...]]) -> tuple[str, ...]:
    prefix: tuple[str, ...] = ()
    for items in zip(*parts, strict=False):
        if len(set(items)) != 1:
            break
        prefix += (items[0],)
    return prefix


def _tie_note(
    ties: list[Tie],
    labels: list[tuple[str, ...]],
    columns: list[Column],
    cells: list[list[Cell]],
) -> str | None:
    """One note naming every tie for the best (``context: A = B (value)``) and, shorter,
    every group whose values are all equal (``context (value)``)."""
    if not ties:
        return None
    described, equal = [], []
    for tie, all_equal in ties:
        keys = [
            (*labels[r], *((columns[c].group,) if columns[c].group else ()), columns[c].label)
            for r, c in tie
        ]
        if len({c for _, c in tie}) == 1:  # a column group: the rows differ
            column = columns[tie[0][1]]
            heading = f"{column.group}: {column.label}" if column.group else column.label
            rows = [labels[r] for r, _ in tie]
            context = _common_prefix(rows)
            names = [" / ".join(row[len(context) :]) for row in rows]
            where = ", ".join((*context, heading))
        else:
            context = _common_prefix(keys)
            names = [" / ".join(key[len(context) :]) for key in keys]
            where = ", ".join(context)
        value = cells[tie[0][0]][tie[0][1]].text
        if all_equal:
            equal.append(f"{where} ({value})" if where else value)
        else:
            described.append(f"{where}: {' = '.join(names)} ({value})" if where else value)
    notes = []
    if described:
        notes.append("Tied for the best, so not bold: " + "; ".join(described) + ".")
    if equal:
        notes.append("All values equal, so nothing bold: " + "; ".join(equal) + ".")
    return " ".join(notes)


def _table(
    table_id: str,
    title: str,
    caption: str,
    stub: tuple[str, ...],
    columns: list[Column],
    labels: list[tuple[str, ...]],
    cells: list[list[Cell]],
    notes: Iterable[str] = (),
    ties: Sequence[Tie] = (),
    *,
    split_groups: bool = False,
) -> Table:
    rows = tuple(Row(lab, tuple(c)) for lab, c in zip(labels, cells, strict=True))
    notes = list(notes)
    tie_note = _tie_note(list(ties), labels, columns, cells)
    if tie_note:
        notes.insert(max(len(notes) - 1, 0), tie_note)  # before the legend line
    marks = {cell.mark for row in rows for cell in row.cells}
    if any(CHANCE_MARK in mark for mark in marks):
        notes.append(_CHANCE_NOTE)
    if any(FLAT_MARK in mark for mark in marks):
        notes.append(_FLAT_NOTE)
    return Table(table_id, title, caption, stub, tuple(columns), rows, tuple(notes), split_groups)


_LEGEND = "'-': not computed; 'n/a': undefined (no usable sample)."
_CHANCE_NOTE = (
    f"{CHANCE_MARK} not above chance: value ≤ chance + 1.645·√(chance·(1 − chance)/n), a "
    "one-sided 5% test (chance: the majority class's share for the accuracy of a binary "
    "task, 1/classes for balanced accuracy, top-k/classes for top-k accuracy, the region's "
    "share of the image for EBPG and the pointing game)."
)
_FLAT_NOTE = (
    f"{FLAT_MARK} the method's maps are flat (constant within the tolerance) on some images: "
    "a flat map ranks no pixel above another, so these numbers say nothing about the model."
)


# -------------------------------------------------------------------- chance and flat maps


def _n(metric: Mapping[str, Any] | None) -> int | None:
    n = metric.get("n") if isinstance(metric, Mapping) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def _n_classes(run: Mapping[str, Any]) -> int | None:
    """``results["data"]["n_classes"]``; 2 for a binary task's metrics when it is absent."""
    data = section(run, "data")
    n = data.get("n_classes") if isinstance(data, Mapping) else None
    if isinstance(n, int) and not isinstance(n, bool) and n >= 2:
        return n
    model = section(run, "model")
    return 2 if "sensitivity" in model or "specificity" in model else None


def _label_chance(run: Mapping[str, Any]) -> float | None:
    """Chance of predicting the labels: the majority class's share for a binary task with
    sensitivity/specificity sample counts, else 1/classes."""
    model = section(run, "model")
    positives, negatives = _n(model.get("sensitivity")), _n(model.get("specificity"))
    if positives and negatives:
        return max(positives, negatives) / (positives + negatives)
    n_classes = _n_classes(run)
    return None if n_classes is None else 1.0 / n_classes


def model_chance(run: Mapping[str, Any], key: str) -> float | None:
    """Chance level of a model metric of ``results["model"]`` (``None``: none or unknown)."""
    n_classes = _n_classes(run)
    if key in ("accuracy", "top1_accuracy"):
        return _label_chance(run)
    if key == "balanced_accuracy":
        return None if n_classes is None else 1.0 / n_classes
    match = _TOPK_ACCURACY.fullmatch(key)
    if match and n_classes is not None:
        return min(int(match.group(1)), n_classes) / n_classes
    return None


def region_chance(run: Mapping[str, Any]) -> float | None:
    """EBPG of a constant map and pointing-game hit rate of a random point: the mean share
    of the image covered by the region (``results["data"]["region_fraction"]``)."""
    fraction = section(run, "data").get("region_fraction")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        return None
    return float(fraction) if 0.0 < fraction < 1.0 else None


def flat_maps(run: Mapping[str, Any]) -> dict[str, str]:
    """Methods whose maps are flat on some images -> ``"k of n maps flat"`` (from
    ``results["maps"][method] = {"n", "n_flat", "tolerance"}``)."""
    flat = {}
    for method, entry in section(run, "maps").items():
        if not isinstance(entry, Mapping):
            continue
        n, n_flat = entry.get("n"), entry.get("n_flat")
        if isinstance(n_flat, int) and isinstance(n, int) and n_flat > 0:
            tolerance = entry.get("tolerance")
            numeric = isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool)
            within = f", constant within {tolerance:g}" if numeric else ""
            flat[method] = f"{n_flat} of {n} maps flat{within}"
    return flat


# ------------------------------------------------------------------------------- Table I

_MODEL_LABELS = {
    "accuracy": "Acc.",
    "sensitivity": "Sens.",
    "specificity": "Spec.",
    "balanced_accuracy": "BA",
}
_BINARY = tuple(_MODEL_LABELS)
_TOPK_ACCURACY = re.compile(r"top(\d+)_accuracy")


def _model_label(key: str) -> str:
    match = _TOPK_ACCURACY.fullmatch(key)
    return f"Top-{match.group(1)} Acc." if match else _MODEL_LABELS.get(key, key)


def _model_keys(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    present: list[str] = []
    for run in runs.values():
        for key in section(run, "model"):
            if key not in present:
                present.append(key)
    if not present:
        return list(_BINARY)

    def order(key: str) -> tuple[int, int]:
        if key in _BINARY:
            return (0, _BINARY.index(key))
        match = _TOPK_ACCURACY.fullmatch(key)
        return (1, int(match.group(1))) if match else (2, present.index(key))

    return sorted(present, key=order)


def model_and_lap_table(results_by_run: object) -> Table:
    """Table I of paper 000 as data: rows = runs; model performance (Acc., Sens., Spec., BA
    for binary tasks, Top-k Acc. for multi-class), then each LAP layer as a standalone
    predictor: accuracy w.r.t. the labels (predictivity) and w.r.t. the model's prediction
    (faithfulness). LAP_i is the i-th LAP layer in forward order; best per column in bold."""
    runs = as_runs(results_by_run)
    model_keys = _model_keys(runs)
    n_lap = max((len(section(run, "lap_predictors")) for run in runs.values()), default=0)
    columns = [Column(_model_label(key), "Model performance") for key in model_keys]
    columns += [Column(f"LAP_{i + 1}", "LAP predictions") for i in range(n_lap)]
    columns += [Column(f"LAP_{i + 1}", "Faithfulness to model") for i in range(n_lap)]

    grid, notes = [], []
    for name, run in runs.items():
        model = section(run, "model")
        layers = list(section(run, "lap_predictors").items())
        row = [_Entry(model.get(key), chance=model_chance(run, key)) for key in model_keys]
        chances = {"predictivity": _label_chance(run), "faithfulness": None}
        for key in ("predictivity", "faithfulness"):
            row += [
                _Entry(layers[i][1].get(key), chance=chances[key])
                if i < len(layers)
                else _Entry(None)
                for i in range(n_lap)
            ]
        grid.append(row)
        if layers:
            described = ", ".join(
                f"LAP_{i + 1} = {layer}" + (f" ({entry['rule']})" if entry.get("rule") else "")
                for i, (layer, entry) in enumerate(layers)
            )
            notes.append(f"{name}: {described}.")
    labels = [(name,) for name in runs]
    cells, ties = _cells(grid, _column_groups(grid, range(len(grid))))
    notes.append(f"Accuracies in %; unique best per column in bold; {_LEGEND}")
    return _table(
        "table-model-lap",
        "Table I",
        "Model performance, and accuracy of each LAP layer as a standalone predictor w.r.t. "
        "the ground truth (predictivity) and the model's prediction (faithfulness).",
        ("Run",),
        columns,
        labels,
        cells,
        notes,
        ties,
        split_groups=len(columns) > _MAX_UNSPLIT_COLUMNS,
    )


def table_model_and_lap(results_by_run: object) -> str:
    """Markdown of :func:`model_and_lap_table` (paper 000, Table I layout)."""
    return model_and_lap_table(results_by_run).to_markdown()


# ------------------------------------------------------------------------------ Table II


_MAX_UNSPLIT_COLUMNS = 10  # wider grouped tables are shown one group per table in HTML


def _methods(runs: Mapping[str, Mapping[str, Any]], name: str) -> list[str]:
    return order_methods(m for run in runs.values() for m in section(run, name))


def localization_table(results_by_run: object) -> Table:
    """Table II of paper 000 as data: rows = runs; IoU between each method's binarized map
    and the region, by thresholding (global threshold) and by top-scored selection (as many
    pixels as the region), one column per method; best per row and binarization in bold."""
    runs = as_runs(results_by_run)
    methods = _methods(runs, "localization")
    groups = (("iou_threshold", "Thresholding"), ("iou_topk", "Top-Scored Selection"))
    columns = [Column(method_display_name(m), group) for _, group in groups for m in methods]
    grid = []
    for run in runs.values():
        localization, flat = section(run, "localization"), flat_maps(run)
        grid.append(
            [
                _Entry(localization.get(m, {}).get(key), flat=flat.get(m, ""))
                for key, _ in groups
                for m in methods
            ]
        )
    n = len(methods)
    comparisons = [
        [(r, g * n + c) for c in range(n)] for r in range(len(grid)) for g in range(len(groups))
    ]
    cells, ties = _cells(grid, comparisons)
    return _table(
        "table-localization",
        "Table II",
        "IoU of the binarized explanation maps with the annotated regions, binarized by "
        "thresholding and by top-scored selection.",
        ("Run",),
        columns,
        [(name,) for name in runs],
        cells,
        [f"IoU in %; unique best per row and binarization in bold; {_LEGEND}"],
        ties,
        split_groups=True,
    )


def table_localization(results_by_run: object) -> str:
    """Markdown of :func:`localization_table` (paper 000, Table II layout)."""
    return localization_table(results_by_run).to_markdown()


# -------------------------------------------------------------------------- faithfulness

_AGREEMENT = re.compile(r"top(\d+)_vs_(prediction|label)")


def _k_sorted(keys: Iterable[str]) -> list[str]:
    unique = list(dict.fromkeys(keys))
    return sorted(unique, key=lambda k: float(k))


def faithfulness_table(results_by_run: object, agreement: str = "top1_vs_prediction") -> Table:
    """keep-k% faithfulness (paper 000, Fig. 4) and Drop/Increase/Win (papers 003, 004) as
    data: rows = (run, method); one column per k with the ``agreement`` rate (default: the
    top-1 class of the image keeping the k% top-scored pixels equals the original
    prediction), then Drop %, Increase %, Win %. Best per column within a run in bold."""
    match = _AGREEMENT.fullmatch(agreement) if isinstance(agreement, str) else None
    if match is None:
        raise ValueError(
            "agreement must be 'top<t>_vs_prediction' or 'top<t>_vs_label' "
            f"(e.g. 'top1_vs_prediction'), got {agreement!r}"
        )
    runs = as_runs(results_by_run)
    methods = _methods(runs, "faithfulness")
    ks = _k_sorted(
        k
        for run in runs.values()
        for entry in section(run, "faithfulness").values()
        for k in entry.get("keep_top_k", {})
    )
    t, reference = match.groups()
    keep_group = f"Top-{t} vs {reference}"
    extra = (("drop", "Drop %"), ("increase", "Increase %"), ("win", "Win %"))
    columns = [Column(f"keep {k}%", keep_group) for k in ks]
    columns += [Column(label, "Perturbation") for _, label in extra]
    labels, grid = [], []
    for name, run in runs.items():
        faith, flat = section(run, "faithfulness"), flat_maps(run)
        for method in methods:
            if method not in faith:
                continue
            entry = faith[method]
            keep = entry.get("keep_top_k", {})
            why = flat.get(method, "")
            row = [_Entry(keep.get(k, {}).get(agreement), flat=why) for k in ks]
            row += [_Entry(entry.get(key), scale=1.0, flat=why) for key, _ in extra]  # in %
            labels.append((name, method_display_name(method)))
            grid.append(row)
    comparisons = [g for rows in _run_blocks(labels) for g in _column_groups(grid, rows)]
    cells, ties = _cells(grid, comparisons)
    return _table(
        "table-faithfulness",
        "Faithfulness",
        f"Keeping the k% top-scored pixels (others zeroed): top-{t} agreement with the "
        f"{'original prediction' if reference == 'prediction' else 'label'}; Drop %, "
        "Increase % and Win % of the class probability on the map-masked image.",
        ("Run", "Method"),
        columns,
        labels,
        cells,
        [
            "Values in %; unique best per column within a run in bold (lower Drop is better); "
            + _LEGEND
        ],
        ties,
        split_groups=len(columns) > _MAX_UNSPLIT_COLUMNS,
    )


def table_faithfulness(results_by_run: object, agreement: str = "top1_vs_prediction") -> str:
    """Markdown of :func:`faithfulness_table` (keep-k% of paper 000 Fig. 4, Drop/Increase/Win)."""
    return faithfulness_table(results_by_run, agreement).to_markdown()


# ------------------------------------------------------------------ other localization

_OTHER_LOCALIZATION = (
    ("ebpg", "EBPG"),
    ("miou_top20", "mIoU (top 20%)"),
    ("bbox", "Bbox"),
    ("pointing_game", "Pointing game"),
)


def other_localization_table(results_by_run: object) -> Table:
    """Localization metrics of paper 003 as data: rows = (run, method); EBPG, mIoU of the top
    20% pixels, Bbox accuracy and pointing game. Best per column within a run in bold."""
    runs = as_runs(results_by_run)
    methods = _methods(runs, "localization")
    labels, grid = [], []
    for name, run in runs.items():
        localization, flat = section(run, "localization"), flat_maps(run)
        chance = region_chance(run)
        for method in methods:
            if method in localization:
                labels.append((name, method_display_name(method)))
                grid.append(
                    [
                        _Entry(
                            localization[method].get(k),
                            chance=chance if k in ("ebpg", "pointing_game") else None,
                            flat=flat.get(method, ""),
                        )
                        for k, _ in _OTHER_LOCALIZATION
                    ]
                )
    comparisons = [g for rows in _run_blocks(labels) for g in _column_groups(grid, rows)]
    cells, ties = _cells(grid, comparisons)
    return _table(
        "table-other-localization",
        "Localization",
        "Energy-based pointing game, mIoU of the top 20% pixels, Bbox accuracy and pointing "
        "game of each method's map against the annotated regions.",
        ("Run", "Method"),
        [Column(label) for _, label in _OTHER_LOCALIZATION],
        labels,
        cells,
        [f"Values in %; unique best per column within a run in bold; {_LEGEND}"],
        ties,
    )


def table_other_localization(results_by_run: object) -> str:
    """Markdown of :func:`other_localization_table` (EBPG, mIoU, Bbox, pointing game)."""
    return other_localization_table(results_by_run).to_markdown()


# ---------------------------------------------------------------- stability and timing

_STABILITY_LABELS = {"change_drop": "ΔDrop %", "change_inc": "ΔInc %"}


def _level_key(level: str) -> tuple[int, float, str]:
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


def stability_table(results_by_run: object) -> Table:
    """Stability under salt-and-pepper noise (paper 004) as data: rows = (run, method); per
    noise level, the change of Drop % and Inc % (lower is better, best per column within a
    run in bold)."""
    runs = as_runs(results_by_run)
    methods = _methods(runs, "stability")
    levels = sorted(
        {lvl for run in runs.values() for e in section(run, "stability").values() for lvl in e},
        key=_level_key,
    )
    keys: list[str] = list(_STABILITY_LABELS)
    for run in runs.values():
        for entry in section(run, "stability").values():
            for changes in entry.values():
                keys += [k for k in changes if k not in keys]
    keys = [k for k in keys if any(_has_stability_key(runs, k))]
    columns = [
        Column(_STABILITY_LABELS.get(k, k), f"Noise {level}") for level in levels for k in keys
    ]
    labels, grid = [], []
    for name, run in runs.items():
        stab, flat = section(run, "stability"), flat_maps(run)
        for method in methods:
            if method in stab:
                labels.append((name, method_display_name(method)))
                grid.append(
                    [
                        _Entry(
                            stab[method].get(level, {}).get(k), scale=1.0, flat=flat.get(method, "")
                        )
                        for level in levels
                        for k in keys
                    ]
                )
    comparisons = [g for rows in _run_blocks(labels) for g in _column_groups(grid, rows)]
    cells, ties = _cells(grid, comparisons)
    return _table(
        "table-stability",
        "Stability",
        "Change of Drop % and Inc % when the input gets salt-and-pepper noise of the given "
        "fraction.",
        ("Run", "Method"),
        columns,
        labels,
        cells,
        [
            "Percentage points; unique best (smallest change) per column within a run in bold; "
            + _LEGEND
        ],
        ties,
        split_groups=len(columns) > _MAX_UNSPLIT_COLUMNS,
    )


def _has_stability_key(runs: Mapping[str, Mapping[str, Any]], key: str) -> Iterable[bool]:
    for run in runs.values():
        for entry in section(run, "stability").values():
            for changes in entry.values():
                yield key in changes


def table_stability(results_by_run: object) -> str:
    """Markdown of :func:`stability_table`."""
    return stability_table(results_by_run).to_markdown()


def timing_table(results_by_run: object) -> Table:
    """Seconds per method and images per second as data: rows = (run, method); fastest per
    column within a run in bold."""
    runs = as_runs(results_by_run)
    methods = _methods(runs, "timing")
    labels, grid = [], []
    for name, run in runs.items():
        timing = section(run, "timing")
        for method in methods:
            if method in timing:
                labels.append((name, method_display_name(method)))
                grid.append(
                    [
                        _plain(timing[method].get("seconds"), 2, higher_is_better=False),
                        _plain(timing[method].get("images_per_second"), 1, True),
                    ]
                )
    comparisons = [g for rows in _run_blocks(labels) for g in _column_groups(grid, rows)]
    cells, ties = _cells(grid, comparisons)
    return _table(
        "table-timing",
        "Timing",
        "Time to explain the evaluation images, per method.",
        ("Run", "Method"),
        [Column("Seconds"), Column("Images / s")],
        labels,
        cells,
        [f"Fastest (if unique) per column within a run in bold; {_LEGEND}"],
        ties,
    )


def table_timing(results_by_run: object) -> str:
    """Markdown of :func:`timing_table`."""
    return timing_table(results_by_run).to_markdown()


def lime_table(results_by_run: object) -> Table:
    """Paper 002's faithfulness check (section 4.3, Table 2) as data: per run with a BLA
    module, the Spearman correlation of LIME patch scores with BLA's soft explanation and with
    Grad-CAM. Best per row in bold."""
    runs = as_runs(results_by_run)
    labels, grid, notes = [], [], []
    for name, run in runs.items():
        lime = run.get("lime_spearman")
        if isinstance(lime, Mapping):
            labels.append((name,))
            grid.append([_Entry(lime.get("bla"), 1.0, 3), _Entry(lime.get("gradcam"), 1.0, 3)])
            notes.append(
                f"{name}: {lime.get('patch')}-px patches, {lime.get('n_samples')} LIME samples."
            )
    comparisons = [[(r, 0), (r, 1)] for r in range(len(grid))]
    cells, ties = _cells(grid, comparisons)
    return _table(
        "table-lime",
        "LIME rank correlation",
        "Spearman correlation between LIME's patch scores and each explanation, averaged over "
        "images (paper 002, section 4.3); higher = more faithful to the model.",
        ("Run",),
        [Column("BLA (soft)"), Column("Grad-CAM")],
        labels,
        cells,
        [*notes, f"Unique best per row in bold; {_LEGEND}"],
        ties,
    )


def table_lime(results_by_run: object) -> str:
    """Markdown of :func:`lime_table`."""
    return lime_table(results_by_run).to_markdown()


def runs_table(results_by_run: object) -> Table:
    """The evaluated runs: data set, split, number of images and run folder; methods a run
    skipped (``results["skipped"]``) and per-method notes (``results["notes"]``, text or
    list of texts) are listed in the notes."""
    runs = as_runs(results_by_run)
    labels, cells, notes = [], [], []
    for name, run in runs.items():
        data, info = section(run, "data"), section(run, "run")
        values = (data.get("name"), data.get("split"), data.get("n_images"), info.get("run_dir"))
        labels.append((name,))
        cells.append([Cell(MISSING if v is None else str(v)) for v in values])
        skipped = run.get("skipped")
        if isinstance(skipped, Mapping):
            notes += [f"{name}: {method} skipped ({why})." for method, why in skipped.items()]
        method_notes = run.get("notes")
        if isinstance(method_notes, Mapping):
            for method, note in method_notes.items():
                texts = [note] if isinstance(note, str) else list(note or ())
                notes += [f"{name}: {method}: {text}" for text in texts]
    return _table(
        "table-runs",
        "Runs",
        "Evaluated runs and their data.",
        ("Run",),
        [
            Column("Data", numeric=False),
            Column("Split", numeric=False),
            Column("Images"),
            Column("Run folder", numeric=False),
        ],
        labels,
        cells,
        notes,
    )


# ------------------------------------------------------------------------------ together


def all_tables(results_by_run: object) -> list[Table]:
    """Every table that has at least one value: runs, Table I, Table II, other localization,
    faithfulness, stability, timing (in that order). Table I is always included."""
    runs = as_runs(results_by_run)
    tables = [runs_table(runs), model_and_lap_table(runs)]
    optional = (
        localization_table,
        other_localization_table,
        faithfulness_table,
        stability_table,
        lime_table,
        timing_table,
    )
    tables += [t for t in (build(runs) for build in optional) if t.rows and t.has_values]
    return tables


def tables_markdown(results_by_run: object) -> str:
    """All tables of :func:`all_tables` as one Markdown document."""
    tables = all_tables(results_by_run)
    return "# Results\n\n" + "\n".join(table.to_markdown() for table in tables)


def write_tables(results_by_run: object, path: str | os.PathLike[str]) -> Path:
    """Write :func:`tables_markdown` to ``path`` (e.g. ``tables.md``) atomically; returns the
    path. Parent folders are created."""
    text = tables_markdown(results_by_run)  # validates before anything is written
    return atomic_write_text(path, text)
