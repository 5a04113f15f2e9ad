"""The "At a glance" numbers of a report: per run the model's accuracy, the best localization
and the best faithfulness (each with the runner-up), and the warnings a reader must see first
(flat maps, a model at chance)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchlap.report._common import (
    format_number,
    method_display_name,
    method_facts,
    metric_value,
    section,
)
from torchlap.report.paired_table import lead_text
from torchlap.report.tables import (
    CHANCE_MARK,
    FLAT_MARK,
    at_chance,
    flat_maps,
    model_chance,
)

__all__ = [
    "GlanceNumber",
    "glance_figure",
    "glance_numbers",
    "glance_warnings",
    "ranked",
    "revision_warnings",
]


@dataclass(frozen=True)
class GlanceNumber:
    """One of the numbers of "At a glance": ``value`` (e.g. ``"LAP 44.29%"``) under
    ``label``, with a ``detail`` line; ``warn`` draws it as a warning."""

    label: str
    value: str
    detail: str
    warn: bool = False


def _percent(value: float) -> str:
    return f"{format_number(100 * value)}%"


def ranked(
    entries: Mapping[str, Mapping[str, Any]], key: str, higher: bool, scale: float
) -> list[tuple[float, list[str]]]:
    """(shown value, methods) from best to worst, methods tied at the shown precision
    grouped together."""
    by_value: dict[float, list[str]] = {}
    for method, entry in entries.items():
        value = metric_value(entry.get(key)) if isinstance(entry, Mapping) else None
        if value is not None:
            by_value.setdefault(round(value * scale, 2), []).append(method)
    return sorted(by_value.items(), key=lambda item: item[0], reverse=higher)


def _best_method_number(
    run: Mapping[str, Any],
    name: str,
    keys: Sequence[tuple[str, str]],
    higher: bool,
    scale: float,
    label: str,
) -> GlanceNumber:
    entries = section(run, name)
    flat = flat_maps(run)
    facts = method_facts([run])
    for key, description in keys:
        order = ranked(entries, key, higher, scale)
        if not order:
            continue
        (best, winners), rest = order[0], order[1:]
        names = " = ".join(method_display_name(m, facts) for m in winners)
        detail = description
        if len(winners) > 2:  # a long tie: the names go to the detail line
            verb = "tie" if rest else "tie: this metric does not separate them"
            listed = ", ".join(method_display_name(m, facts) for m in winners)
            names, detail = f"{len(winners)} methods", f"{description}; {verb}: {listed}"
        if rest:
            runner_value, runners = rest[0]
            runner_names = " = ".join(method_display_name(m, facts) for m in runners)
            detail += f"; next: {runner_names} {format_number(runner_value)}%"
            paired_key = key if name == "localization" else f"{name}/{key}"
            detail += _lead(run, paired_key, winners, runners, facts, scale)
        flat_winners = [method_display_name(m, facts) for m in winners if m in flat]
        if flat_winners:
            detail += f"; {FLAT_MARK} flat maps ({', '.join(flat_winners)})"
        return GlanceNumber(
            label, f"{names} {format_number(best)}%", detail, warn=bool(flat_winners)
        )
    return GlanceNumber(label, "-", "not computed")


def _lead(
    run: Mapping[str, Any],
    key: str,
    winners: Sequence[str],
    runners: Sequence[str],
    facts: Mapping[str, Any],
    scale: float,
) -> str:
    """``"; LAP's lead: +3.61 [-1.20, +8.13] points"`` (own minus other, shown ``scale`` times)
    when one of the best and the next (one method each) is a paired reference
    (``results["paired"]``, ``key``: ``"iou_topk"``, ``"faithfulness/drop"``) and the other is
    paired with it: whether the first place is more than the draw of the images."""
    if len(winners) != 1 or len(runners) != 1:
        return ""
    references = (run.get("paired") or {}).get("references") or {}
    for own, other, sign in ((winners[0], runners[0], 1), (runners[0], winners[0], -1)):
        entry = (references.get(own) or {}).get(key, {}).get(other)
        if not isinstance(entry, Mapping) or entry.get("difference") is None:
            continue
        word = "lead" if sign > 0 else "gap to the best"
        text = lead_text(entry, scale)
        return f"; {method_display_name(own, facts)}'s {word}, image by image: {text} points"
    return ""


def _headline_accuracy(
    run: Mapping[str, Any],
) -> tuple[str, float | None, float | None, bool] | None:
    """The model accuracy a glance shows (balanced for a binary task, else top-1, else plain):
    its key, value, chance level and whether it is not above chance; ``None`` without one."""
    model = section(run, "model")
    key = next((k for k in ("balanced_accuracy", "top1_accuracy", "accuracy") if k in model), None)
    if key is None:
        return None
    value, chance = metric_value(model[key]), model_chance(run, key)
    return key, value, chance, chance is not None and at_chance(value, chance, model[key].get("n"))


def glance_numbers(run: Mapping[str, Any]) -> list[GlanceNumber]:
    """The three numbers of one run: the model's accuracy (balanced accuracy for a binary
    task, else top-1), the best localization (IoU by top-scored selection, else by
    thresholding) and the best faithfulness (lowest Drop %), each with the runner-up."""
    model, headline = section(run, "model"), _headline_accuracy(run)
    if headline is None:
        accuracy = GlanceNumber("Model accuracy", "-", "not computed")
    else:
        key, value, chance, low = headline
        names = {"balanced_accuracy": "balanced", "top1_accuracy": "top-1", "accuracy": "plain"}
        n = model[key].get("n", "?")
        detail = f"{names[key]}, n = {'n/a' if n is None else n}"
        if "top5_accuracy" in model and metric_value(model["top5_accuracy"]) is not None:
            detail += f"; top-5: {_percent(metric_value(model['top5_accuracy']))}"  # type: ignore[arg-type]
        if low:
            detail += f"; {CHANCE_MARK} not above chance ({_percent(chance)})"  # type: ignore[arg-type]
        shown = "n/a" if value is None else _percent(value)
        accuracy = GlanceNumber("Model accuracy", shown, detail, warn=low)
    localization = _best_method_number(
        run,
        "localization",
        (
            ("iou_topk", "IoU with the regions, top-scored selection"),
            ("iou_threshold", "IoU with the regions, thresholding"),
        ),
        higher=True,
        scale=100.0,
        label="Best localization",
    )
    faithfulness = _best_method_number(
        run,
        "faithfulness",
        (("drop", "Drop %: confidence lost keeping only the map's pixels (lower is better)"),),
        higher=False,
        scale=1.0,
        label="Best faithfulness",
    )
    return [accuracy, localization, faithfulness]


def glance_warnings(name: str, run: Mapping[str, Any]) -> list[str]:
    """Warnings a reader must see first: methods whose maps are flat, a model whose accuracy
    is not above chance."""
    warnings = []
    facts = method_facts([run])
    for method, why in flat_maps(run).items():
        warnings.append(
            f"{name}: {method_display_name(method, facts)}: {why}. A flat map ranks no pixel above "
            "another: its localization and faithfulness numbers say nothing about the model (an "
            "untrained or collapsed model gives such maps)."
        )
    headline = _headline_accuracy(run)
    if headline is not None and headline[3]:
        key, value, chance, _ = headline
        warnings.append(
            f"{name}: the model's accuracy ({_percent(value)}, {key.replace('_', ' ')}) "  # type: ignore[arg-type]
            f"is not above chance ({_percent(chance)}): its maps may explain guesses."  # type: ignore[arg-type]
        )
    return warnings


def glance_figure(
    entries: list[tuple[Path, str, bytes]], runs: Mapping[str, Mapping[str, Any]]
) -> int | None:
    """Index of the one figure: LAP's overlays, else the overlays of the method localizing
    best, else any overlays, the IoU bars, the keep-k% curves, the first figure."""
    stems = [path.stem for path, _, _ in entries]
    wanted = ["overlays_lap"]
    for run in runs.values():
        order = ranked(section(run, "localization"), "iou_topk", True, 100.0)
        wanted += [f"overlays_{method}" for _, methods in order for method in methods]
    for stem in [*wanted, "overlays", "iou_bars", "keep_k"]:
        match = next((i for i, s in enumerate(stems) if s == stem or s.startswith(stem)), None)
        if match is not None:
            return match
    return 0 if entries else None


def revision_warnings(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A warning when the runs' results were computed under different metric definitions
    (``protocol.metrics_revision``): their numbers are then not comparable side by side."""
    revisions: dict[str, list[str]] = {}
    for name, run in runs.items():
        revision = section(run, "protocol").get("metrics_revision")
        revisions.setdefault("unrecorded" if revision is None else str(revision), []).append(name)
    if len(revisions) < 2:
        return []
    listed = "; ".join(f"revision {r}: {', '.join(names)}" for r, names in revisions.items())
    return [
        f"These results were computed under different metric definitions ({listed}): numbers "
        "of different revisions are not comparable; evaluate the older runs again."
    ]
