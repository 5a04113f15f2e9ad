"""Reports of evaluations: Markdown tables in the layouts of paper 000 (LAP), section IV
(Tables I and II) plus the other metrics, figures (keep-k% curves as in Fig. 4, IoU bars,
explanation overlays as in Fig. 2, LAP concept maps as in Fig. 3) and one self-contained
``report.html``.

Input: results dicts as written by ``torchlap evaluate``, one per run, usually passed as
``{run name: results}``. ``M`` below is ``MetricResult.to_dict()``, i.e.
``{"value": float | None, "higher_is_better": bool, "n": int, "n_excluded": int}``::

    {"run": {"name", "run_dir"}, "data": {"name", "split", "n_images"},
     "model": {"accuracy", "sensitivity", "specificity", "balanced_accuracy": M}
              or {"top1_accuracy", "top5_accuracy": M},
     "lap_predictors": {layer: {"rule", "predictivity": M, "faithfulness": M}},  # forward order
     "localization": {method: {"iou_threshold", "iou_topk", "ebpg", "miou_top20", "bbox",
                               "pointing_game": M, "threshold": float}},
     "faithfulness": {method: {"keep_top_k": {"10": {"top1_vs_prediction": M, ...}, ...},
                               "drop": M, "increase": M, "win": M}},
     "stability": {method: {"0.1": {"change_drop": M, "change_inc": M}, ...}},
     "timing": {method: {"seconds": float, "images_per_second": float}},
     "methods": {method: {"display_name", "kind", "column_rank"}}}  # from the registry

The report imports no explainer: a method's display name and column order come from
``results["methods"]`` (written by ``torchlap evaluate``); a method it does not name is shown
by its name, after the others.

Any key may be missing (shown ``-``) and any value ``None`` (shown ``n/a``).
"""

from torchlap.report._common import method_display_name, method_facts
from torchlap.report.html import render_table, write_report
from torchlap.report.plots import plot_iou_bars, plot_keep_k, plot_lap_layers, plot_overlays
from torchlap.report.tables import (
    Table,
    all_tables,
    faithfulness_table,
    lime_table,
    localization_table,
    model_and_lap_table,
    other_localization_table,
    runs_table,
    stability_table,
    tables_markdown,
    timing_table,
    write_tables,
)

__all__ = [
    "Table",
    "all_tables",
    "faithfulness_table",
    "lime_table",
    "localization_table",
    "method_display_name",
    "method_facts",
    "model_and_lap_table",
    "other_localization_table",
    "plot_iou_bars",
    "plot_keep_k",
    "plot_lap_layers",
    "plot_overlays",
    "render_table",
    "runs_table",
    "stability_table",
    "tables_markdown",
    "timing_table",
    "write_report",
    "write_tables",
]
