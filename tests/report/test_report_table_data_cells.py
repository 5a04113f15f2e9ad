"""How a metric becomes a table cell, against hand-written expected cells and notes: the text,
the tooltip, the chance and flat-map marks, the bold best of a comparison group (higher or
lower is better, on the shown rounding), ties and groups whose values are all equal."""

from __future__ import annotations

import math

from torchlap.report.table_data import (
    CHANCE_MARK,
    FLAT_MARK,
    Cell,
    Column,
    _cells,
    _column_groups,
    _Entry,
    _plain,
    _table,
    at_chance,
)


def _m(value: float | None, **kw: object) -> dict:
    return {"value": value, **kw}


# --------------------------------------------------------------------------- one entry
def test_entry_text_tooltip_and_marks_by_hand() -> None:
    entry = _Entry(
        _m(0.5, n=40, n_excluded=2, interval=[0.4, 0.6125]), chance=0.5, flat="3 of 4 maps flat"
    )
    assert entry.text() == "50.00"
    assert entry.note() == (
        "n = 40, 2 excluded, bootstrap interval [40.00, 61.25], not above chance (50.00%), "
        "3 of 4 maps flat"
    )
    assert entry.mark() == CHANCE_MARK + FLAT_MARK
    above = _Entry(_m(0.9, n=40, n_excluded=0), chance=0.5)  # 0.9 > 0.5 + 1.645 * 0.079
    assert above.note() == "n = 40" and above.mark() == ""
    assert _Entry(_m(0.5, n=40), chance=None).mark() == ""
    assert _Entry(_m(0.5, interval=[0.1])).note() == ""  # not a pair: no interval shown


def test_missing_and_undefined_entries_by_hand() -> None:
    missing = _Entry(None, chance=0.5)
    assert (missing.text(), missing.note(), missing.mark()) == ("-", "not computed", "")
    undefined = _Entry(_m(None, n=0, reason="no region in any image"))
    assert undefined.text() == "n/a"
    assert undefined.note() == "n = 0, undefined: no region in any image"
    assert _Entry(_m(float("nan"))).note() == "undefined: no usable sample"
    assert _Entry(_m(float("nan")), chance=0.5, flat="1 of 2 maps flat").mark() == FLAT_MARK


def test_plain_numbers_are_shown_as_stored() -> None:
    assert _plain(1.23456, 3, higher_is_better=False).text() == "1.235"
    assert _plain(None, 3, higher_is_better=False).text() == "-"
    assert _Entry(_m(0.123456), scale=1.0, decimals=4).text() == "0.1235"


# ------------------------------------------------------------------------- bold and ties
def _render(grid: list[list[_Entry]]) -> list[list[tuple[str, bool, bool]]]:
    cells, _ = _cells(grid, _column_groups(grid, range(len(grid))))
    return [[(c.text, c.bold, c.tied) for c in row] for row in cells]


def test_bold_best_ties_and_all_equal_columns_by_hand() -> None:
    """Columns: higher is better with a tie for the best; lower is better; all equal;
    one defined value only; values that differ only below the shown rounding."""
    lower = {"higher_is_better": False}
    grid = [
        [_Entry(_m(0.5)), _Entry(_m(0.3, **lower)), _Entry(_m(0.4)), _Entry(_m(0.2)),
         _Entry(_m(0.12341))],
        [_Entry(_m(0.7)), _Entry(_m(0.2, **lower)), _Entry(_m(0.4)), _Entry(_m(None)),
         _Entry(_m(0.12344))],
        [_Entry(_m(0.7)), _Entry(_m(None, **lower)), _Entry(_m(0.4)), _Entry(None),
         _Entry(_m(0.1))],
    ]  # fmt: skip
    assert _render(grid) == [
        [("50.00", False, False), ("30.00", False, False), ("40.00", False, False),
         ("20.00", False, False), ("12.34", False, True)],
        [("70.00", False, True), ("20.00", True, False), ("40.00", False, False),
         ("n/a", False, False), ("12.34", False, True)],
        [("70.00", False, True), ("n/a", False, False), ("40.00", False, False),
         ("-", False, False), ("10.00", False, False)],
    ]  # fmt: skip


def test_a_group_of_mixed_directions_counts_higher_as_better() -> None:
    grid = [[_Entry(_m(0.2, higher_is_better=False))], [_Entry(_m(0.6))]]
    assert _render(grid) == [[("20.00", False, False)], [("60.00", True, False)]]
    lower = [[_Entry(_m(0.2, higher_is_better=False))], [_Entry(_m(0.6, higher_is_better=0))]]
    assert _render(lower) == [[("20.00", True, False)], [("60.00", False, False)]]


def test_the_table_notes_name_ties_and_equal_groups_and_the_marks() -> None:
    """Rows A, B, C; a grouped column with B and C tied at 70.00; an equal column (40.00) with
    a chance mark; a flat mark: the tie note goes before the legend, the mark notes after."""
    columns = [Column("IoU", "Thresholding"), Column("Acc")]
    labels = [("A",), ("B",), ("C",)]
    grid = [
        [_Entry(_m(0.5)), _Entry(_m(0.4, n=10), chance=0.5)],
        [_Entry(_m(0.7), flat="1 of 2 maps flat"), _Entry(_m(0.4))],
        [_Entry(_m(0.7)), _Entry(_m(0.4))],
    ]
    cells, ties = _cells(grid, _column_groups(grid, range(3)))
    table = _table("t", "T", "cap", ("Run",), columns, labels, cells, ["legend"], ties)
    assert table.notes[0] == (
        "Tied for the best, so not bold: Thresholding: IoU: B = C (70.00). "
        "All values equal, so nothing bold: Acc (40.00)."
    )
    assert table.notes[1] == "legend"
    assert table.notes[2].startswith(f"{CHANCE_MARK} not above chance")
    assert table.notes[3].startswith(f"{FLAT_MARK} the method's maps are flat")
    assert len(table.notes) == 4
    assert table.rows[0].cells[1] == Cell("40.00", False, "n = 10, not above chance (50.00%)",
                                          False, CHANCE_MARK)  # fmt: skip
    assert table.rows[1].cells[0].shown == "70.00" + FLAT_MARK


def test_a_tie_across_columns_is_named_by_its_columns() -> None:
    """One group over a row's two columns (a run's methods side by side)."""
    columns = [Column("LAP", "IoU"), Column("RISE", "IoU")]
    grid = [[_Entry(_m(0.3)), _Entry(_m(0.3))], [_Entry(_m(0.1)), _Entry(_m(0.2))]]
    cells, ties = _cells(grid, [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0), (1, 0)]])
    assert [[(c.bold, c.tied) for c in row] for row in cells] == [
        [(True, False), (False, False)],
        [(False, False), (True, False)],
    ]
    cells, ties = _cells(grid, [[(0, 0), (0, 1)], [(0, 0), (1, 1), (0, 1)]])
    table = _table("t", "T", "c", ("Run",), columns, [("r1",), ("r2",)], cells, [], ties)
    assert table.notes == (
        "Tied for the best, so not bold: r1, IoU: LAP = RISE (30.00). "
        "All values equal, so nothing bold: r1, IoU (30.00).",
    )


def test_at_chance_at_its_boundaries_by_hand() -> None:
    """value <= chance + 1.645 * sqrt(chance * (1 - chance) / n); one image is a sample
    (n = 1: 0.5 + 1.645 * 0.5 = 1.32 > 1); a chance level of 0 or 1 is degenerate: False."""
    assert at_chance(1.0, 0.5, 1) is True
    assert at_chance(0.5, 0.5, 0) is False
    assert at_chance(0.0, 0.0, 10) is False
    assert at_chance(1.0, 1.0, 10) is False
    bound = 0.2 + 1.6449 * math.sqrt(0.2 * 0.8 / 25)  # 0.33159...
    assert at_chance(bound - 1e-4, 0.2, 25) is True and at_chance(bound + 1e-4, 0.2, 25) is False


def test_a_tie_across_a_grouped_and_an_ungrouped_column() -> None:
    columns = [Column("A", "G"), Column("B")]
    grid = [[_Entry(_m(0.3)), _Entry(_m(0.3)), _Entry(_m(0.1))]]
    cells, ties = _cells(grid, [[(0, 0), (0, 1), (0, 2)]])
    columns.append(Column("C"))
    table = _table("t", "T", "c", ("Run",), columns, [("r1",)], cells, [], ties)
    assert table.notes == ("Tied for the best, so not bold: r1: G / A = B (30.00).",)
