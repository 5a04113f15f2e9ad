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
``higher_is_better``, when at least two values are defined; ties at the shown precision are
all bold.
"""

from __future__ import annotations

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
    "Cell",
    "Column",
    "Row",
    "Table",
    "all_tables",
    "faithfulness_table",
    "lime_table",
    "localization_table",
    "model_and_lap_table",
    "other_localization_table",
    "runs_table",
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
    """One rendered table value; ``note`` is a tooltip (sample counts) for HTML."""

    text: str
    bold: bool = False
    note: str = ""


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
            cells += [f"**{_md(c.text)}**" if c.bold else _md(c.text) for c in row.cells]
            lines.append("| " + " | ".join(cells) + " |")
        lines.extend(["", *(f"{_md(note)}  " for note in self.notes)])
        return "\n".join(lines).rstrip() + "\n"


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
            parts.append("undefined: no usable sample")
        return ", ".join(parts)


def _plain(value: float | None, decimals: int, higher_is_better: bool) -> _Entry:
    """An entry for a bare number (timing), shown with ``decimals``."""
    if value is None:
        return _Entry(None, 1.0, decimals)
    return _Entry({"value": value, "higher_is_better": higher_is_better}, 1.0, decimals)


def _best_flags(entries: Sequence[_Entry]) -> list[bool]:
    """Bold flags: the best shown value(s) of a comparison group, when >= 2 are defined."""
    defined = [(i, e.shown) for i, e in enumerate(entries) if e.shown is not None]
    if len(defined) < 2:
        return [False] * len(entries)
    directions = {entries[i].higher_is_better for i, _ in defined}
    higher = directions.pop() if len(directions) == 1 else True
    values = [v for _, v in defined]
    best = max(values) if higher else min(values)
    flags = [False] * len(entries)
    for i, value in defined:
        flags[i] = value == best
    return flags


def _cells(grid: list[list[_Entry]], groups: Iterable[list[tuple[int, int]]]) -> list[list[Cell]]:
    """Render a grid of entries; each group (a list of (row, column) positions) gets its best
    value(s) in bold."""
    bold = [[False] * len(row) for row in grid]
    for group in groups:
        for (r, c), flag in zip(group, _best_flags([grid[r][c] for r, c in group]), strict=True):
            bold[r][c] = flag
    return [
        [Cell(entry.text(), bold[r][c], entry.note()) for c, entry in enumerate(row)]
        for r, row in enumerate(grid)
    ]


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


def _table(
    table_id: str,
    title: str,
    caption: str,
    stub: tuple[str, ...],
    columns: list[Column],
    labels: list[tuple[str, ...]],
    cells: list[list[Cell]],
    notes: Iterable[str] = (),
) -> Table:
    rows = tuple(Row(lab, tuple(c)) for lab, c in zip(labels, cells, strict=True))
    return Table(table_id, title, caption, stub, tuple(columns), rows, tuple(notes))


_LEGEND = "'-': not computed; 'n/a': undefined (no usable sample)."


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
        row = [_Entry(model.get(key)) for key in model_keys]
        for key in ("predictivity", "faithfulness"):
            row += [
                _Entry(layers[i][1].get(key)) if i < len(layers) else _Entry(None)
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
    cells = _cells(grid, _column_groups(grid, range(len(grid))))
    notes.append(f"Accuracies in %; best per column in bold; {_LEGEND}")
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
    )


def table_model_and_lap(results_by_run: object) -> str:
    """Markdown of :func:`model_and_lap_table` (paper 000, Table I layout)."""
    return model_and_lap_table(results_by_run).to_markdown()


# ------------------------------------------------------------------------------ Table II


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
        localization = section(run, "localization")
        grid.append(
            [_Entry(localization.get(m, {}).get(key)) for key, _ in groups for m in methods]
        )
    n = len(methods)
    comparisons = [
        [(r, g * n + c) for c in range(n)] for r in range(len(grid)) for g in range(len(groups))
    ]
    return _table(
        "table-localization",
        "Table II",
        "IoU of the binarized explanation maps with the annotated regions, binarized by "
        "thresholding and by top-scored selection.",
        ("Run",),
        columns,
        [(name,) for name in runs],
        _cells(grid, comparisons),
        [f"IoU in %; best per row and binarization in bold; {_LEGEND}"],
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
        faith = section(run, "faithfulness")
        for method in methods:
            if method not in faith:
                continue
            entry = faith[method]
            keep = entry.get("keep_top_k", {})
            row = [_Entry(keep.get(k, {}).get(agreement)) for k in ks]
            row += [_Entry(entry.get(key), scale=1.0) for key, _ in extra]  # already in %
            labels.append((name, method_display_name(method)))
            grid.append(row)
    comparisons = [g for rows in _run_blocks(labels) for g in _column_groups(grid, rows)]
    return _table(
        "table-faithfulness",
        "Faithfulness",
        f"Keeping the k% top-scored pixels (others zeroed): top-{t} agreement with the "
        f"{'original prediction' if reference == 'prediction' else 'label'}; Drop %, "
        "Increase % and Win % of the class probability on the map-masked image.",
        ("Run", "Method"),
        columns,
        labels,
        _cells(grid, comparisons),
        [f"Values in %; best per column within a run in bold (lower Drop is better); {_LEGEND}"],
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
        localization = section(run, "localization")
        for method in methods:
            if method in localization:
                labels.append((name, method_display_name(method)))
                grid.append([_Entry(localization[method].get(k)) for k, _ in _OTHER_LOCALIZATION])
    comparisons = [g for rows in _run_blocks(labels) for g in _column_groups(grid, rows)]
    return _table(
        "table-other-localization",
        "Localization",
        "Energy-based pointing game, mIoU of the top 20% pixels, Bbox accuracy and pointing "
        "game of each method's map against the annotated regions.",
        ("Run", "Method"),
        [Column(label) for _, label in _OTHER_LOCALIZATION],
        labels,
        _cells(grid, comparisons),
        [f"Values in %; best per column within a run in bold; {_LEGEND}"],
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
        stab = section(run, "stability")
        for method in methods:
            if method in stab:
                labels.append((name, method_display_name(method)))
                grid.append(
                    [
                        _Entry(stab[method].get(level, {}).get(k), scale=1.0)
                        for level in levels
                        for k in keys
                    ]
                )
    comparisons = [g for rows in _run_blocks(labels) for g in _column_groups(grid, rows)]
    return _table(
        "table-stability",
        "Stability",
        "Change of Drop % and Inc % when the input gets salt-and-pepper noise of the given "
        "fraction.",
        ("Run", "Method"),
        columns,
        labels,
        _cells(grid, comparisons),
        [f"Percentage points; best (smallest change) per column within a run in bold; {_LEGEND}"],
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
    return _table(
        "table-timing",
        "Timing",
        "Time to explain the evaluation images, per method.",
        ("Run", "Method"),
        [Column("Seconds"), Column("Images / s")],
        labels,
        _cells(grid, comparisons),
        [f"Fastest per column within a run in bold; {_LEGEND}"],
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
    return _table(
        "table-lime",
        "LIME rank correlation",
        "Spearman correlation between LIME's patch scores and each explanation, averaged over "
        "images (paper 002, section 4.3); higher = more faithful to the model.",
        ("Run",),
        [Column("BLA (soft)"), Column("Grad-CAM")],
        labels,
        _cells(grid, comparisons),
        [*notes, f"Best per row in bold; {_LEGEND}"],
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
