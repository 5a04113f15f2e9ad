"""Condense a peer comparison into one Markdown table (the README's "Self-explaining peers").

Usage::

    torchlap demo --suite peers --data lesions --image-size 64 --scale 1.6667 --out peers-lesions
    python benchmarks/peer_table.py peers-lesions/comparison.json

Per run: accuracy and balanced accuracy, then IoU by thresholding and by top-scored selection
and the pointing game of the run's own explanation (LAP, BLA or the ante-hoc map; ``-`` for
the vanilla model, which has none) and of Guided Backprop and Grad-CAM on the same model.
All numbers in %; ``n/a`` where a metric is undefined (e.g. no global threshold exists).
"""

from __future__ import annotations

import sys
from pathlib import Path

from _steps import read_output

OWN = ("lap", "bla", "antehoc")
POSTHOC = ("guided_backprop", "gradcam")
NAMES = {"lap": "LAP", "bla": "BLA", "antehoc": "Ante-hoc", "guided_backprop": "GBP",
         "gradcam": "GC"}  # fmt: skip


def _pct(metric: object) -> str:
    if not isinstance(metric, dict):
        return "-"
    value = metric.get("value")
    return "n/a" if value is None else f"{100 * value:.1f}"


def peer_rows(comparison: dict) -> list[str]:
    """Markdown lines of the condensed table for a ``comparison.json`` dict."""
    header = ["Run", "Acc.", "BA", "own map", "own: IoU thr.", "own: IoU top-k", "own: pointing"]
    for method in POSTHOC:
        header += [f"{NAMES[method]}: IoU top-k", f"{NAMES[method]}: pointing"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, run in comparison["runs"].items():
        model = run.get("model", {})
        accuracy = model.get("accuracy", model.get("top1_accuracy"))
        localization = run.get("localization", {})
        own = next((m for m in OWN if m in localization), None)
        cells = [name, _pct(accuracy), _pct(model.get("balanced_accuracy"))]
        if own is None:
            cells += ["-", "-", "-", "-"]
        else:
            mine = localization[own]
            cells += [NAMES[own], _pct(mine.get("iou_threshold")), _pct(mine.get("iou_topk")),
                      _pct(mine.get("pointing_game"))]  # fmt: skip
        for method in POSTHOC:
            other = localization.get(method, {})
            cells += [_pct(other.get("iou_topk")), _pct(other.get("pointing_game"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str]) -> int:
    """Print the table of each ``comparison.json`` given."""
    if not argv:
        print(__doc__)
        return 2
    for path in argv:
        try:  # not JSON, another format, no "runs": named, not a traceback
            comparison = read_output(Path(path), "torchlap-comparison", ("runs",))
        except ValueError as error:
            print(f"{path} is not a torchlap comparison.json: {error}", file=sys.stderr)
            return 1
        print(f"{path}\n")
        print("\n".join(peer_rows(comparison)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
