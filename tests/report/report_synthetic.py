"""Synthetic results dicts for the report tests (the schema of ``torchlap evaluate``).

Not a test module (no ``test_`` prefix); imported by the report tests.
"""

from __future__ import annotations

import copy
from typing import Any

from torchlap.explainers import available, method_facts


def metric(value: float | None, higher_is_better: bool = True, n: int = 50) -> dict[str, Any]:
    """A ``MetricResult.to_dict()``-shaped entry."""
    return {"value": value, "higher_is_better": higher_is_better, "n": n, "n_excluded": 0}


def _keep(values: dict[str, tuple[float, float]]) -> dict[str, Any]:
    return {
        k: {
            "top1_vs_prediction": metric(top1),
            "top5_vs_prediction": metric(top5),
            "top1_vs_label": metric(top1 * 0.9),
            "top5_vs_label": metric(top5 * 0.9),
        }
        for k, (top1, top5) in values.items()
    }


def _localization(values: dict[str, float | None]) -> dict[str, Any]:
    return {key: metric(value) for key, value in values.items()} | {"threshold": 0.4}


#: what ``torchlap evaluate`` writes into ``results["methods"]``: the registry's facts
METHOD_FACTS = method_facts(available())


def vanilla_results() -> dict[str, Any]:
    """A model without LAP layers: four post-hoc methods, one failed (absent) everywhere
    but timing, one method with an undefined value."""
    return {
        "format": "torchlap-results",
        "run": {"name": "vanilla", "run_dir": "runs/vanilla"},
        "methods": METHOD_FACTS,
        "data": {"name": "shapes", "split": "test", "n_images": 50},
        "model": {
            "accuracy": metric(0.9522),
            "sensitivity": metric(0.9508),
            "specificity": metric(0.9537),
            "balanced_accuracy": metric(0.9523),
        },
        "lap_predictors": {},
        "localization": {
            "gradcam": _localization(
                {
                    "iou_threshold": 0.0934,
                    "iou_topk": 0.0714,
                    "ebpg": 0.31,
                    "miou_top20": 0.2,
                    "bbox": 0.25,
                    "pointing_game": 0.5,
                }
            ),
            "deeplift": _localization(
                {
                    "iou_threshold": 0.2437,
                    "iou_topk": 0.2044,
                    "ebpg": 0.41,
                    "miou_top20": None,
                    "bbox": 0.35,
                    "pointing_game": 0.6,
                }
            ),
            "my_method": _localization({"iou_threshold": None, "iou_topk": 0.15, "ebpg": 0.2}),
        },
        "faithfulness": {
            "gradcam": {
                "keep_top_k": _keep({"10": (0.30, 0.55), "5": (0.2, 0.4), "50": (0.7, 0.9)}),
                "drop": metric(40.0, higher_is_better=False),
                "increase": metric(12.0),
                "win": metric(20.0),
            },
            "deeplift": {
                "keep_top_k": _keep({"10": (0.10, 0.35), "5": (0.05, 0.2), "50": (0.5, 0.8)}),
                "drop": metric(55.5, higher_is_better=False),
                "increase": metric(8.0),
            },
        },
        "stability": {
            "gradcam": {
                "0.1": {"change_drop": metric(1.5, False), "change_inc": metric(2.0, False)}
            },
            "deeplift": {
                "0.1": {"change_drop": metric(3.0, False), "change_inc": metric(None, False)}
            },
        },
        "timing": {
            "gradcam": {"seconds": 1.25, "images_per_second": 40.0},
            "deeplift": {"seconds": 2.5, "images_per_second": 20.0},
            "my_method": {"seconds": 10.0, "images_per_second": 5.0},
        },
        "skipped": {"lap": "the model has no LAP layer"},
    }


def lap_results() -> dict[str, Any]:
    """A LAP model with three LAP layers (forward order) and the LAP method."""
    results = copy.deepcopy(vanilla_results())
    results["run"] = {"name": "WS-LAP", "run_dir": "runs/ws-lap"}
    results["model"] = {
        "accuracy": metric(0.9658),
        "sensitivity": metric(0.9707),
        "specificity": metric(0.9605),
        "balanced_accuracy": metric(0.9656),
    }
    results["lap_predictors"] = {
        "layer2.pool": {
            "rule": "binary",
            "predictivity": metric(0.5548),
            "faithfulness": metric(0.5586),
        },
        "layer3.pool": {
            "rule": "binary",
            "predictivity": metric(0.6976),
            "faithfulness": metric(None),
        },
        "avgpool": {
            "rule": "binary",
            "predictivity": metric(0.8811),
            "faithfulness": metric(0.886),
        },
    }
    results["localization"]["lap"] = _localization(
        {
            "iou_threshold": 0.3626,
            "iou_topk": 0.4429,
            "ebpg": 0.6,
            "miou_top20": 0.4,
            "bbox": 0.5,
            "pointing_game": 0.9,
        }
    )
    # a tie with LAP at the shown precision on the top-scored selection
    results["localization"]["deeplift"]["iou_topk"] = metric(0.442901)
    results["faithfulness"]["lap"] = {
        "keep_top_k": _keep({"10": (0.50, 0.80), "5": (0.4, 0.6), "50": (0.9, 0.99)}),
        "drop": metric(10.0, higher_is_better=False),
        "increase": metric(30.0),
        "win": metric(45.0),
    }
    results["timing"]["lap"] = {"seconds": 0.1, "images_per_second": 500.0}
    del results["skipped"]
    return results


def results_by_run() -> dict[str, dict[str, Any]]:
    """Two runs, as ``torchlap compare`` passes them."""
    return {"vanilla": vanilla_results(), "WS-LAP": lap_results()}


def configs() -> dict[str, dict[str, Any]]:
    """Run configurations, with text that must be escaped in HTML."""
    return {
        "vanilla": {"model": {"arch": "resnet18"}, "train": {"epochs": 2, "lr": 0.001}},
        "WS-LAP": {
            "model": {"arch": "resnet18", "lap": {"where": "auto", "n_concepts": 1}},
            "train": {"epochs": 2, "note": "<script>alert('x')</script> & more"},
        },
    }


def parse_markdown_table(markdown: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, body rows) of the first pipe table, unescaping ``\\|``."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]

    def split(line: str) -> list[str]:
        cells, current, escaped = [], "", False
        for char in line.strip()[1:-1]:
            if escaped:
                current += char
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "|":
                cells.append(current.strip())
                current = ""
            else:
                current += char
        cells.append(current.strip())
        return cells

    return split(lines[0]), [split(line) for line in lines[2:]]
