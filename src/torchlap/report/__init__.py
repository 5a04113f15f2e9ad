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
     "timing": {method: {"seconds": float, "images_per_second": float}}}

Any key may be missing (shown ``-``) and any value ``None`` (shown ``n/a``).
"""

from torchlap.report._common import METHOD_DISPLAY_NAMES, method_display_name
from torchlap.report.html import render_table, write_report
from torchlap.report.plots import plot_iou_bars, plot_keep_k, plot_lap_layers, plot_overlays
from torchlap.report.tables import (
    Table,
    all_tables,
    table_faithfulness,
    table_lime,
    table_localization,
    table_model_and_lap,
    table_other_localization,
    table_stability,
    table_timing,
    tables_markdown,
    write_tables,
)

__all__ = [
    "METHOD_DISPLAY_NAMES",
    "Table",
    "all_tables",
    "method_display_name",
    "plot_iou_bars",
    "plot_keep_k",
    "plot_lap_layers",
    "plot_overlays",
    "render_table",
    "table_faithfulness",
    "table_lime",
    "table_localization",
    "table_model_and_lap",
    "table_other_localization",
    "table_stability",
    "table_timing",
    "tables_markdown",
    "write_report",
    "write_tables",
]
