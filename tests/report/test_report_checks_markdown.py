"""tables.md's sanity-check table cell by cell: the verdict is the one recorded (pass/FAIL),
``n/a`` when the verdict or a number it rests on is missing; the grid pointing game's sample
count as recorded, ``n/a`` when missing, ``-`` without a game; one blank line after each run's
table."""

from __future__ import annotations

from typing import Any

from torchlap.report._common import method_display_name
from torchlap.report.checks_table import checks_markdown


def _sanity(passed: object, spearman: object, threshold: object = 0.5) -> dict[str, Any]:
    return {"threshold": threshold, "summary": {"spearman_abs": spearman, "ssim": 0.25},
            "passed": passed}  # fmt: skip


def _game(n: object) -> dict[str, Any]:
    return {"mean": 0.5, "n": n, "distribution": {"median": 0.5, "q25": 0.25, "q75": 0.75}}


def _cells(markdown: str) -> dict[str, list[str]]:
    """Each body row's cells by the row's first cell (the method)."""
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line]
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:]]
    return {row[0]: row[1:] for row in cells}


def test_the_verdict_is_the_recorded_one_or_na_when_it_rests_on_nothing() -> None:
    run = {
        "sanity": {
            "gradcam": _sanity(True, 0.1),
            "guided_backprop": _sanity(False, 0.9),
            "lap": _sanity(None, 0.1),  # no verdict recorded
            "rise": _sanity(True, None),  # the Spearman summary was not finite
            "score_cam": _sanity(False, 0.8, threshold=None),  # no threshold
        }
    }
    sanity = {row[0]: row[1] for row in _by_method(run).values()}  # "<" escaped for Markdown
    assert sanity == {
        "gradcam": "pass (&lt; 0.5)",
        "guided_backprop": "FAIL (&lt; 0.5)",
        "lap": "n/a (&lt; 0.5)",
        "rise": "n/a (&lt; 0.5)",
        "score_cam": "n/a",
    }


def _by_method(run: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Per method key (the display name's row): (key, Sanity cell, n (grid PG) cell)."""
    cells = _cells(checks_markdown({"r": run}))
    keys = {**run.get("sanity", {}), **run.get("grid_pointing_game", {})}
    rows = list(cells.values())
    assert len(rows) == len(keys)
    # the table orders methods by the report's order; match rows by their display name
    out = {}
    for key in keys:
        (row,) = [row for name, row in cells.items() if _names(key, name)]
        out[key] = (key, row[2], row[-1])
    return out


def _names(key: str, name: str) -> bool:
    return method_display_name(key) == name


def test_the_grid_games_sample_count_is_shown_as_recorded() -> None:
    run = {
        "sanity": {"lap": _sanity(True, 0.1)},
        "grid_pointing_game": {"gradcam": _game(8), "rise": _game(None), "lap": _game(8.0)},
    }
    counts = {key: n for key, _, n in _by_method(run).values()}
    # a method without a game shows "-"; a count that was not finite (None) shows n/a
    assert counts == {"gradcam": "8", "rise": "n/a", "lap": "8"}
    run["grid_pointing_game"]["lap"] = {"mean": 0.5}  # no count recorded
    assert _by_method(run)["lap"][2] == "-"
    del run["grid_pointing_game"]["lap"]
    assert _by_method(run)["lap"][2] == "-"


def test_each_runs_table_ends_with_a_blank_line() -> None:
    run = {"sanity": {"gradcam": _sanity(True, 0.1)}}
    lines = checks_markdown({"a": run, "b": run}).splitlines()
    assert lines.count("**a**") == 1 and lines.count("**b**") == 1
    # a bold run name, a blank line, the header, the separator, one row, a blank line
    assert lines[lines.index("**b**") - 1] == ""
    assert lines[lines.index("**a**") + 1] == "" and lines[lines.index("**b**") + 1] == ""
    assert checks_markdown({"a": run}).endswith(" |\n")
