"""Result tables in the layouts of paper 000 (LAP), section IV, from results dicts.

Each table is first built as data (:class:`~torchlap.report.table_data.Table`: columns with
groups, rows of cells with a bold flag) and then rendered: Markdown by
``X_table(results).to_markdown()``, HTML in :mod:`torchlap.report.html`, so both show the same
numbers and the same bolding. One function per table, each returning its :class:`Table`:

- :func:`model_and_lap_table`: Table I (model performance, LAP predictivity, LAP
  faithfulness to the model);
- :func:`localization_table`: Table II (IoU by thresholding and by top-scored selection);
- :func:`~torchlap.report.paired_table.paired_table`: the own-map method's IoU lead over
  each other method on the same images, with its bootstrap interval;
- :func:`faithfulness_table`: keep-k% agreement (Fig. 4 as numbers), Drop/Increase/Win %;
- :func:`~torchlap.report.paired_table.faithfulness_paired_table`: the own-map method's
  Drop% and Increase% against each other method's on the same images, with intervals;
- :func:`other_localization_table`: EBPG, mIoU (top 20%), Bbox, pointing game (paper 003);
- :func:`lime_table`: Spearman correlation with LIME of BLA and Grad-CAM (paper 002);
- :func:`stability_table`, :func:`timing_table`, :func:`runs_table`.

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

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torchlap._checks import check_bool
from torchlap.io import atomic_write
from torchlap.report._common import (
    MISSING,
    UNDEFINED,
    as_runs,
    method_display_name,
    method_facts,
    order_methods,
    section,
)
from torchlap.report.checks_table import checks_markdown
from torchlap.report.paired_table import faithfulness_paired_table, paired_table
from torchlap.report.table_data import (
    _IOU_GROUPS,
    _LEGEND,
    _TOPK_ACCURACY,
    CHANCE_MARK,
    FLAT_MARK,
    Cell,
    Column,
    Row,
    Table,
    Tie,
    _cells,
    _column_groups,
    _Entry,
    _label_chance,
    _plain,
    _run_blocks,
    _table,
    at_chance,
    flat_maps,
    model_chance,
    region_chance,
    split_by_group,
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
    "tables_markdown",
    "timing_table",
    "write_tables",
]


# ------------------------------------------------------------------------------- Table I

_MODEL_LABELS = {
    "accuracy": "Acc.",
    "sensitivity": "Sens.",
    "specificity": "Spec.",
    "balanced_accuracy": "BA",
}
_BINARY = tuple(_MODEL_LABELS)


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


# ------------------------------------------------------------------------------ Table II


_MAX_UNSPLIT_COLUMNS = 10  # wider grouped tables are shown one group per table in HTML


def _methods(runs: Mapping[str, Mapping[str, Any]], name: str) -> list[str]:
    facts = method_facts(runs.values())
    return order_methods((m for run in runs.values() for m in section(run, name)), facts)


_Row = Callable[[Mapping[str, Any], Mapping[str, Any], str], list[_Entry]]


def _method_rows(
    runs: Mapping[str, Mapping[str, Any]], name: str, row: _Row
) -> tuple[list[tuple[str, str]], list[list[_Entry]]]:
    """The rows (run, method) of the tables of section ``name``: each run's methods in the
    tables' order, labelled by display name, with ``row(run, entry, flat)`` (``entry``: the
    method's entry of the section; ``flat``: why its maps are flat, or ``""``)."""
    methods, facts = _methods(runs, name), method_facts(runs.values())
    labels, grid = [], []
    for run_name, run in runs.items():
        entries, flat = section(run, name), flat_maps(run)
        for method in methods:
            if method in entries:
                labels.append((run_name, method_display_name(method, facts)))
                grid.append(row(run, entries[method], flat.get(method, "")))
    return labels, grid


def _best_within_runs(
    labels: Sequence[tuple[str, ...]], grid: list[list[_Entry]]
) -> tuple[list[list[Cell]], list[Tie]]:
    """The cells of ``grid`` and their ties (:func:`_cells`), the best of each column among a
    run's rows in bold."""
    return _cells(grid, [g for rows in _run_blocks(labels) for g in _column_groups(grid, rows)])


def localization_table(results_by_run: object) -> Table:
    """Table II of paper 000 as data: rows = runs; IoU between each method's binarized map
    and the region, by thresholding (global threshold) and by top-scored selection (as many
    pixels as the region), one column per method; best per row and binarization in bold."""
    runs = as_runs(results_by_run)
    methods = _methods(runs, "localization")
    groups = _IOU_GROUPS
    facts = method_facts(runs.values())
    columns = [Column(method_display_name(m, facts), group) for _, group in groups for m in methods]
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

    def row(run: Mapping[str, Any], entry: Mapping[str, Any], flat: str) -> list[_Entry]:
        keep = entry.get("keep_top_k", {})
        return [_Entry(keep.get(k, {}).get(agreement), flat=flat) for k in ks] + [
            _Entry(entry.get(key), scale=1.0, flat=flat)
            for key, _ in extra  # in %
        ]

    labels, grid = _method_rows(runs, "faithfulness", row)
    cells, ties = _best_within_runs(labels, grid)
    return _table(
        "table-faithfulness",
        "Faithfulness",
        f"Keeping the k% top-scored pixels (others zeroed): top-{t} agreement with the "
        f"{'original prediction' if reference == 'prediction' else 'label'}. Drop % and "
        "Increase % (paper 003): the explained class's probability with the top 15% pixels "
        "kept (others black), its mean relative drop and the share of images where it rises. "
        "Win % (paper 004): the share of images where the label class's probability rises on "
        "the energy map (the model's input times the map divided by its maximum).",
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

    def row(run: Mapping[str, Any], entry: Mapping[str, Any], flat: str) -> list[_Entry]:
        chance = region_chance(run)
        return [
            _Entry(
                entry.get(k), chance=chance if k in ("ebpg", "pointing_game") else None, flat=flat
            )
            for k, _ in _OTHER_LOCALIZATION
        ]

    labels, grid = _method_rows(as_runs(results_by_run), "localization", row)
    cells, ties = _best_within_runs(labels, grid)
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


# ---------------------------------------------------------------- stability and timing

_STABILITY_LABELS = {"change_drop": "ΔDrop %", "change_inc": "ΔInc %"}
_STABILITY_NA_NOTE = (
    "n/a is frequent on a small subset: Drop % averages only the images whose score drops "
    "when the map masks them, Inc % only those whose score rises, and a change needs both the "
    "clean and the noisy value; on one image one of the two is always undefined (raise "
    "--stability-images)."
)


def _level_key(level: str) -> tuple[int, float, str]:
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


def stability_table(results_by_run: object) -> Table:
    """Stability under salt-and-pepper noise (paper 004) as data: rows = (run, method); per
    noise level, the change of Drop % and Inc %, without a best: nothing is bold, since paper
    004 (section 3.3) reads a larger jump in change at the fractions 0.4-0.5 as the more
    stable behaviour, against the usual reading that a stable explanation changes little."""
    runs = as_runs(results_by_run)
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

    def row(run: Mapping[str, Any], entry: Mapping[str, Any], flat: str) -> list[_Entry]:
        return [
            _Entry(entry.get(level, {}).get(k), scale=1.0, flat=flat)
            for level in levels
            for k in keys
        ]

    labels, grid = _method_rows(runs, "stability", row)
    cells, ties = _cells(grid, [])  # no comparison groups: no best direction, nothing bold
    return _table(
        "table-stability",
        "Stability",
        "Change of Drop % and Inc % when the input gets salt-and-pepper noise of the given "
        "fraction. No best is marked: paper 004 (section 3.3) reads a larger jump in change at "
        "the fractions 0.4-0.5, where the image is noticeably distinct, as the more stable "
        "behaviour, while a small change at small fractions means similar maps for similar "
        "inputs.",
        ("Run", "Method"),
        columns,
        labels,
        cells,
        [
            "Percentage points; no value in bold (no best direction); " + _LEGEND,
            _STABILITY_NA_NOTE,
        ],
        ties,
        split_groups=len(columns) > _MAX_UNSPLIT_COLUMNS,
    )


def _has_stability_key(runs: Mapping[str, Mapping[str, Any]], key: str) -> Iterable[bool]:
    for run in runs.values():
        for entry in section(run, "stability").values():
            for changes in entry.values():
                yield key in changes


def timing_table(results_by_run: object) -> Table:
    """Seconds per method and images per second as data: rows = (run, method); fastest per
    column within a run in bold."""

    def row(run: Mapping[str, Any], entry: Mapping[str, Any], flat: str) -> list[_Entry]:
        return [
            _plain(entry.get("seconds"), 2, higher_is_better=False),
            _plain(entry.get("images_per_second"), 1, True),
        ]

    labels, grid = _method_rows(as_runs(results_by_run), "timing", row)
    cells, ties = _best_within_runs(labels, grid)
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


def _lime_grid(lime: Mapping) -> str:
    """``"7x7 cells of "`` from a LIME result's ``grid`` (metrics revision 8), else ``""``."""
    grid = lime.get("grid")
    if isinstance(grid, list) and len(grid) == 2 and all(isinstance(n, int) for n in grid):
        return f"{grid[0]}x{grid[1]} cells of "
    return ""


def lime_table(results_by_run: object) -> Table:
    """Paper 002's faithfulness check (section 4.3, Table 2) as data: per run with a BLA
    module, the Spearman correlation of LIME patch scores with BLA's soft explanation and with
    Grad-CAM (a note per run names the LIME check's options off their defaults). Best per row
    in bold."""
    runs = as_runs(results_by_run)
    labels, grid, notes = [], [], []
    for name, run in runs.items():
        lime = run.get("lime_spearman")
        if isinstance(lime, Mapping):
            labels.append((name,))
            grid.append([_Entry(lime.get("bla"), 1.0, 3), _Entry(lime.get("gradcam"), 1.0, 3)])
            told = lime.get("options")  # the check's options off their defaults (--lime-option)
            told = "".join(f", {k}={v}" for k, v in told.items()) if told is not None else ""
            notes.append(
                f"{name}: {_lime_grid(lime)}{lime.get('patch')}-px patches, "
                f"{lime.get('n_samples')} LIME samples{told}."
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
        if "n_images" in data and data["n_images"] is None:  # NaN/inf read as None
            cells[-1][2] = Cell(UNDEFINED)
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
    """Every table that has at least one value: runs, Table I, Table II, the paired leads, other
    localization, faithfulness, its paired leads, stability, LIME, timing (in that order).
    Table I is always included."""
    runs = as_runs(results_by_run)
    tables = [runs_table(runs), model_and_lap_table(runs)]
    optional = (
        localization_table,
        paired_table,
        other_localization_table,
        faithfulness_table,
        faithfulness_paired_table,
        stability_table,
        lime_table,
        timing_table,
    )
    tables += [t for t in (build(runs) for build in optional) if t.rows and t.has_values]
    return tables


def tables_markdown(results_by_run: object) -> str:
    """All tables of :func:`all_tables` as one Markdown document."""
    tables = all_tables(results_by_run)
    text = "# Results\n\n" + "\n".join(table.to_markdown() for table in tables)
    checks = checks_markdown(as_runs(results_by_run))  # NaN/inf read as missing
    if checks:  # torchlap evaluate/compare --sanity/--grid-pg
        text += "\n## Sanity checks and grid pointing game\n\n" + checks
    return text


def write_tables(
    results_by_run: object, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write :func:`tables_markdown` to ``path`` (e.g. ``tables.md``) atomically; returns the
    path. Parent folders are created.

    ``overwrite`` (True or False): an existing file at ``path`` is refused (FileExistsError,
    before anything is written) unless True, as :func:`~torchlap.report.write_report` refuses
    one; a folder at ``path`` is refused (IsADirectoryError). ``torchlap evaluate`` and
    ``compare`` pass True for the output folders they have checked are theirs."""
    overwrite = check_bool(overwrite, "overwrite")
    text = tables_markdown(results_by_run)  # validates before anything is written
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder; pass the path of the Markdown file")
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it")
    # without overwrite, published without replacing a file that appeared meanwhile
    return atomic_write(target, text, replace=overwrite)
