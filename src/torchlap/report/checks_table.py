"""The sanity-check and grid-pointing-game table of each run, as Markdown (no matplotlib: the
tables of ``tables.md`` need it without the plotting stack; report/sanity.py draws the figures)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchlap.report._common import format_number, method_display_name, method_facts, order_methods
from torchlap.report.table_data import escape_markdown

__all__ = ["checks_markdown"]


def _number(value: Any, decimals: int = 3) -> str:
    return "n/a" if value is None else format_number(value, decimals)


def _threshold(value: Any) -> str:
    """A verdict's threshold: ``n/a`` when missing or not finite (None)."""
    return "n/a" if value is None else f"{value:g}"


def _count(value: Any) -> str:
    """A sample count: ``n/a`` when missing or not finite (None), else as given."""
    return "n/a" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def verdict(passed: object, *numbers: object) -> str:
    """``pass``/``FAIL`` as recorded, ``n/a`` when it is not (None) or when a number it rests
    on (the measured value, the threshold) is missing or was not finite (read as None)."""
    if passed is None or any(number is None for number in numbers):
        return "n/a"
    return "pass" if passed else "FAIL"


def _sanity_cell(entry: Mapping[str, Any]) -> str:
    """The sanity verdict with its threshold (``-`` without a sanity entry)."""
    if not entry:
        return "-"
    summary = entry.get("summary") or {}
    threshold = entry.get("threshold")
    shown = verdict(entry.get("passed"), summary.get("spearman_abs"), threshold)
    return shown if threshold is None else f"{shown} (< {_threshold(threshold)})"


def _rows(run: Mapping[str, Any]) -> list[dict[str, str]]:
    sanity = run.get("sanity") or {}
    game = run.get("grid_pointing_game") or {}
    rows = []
    facts = method_facts([run])
    for method in order_methods([*sanity, *game], facts):
        entry = sanity.get(method) or {}
        summary = entry.get("summary") or {}
        g = game.get(method) or {}
        dist = g.get("distribution") or {}
        rows.append(
            {
                "Method": method_display_name(method, facts),
                "Spearman |map| at full randomization": _number(summary.get("spearman_abs")),
                "SSIM": _number(summary.get("ssim")),
                "Sanity": _sanity_cell(entry),
                "Grid PG mean": _number(g.get("mean")),
                "Grid PG median [q25, q75]": "-"
                if not g
                else (
                    f"{_number(dist.get('median'))} [{_number(dist.get('q25'))}, "
                    f"{_number(dist.get('q75'))}]"
                ),
                "n (grid PG)": "-" if "n" not in g else _count(g["n"]),
            }
        )
    return rows


def checks_markdown(results_by_run: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown tables (one per run) of the sanity summary and the grid pointing game."""
    parts = []
    for name, run in results_by_run.items():
        rows = _rows(run)
        if not rows:
            continue
        header = list(rows[0])
        # escaped: a header holds "|map|", which would end its cell
        parts.append(
            f"**{escape_markdown(name)}**\n\n| "
            + " | ".join(escape_markdown(h) for h in header)
            + " |\n|"
            + "---|" * len(header)
        )
        parts += ["| " + " | ".join(escape_markdown(row[h]) for h in header) + " |" for row in rows]
        parts.append("")
    return "\n".join(parts)
