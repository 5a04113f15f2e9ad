"""Report parts of the sanity checks and the grid pointing game.

- :func:`plot_sanity_curves`: the model-parameter randomization curves in the style of
  Adebayo et al. 2018, Fig. 2 (x: the randomized unit, from the classifier down to the first
  block; y: Spearman rank correlation of absolute values, and SSIM, with the trained model's
  maps; one line per method; cascading and independent side by side);
- :func:`plot_grid_pg_distribution`: per method, the distribution of the grid pointing game
  scores (box plot, chance level as a dashed line);
- :func:`plot_grid_examples`: a few grids with every method's map for the first cell's class;
- :func:`sanity_figures`: those figures for a report (used by ``write_run_outputs``);
- :func:`checks_section`: the report section (a table per run: sanity summary, pass/fail with
  the threshold, data randomization, grid pointing game), registered in
  :data:`torchlap.report.html.SECTION_BUILDERS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from matplotlib.patches import Rectangle
from torch import Tensor

from torchlap.report._common import (
    ReportSection,
    method_display_name,
    method_facts,
    order_methods,
)
from torchlap.report._figure import _new_figure, _png_path, _save
from torchlap.report.checks_table import _number, _rows, _threshold, checks_markdown, verdict
from torchlap.report.plots import _method_colors

__all__ = [
    "checks_markdown",
    "checks_section",
    "plot_grid_examples",
    "plot_grid_pg_distribution",
    "plot_sanity_curves",
    "sanity_figures",
]

_MEASURES = (("spearman_abs", "Spearman rank corr. (|map|)"), ("ssim", "SSIM"))


def _runs_with(results_by_run: Mapping[str, Mapping[str, Any]], key: str) -> dict[str, Any]:
    return {name: run[key] for name, run in results_by_run.items() if run.get(key)}


def plot_sanity_curves(
    results_by_run: Mapping[str, Mapping[str, Any]], path: Any, *, overwrite: bool = False
) -> Path:
    """Adebayo et al.'s Fig. 2 curves for every run with a ``sanity`` key (one row per run and
    measure, one column per randomization mode)."""
    path = _png_path(path, overwrite)
    runs = _runs_with(results_by_run, "sanity")
    if not runs:
        raise ValueError("no run has sanity results to plot")
    modes = [
        m
        for m in ("cascading", "independent")
        if any(m in entry for sanity in runs.values() for entry in sanity.values())
    ]
    facts = method_facts(results_by_run.values())
    rows = [(name, measure, label) for name in runs for measure, label in _MEASURES]
    figure = _new_figure(5.0 * len(modes), 2.6 * len(rows))
    axes = figure.subplots(len(rows), len(modes), squeeze=False)
    # one color per method across the runs (runs explain different method sets: LAP only on
    # LAP models)
    colors = _method_colors(order_methods([m for sanity in runs.values() for m in sanity], facts))
    for r, (name, measure, label) in enumerate(rows):
        sanity = runs[name]
        methods = order_methods(sanity, facts)
        handles: dict[str, Any] = {}  # the row's curves: one legend entry per method
        for c, mode in enumerate(modes):
            ax = axes[r][c]
            steps: list[str] = []
            lowest = 0.0
            for method in methods:
                entry = sanity[method].get(mode)
                if not entry:
                    continue
                steps = ["trained", *entry["steps"]]
                values = [1.0] + [math.nan if v is None else v for v in entry[measure]]
                lowest = min([lowest, *(v for v in values if not math.isnan(v))])
                (line,) = ax.plot(
                    range(len(values)),
                    values,
                    marker="o",
                    markersize=3,
                    color=colors[method],
                    label=method_display_name(method, facts),
                )
                handles.setdefault(method, line)
            threshold = next(iter(sanity.values())).get("threshold")
            if measure == "spearman_abs" and threshold is not None:
                ax.axhline(threshold, color="grey", linestyle="--", linewidth=0.8)
            ax.set_xticks(range(len(steps)))
            ax.set_xticklabels([s.removeprefix("net.") for s in steps], rotation=60, fontsize=6)
            # both measures lie in [-1, 1]: room below 0 for every plotted value
            ax.set_ylim(min(-0.25, lowest - 0.05), 1.05)
            ax.set_ylabel(label, fontsize=8)
            ax.set_title(f"{name}: {mode}", fontsize=9)
        if measure == _MEASURES[0][0] and handles:
            # each run's methods, on its first panel with curves (a run may lack a mode, a
            # method may have run one mode only)
            first = next(ax for ax in axes[r] if any(h.axes is ax for h in handles.values()))
            shown = [m for m in methods if m in handles]
            labels = [method_display_name(m, facts) for m in shown]
            first.legend([handles[m] for m in shown], labels, fontsize=6, ncols=2)
    return _save(figure, path, overwrite)


def plot_grid_pg_distribution(
    results_by_run: Mapping[str, Mapping[str, Any]], path: Any, *, overwrite: bool = False
) -> Path:
    """Box plots of the grid pointing game scores per method (one panel per run)."""
    path = _png_path(path, overwrite)
    runs = _runs_with(results_by_run, "grid_pointing_game")
    if not runs:
        raise ValueError("no run has grid pointing game results to plot")
    facts = method_facts(results_by_run.values())
    figure = _new_figure(max(4.0, 0.8 * max(len(g) for g in runs.values()) + 1.5), 2.8 * len(runs))
    axes = figure.subplots(len(runs), 1, squeeze=False)
    for ax, (name, game) in zip(axes[:, 0], runs.items(), strict=True):
        methods = order_methods(game, facts)
        ax.boxplot([game[m]["scores"] for m in methods], showmeans=True)
        ax.set_xticks(range(1, len(methods) + 1))
        ax.set_xticklabels([method_display_name(m, facts) for m in methods], fontsize=8)
        chance = next(iter(game.values())).get("chance")
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=0.8, label="chance")
            ax.legend(fontsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("positive share in cell", fontsize=8)
        ax.set_title(f"{name}: grid pointing game", fontsize=9)
    return _save(figure, path, overwrite)


def plot_grid_examples(
    grids: Tensor,
    classes_explained: Tensor,
    shape: Sequence[int],
    maps: Mapping[str, Tensor],
    class_names: Sequence[str],
    path: Any,
    facts: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Rows: grids ``(G, C, H, W)`` in [0, 1]; columns: the grid (the explained cell framed)
    and each method's map ``(G, H, W)`` for ``classes_explained`` (the class of cell 0).
    ``facts``: the methods' facts (display name, column order; as ``results["methods"]``)."""
    path = _png_path(path, overwrite)
    if grids.dim() != 4 or not maps:
        raise ValueError("plot_grid_examples needs grids (G, C, H, W) and at least one map set")
    methods = order_methods(maps, facts)
    n, _, height, width = grids.shape
    for method in methods:
        if maps[method].shape != (n, height, width):
            raise ValueError(
                f"{method}: maps must be {(n, height, width)}, got {tuple(maps[method].shape)}"
            )
    figure = _new_figure(1.6 * (len(methods) + 1), 1.7 * n)
    axes = figure.subplots(n, len(methods) + 1, squeeze=False)
    cell_h, cell_w = height // int(shape[0]), width // int(shape[1])
    for row in range(n):
        image = grids[row].detach().float().clamp(0, 1).cpu()
        shown = (image[0] if image.shape[0] == 1 else image[:3].permute(1, 2, 0)).numpy()
        for col in range(len(methods) + 1):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.imshow(shown, cmap="gray" if image.shape[0] == 1 else None, vmin=0, vmax=1)
                label = class_names[int(classes_explained[row])]
                ax.set_title(f"explain: {label}", fontsize=7)
            else:
                method = methods[col - 1]
                m = maps[method][row].detach().float().cpu()
                scale = float(m.abs().max()) or 1.0
                ax.imshow(m.numpy(), cmap="bwr", vmin=-scale, vmax=scale)
                if row == 0:
                    ax.set_title(method_display_name(method, facts), fontsize=7)
            ax.add_patch(
                Rectangle((-0.5, -0.5), cell_w, cell_h, fill=False, edgecolor="lime", linewidth=1.2)
            )
    return _save(figure, path, overwrite)


#: the figures of :func:`sanity_figures` drawn from the results: (the results key a run must
#: hold, the plot function, its file in the figures folder, the caption)
_CHECK_FIGURES = (
    (
        "sanity",
        plot_sanity_curves,
        "sanity_curves.png",
        "Sanity checks: similarity of each method's maps with the trained model's as units are "
        "randomized (Adebayo et al. 2018, Fig. 2)",
    ),
    (
        "grid_pointing_game",
        plot_grid_pg_distribution,
        "grid_pg.png",
        "Grid pointing game: share of positive attribution in the explained cell, per method "
        "(dashed: chance)",
    ),
)


def sanity_figures(
    results_by_run: Mapping[str, Mapping[str, Any]],
    figures_dir: Path,
    out_dir: Path,
    overwrite: bool = False,
) -> list[tuple[Path, str]]:
    """The curves and the distribution plot (written to ``figures_dir``; ``overwrite`` as the
    plot functions take it) and the grid example figures the evaluations left
    (``out_dir/figures`` or ``out_dir/<run>/figures``)."""
    figures: list[tuple[Path, str]] = []
    for key, plot, name, caption in _CHECK_FIGURES:
        if _runs_with(results_by_run, key):
            path = plot(results_by_run, Path(figures_dir) / name, overwrite=overwrite)
            figures.append((path, caption))
    candidates = [(None, Path(out_dir) / "figures" / "grid_pg_examples.png")]
    candidates += [
        (name, Path(out_dir) / name / "figures" / "grid_pg_examples.png") for name in results_by_run
    ]
    for name, path in candidates:
        if path.is_file():
            prefix = f"{name}: " if name else ""
            figures.append(
                (
                    path,
                    f"{prefix}grid pointing game examples (the explained cell "
                    "framed; red positive, blue negative)",
                )
            )
    return figures


def checks_section(results_by_run: Mapping[str, Mapping[str, Any]]) -> ReportSection | None:
    """The report section of the sanity checks and grid pointing game (``None`` without)."""
    html = []
    for name, run in results_by_run.items():
        rows = _rows(run)
        if not rows:
            continue
        html.append(f"<h3>{escape(name)}</h3>\n")
        html.append(_table_html(f"sanity-{name}", rows))
        setup = run.get("grid_pointing_setup") or {}
        if setup.get("skipped"):
            html.append(f"<p>Grid pointing game skipped: {escape(str(setup['skipped']))}</p>\n")
        elif setup:
            html.append(
                f"<p>Grid pointing game: {setup.get('n_grids')} grids of "
                f"{'x'.join(str(v) for v in setup.get('shape', []))} cells, each cell an image "
                f"classified correctly with p &ge; {setup.get('min_confidence')}, seed "
                f"{setup.get('seed')}; chance = 1 / cells.</p>\n"
            )
        dr = run.get("data_randomization")
        if dr:
            html.append(_data_randomization_html(dr, method_facts([run])))
    if not html:
        return None
    intro = (
        "<p>Model-parameter randomization (Adebayo et al. 2018): each method's maps on the "
        "trained model against its maps after re-initialising the units from the classifier "
        "down to the first block; a method passes when the Spearman correlation at full "
        "randomization is below the recorded threshold. Grid pointing game (Böhle et al. 2022): "
        "share of positive attribution inside the cell whose class is explained.</p>\n"
    )
    return ReportSection(
        "sanity-checks", "Sanity checks and grid pointing game", intro + "".join(html)
    )


def _table_html(table_id: str, rows: list[dict[str, str]]) -> str:
    """Rows as a table in the report's markup (``table-wrap``: shown as cards when too wide)."""
    header = list(rows[0])
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    body = []
    for row in rows:
        first, *rest = header
        cells = [f'<th scope="row" data-label="{escape(first)}">{escape(row[first])}</th>']
        cells += [f'<td data-label="{escape(h)}"><span>{escape(row[h])}</span></td>' for h in rest]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="table-wrap"><table id="{escape(table_id)}">\n<thead><tr>{head}</tr></thead>\n'
        "<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table></div>\n"
    )


def _data_randomization_html(
    entry: Mapping[str, Any], facts: Mapping[str, Mapping[str, Any]]
) -> str:
    if entry.get("skipped"):
        return f"<p>Data randomization skipped: {escape(str(entry['skipped']))}</p>\n"
    rows = []
    for method, values in (entry.get("methods") or {}).items():
        spearman = (values.get("spearman_abs") or {}).get("mean")
        rows.append(
            {
                "Method": method_display_name(method, facts),
                "Spearman |map| vs the real run": _number(spearman),
                "SSIM": _number((values.get("ssim") or {}).get("mean")),
                "Verdict": verdict(values.get("passed"), spearman, entry.get("threshold")),
            }
        )
    if not rows:
        return ""
    return (
        "<p>Data randomization (Adebayo et al. 2018, section 4): maps of the run trained on "
        f"permuted labels against {escape(str(entry.get('against')))}'s, both explaining the "
        f"true label (pass: Spearman below {_threshold(entry.get('threshold'))}).</p>\n"
        + _table_html("data-randomization", rows)
    )
