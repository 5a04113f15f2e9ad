"""Files an evaluation leaves: ``tables.md``, plots, example overlays and ``report.html``."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchlap.evaluate.common import own_figures
from torchlap.explainers import display_name, own_scale
from torchlap.layers import attention_maps, clear_attention_maps, lap_modules
from torchlap.report import plot_iou_bars, plot_keep_k, plot_lap_layers, plot_overlays, write_report
from torchlap.report import write_tables as write_markdown_tables
from torchlap.report.plots import example_rows
from torchlap.report.sanity import sanity_figures

logger = logging.getLogger(__name__)

__all__ = ["EVALUATION_FIGURES", "write_run_outputs"]


def write_run_outputs(
    out_dir: Path,
    results_by_run: dict[str, dict[str, Any]],
    configs: dict[str, dict[str, Any]],
    data: Any | None,
    example_maps: dict[str, tuple[Tensor, Tensor]],
    model: Any | None = None,
) -> Path:
    """Write tables, plots, overlays (best/median/worst IoU per method) and the report.

    ``data`` (an :class:`~torchlap.evaluate.core.EvalData`) and ``example_maps`` (method ->
    (indices, maps)) are needed for the overlays only; without them the report has the tables
    and plots. Returns the path of ``report.html``.
    """
    out_dir = Path(out_dir)
    figures_dir = out_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    write_markdown_tables(results_by_run, out_dir / "tables.md", overwrite=True)  # folder checked
    # the folder passed guard_output_folder before any work: its figures are torchlap's, or
    # the user asked to replace them (--force)
    figures: list[tuple[Path, str]] = []
    if any(r.get("faithfulness") for r in results_by_run.values()):
        path = plot_keep_k(results_by_run, figures_dir / "keep_k.png", overwrite=True)
        figures.append((path, "keep-k%: agreement with the original prediction (paper 000 Fig. 4)"))
    if any(r.get("localization") for r in results_by_run.values()):
        path = plot_iou_bars(results_by_run, figures_dir / "iou_bars.png", overwrite=True)
        figures.append((path, "IoU with the ground-truth regions, by thresholding and top-k"))
    figures.extend(sanity_figures(results_by_run, figures_dir, out_dir, overwrite=True))
    if data is not None:
        classes = data.classes
        for method, (indices, maps) in example_maps.items():
            (run_results,) = results_by_run.values()
            chosen = run_results.get("examples", {}).get(method, {})
            # rows in the caption's order (best, median, worst), one row per distinct image
            rows = example_rows(chosen) or [(i, "") for i in indices.tolist()]
            position = {index: p for p, index in enumerate(indices.tolist())}
            order = torch.tensor(
                [position[index] for index, _ in rows], dtype=torch.long, device=indices.device
            )
            selected = indices[order]
            titles = [f"{kind} · {classes[int(data.labels[i])]}".strip(" ·") for i, kind in rows]
            path = plot_overlays(
                data.images[selected],
                {method: maps[order]},
                data.masks[selected],
                titles,
                figures_dir / f"overlays_{method}.png",
                names={method: display_name(method)},
                absolute={method} if own_scale(method) else (),
                overwrite=True,
            )
            scale = "its scores as they are on [0, 1]" if own_scale(method) else "each map / peak"
            caption = f"{method}: best, median and worst IoU (top-scored selection); {scale}"
            figures.append((path, caption))
        if model is not None:
            figures.extend(_lap_layer_figures(model, data, figures_dir))
    _remove_stale_figures(figures_dir, {path for path, _ in figures})
    names = list(results_by_run)
    title = "torchlap evaluation: " + (names[0] if len(names) == 1 else ", ".join(names))
    # the folder passed guard_output_folder before any work: a report.html there is ours, or
    # the user asked to replace it (--force)
    return write_report(out_dir, results_by_run, configs, figures, title=title, overwrite=True)


#: the names of the figures an evaluation or a comparison writes into ``figures/``
EVALUATION_FIGURES = re.compile(
    r"(keep_k|iou_bars|lap_layers|sanity_curves|grid_pg|grid_pg_examples|overlays_.+)\.png"
)


def _remove_stale_figures(figures_dir: Path, written: set[Path]) -> None:
    """Remove the figures an earlier evaluation into this folder wrote that this one did not
    (e.g. ``overlays_rise.png`` after a rerun without RISE): the report would not show them,
    and the folder would hold figures of results it no longer has. Only files with torchlap's
    PNG mark and a name of :data:`EVALUATION_FIGURES` go (the folder passed
    ``guard_output_folder``): another figure torchlap made (``torchlap explain --out``
    this folder, a figure copied from another evaluation) is left alone. Each is logged."""
    for path in own_figures(figures_dir):
        if not EVALUATION_FIGURES.fullmatch(path.name):
            continue
        if path.resolve() not in {p.resolve() for p in written}:
            path.unlink()
            logger.info("removed %s, a figure of an earlier evaluation into this folder", path)


def _lap_layer_figures(model: Any, data: Any, figures_dir: Path) -> list[tuple[Path, str]]:
    """The per-layer concept maps (paper 000 Fig. 3) of the first image with a region."""
    if not lap_modules(model) or not bool(data.has_region.any()):
        return []
    index = int(torch.nonzero(data.has_region)[0])
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(data.images[index : index + 1].to(device))
        maps = {name: m.concepts[0].cpu() for name, m in attention_maps(model).items()}
    finally:
        clear_attention_maps(model)
    path = plot_lap_layers(
        data.images[index],
        maps,
        figures_dir / "lap_layers.png",
        title=f"LAP concept maps per layer ({data.classes[int(data.labels[index])]})",
        overwrite=True,
    )
    return [(path, "LAP's own maps per layer, one colour per concept head (paper 000 Fig. 3)")]
