"""render_table on hand-built tables: the header spans, each cell's attributes and the notes,
checked against what the HTML table model says they must be (not against the renderer); a
table whose row does not fill its columns is refused when built."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from torchlap.report import render_table
from torchlap.report.tables import Cell, Column, Row, Table


class CellParser(HTMLParser):
    """Rows of (tag, attributes, text) for every th/td; the texts of the notes' <p>."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, dict[str, str], str]]] = []
        self.notes: list[str] = []
        self._cell: tuple[str, dict[str, str]] | None = None
        self._text: list[str] = []
        self._in_notes = False
        self._in_p = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell, self._text = (tag, attributes), []
        elif tag == "div" and attributes.get("class") == "notes":
            self._in_notes = True
        elif tag == "p" and self._in_notes:
            self._in_p, self._text = True, []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append((*self._cell, "".join(self._text)))
            self._cell = None
        elif tag == "p" and self._in_p:
            self.notes.append("".join(self._text))
            self._in_p = False

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def parse(html: str) -> CellParser:
    parser = CellParser()
    parser.feed(html)
    parser.close()
    return parser


def header_grid(rows: list[list[tuple[str, dict[str, str], str]]]) -> list[list[str]]:
    """The header rows laid out on a grid, one slot per (row, column), filling each cell's
    rowspan x colspan slots with its text (the HTML table model, written out as loops)."""
    header = [row for row in rows if row and all(tag == "th" for tag, _, _ in row)][:2]
    width = sum(int(attrs.get("colspan", "1")) for _, attrs, _ in header[0])
    grid: list[list[str | None]] = [[None] * width for _ in header]
    for r, row in enumerate(header):
        c = 0
        for _, attrs, text in row:
            while grid[r][c] is not None:  # a slot taken by a rowspan from above
                c += 1
            for dr in range(int(attrs.get("rowspan", "1"))):
                for dc in range(int(attrs.get("colspan", "1"))):
                    assert grid[r + dr][c + dc] is None, "overlapping header cells"
                    grid[r + dr][c + dc] = text
            c += int(attrs.get("colspan", "1"))
    assert all(slot is not None for row in grid for slot in row), f"holes in the header: {grid}"
    return grid  # type: ignore[return-value]


def test_ungrouped_columns_between_groups_span_both_header_rows() -> None:
    # columns: a lone column, a group of two, a lone column, a group of one
    columns = (
        Column("alone", ""),
        Column("b1", "G"),
        Column("b2", "G"),
        Column("mid", ""),
        Column("h1", "H"),
    )
    row = Row(("r",), tuple(Cell(str(i)) for i in range(len(columns))))
    table = Table("t", "T", "", ("Run",), columns, (row,))
    grid = header_grid(parse(render_table(table)).rows)
    # every column's slot: its group above (or its own label, spanning), its label below
    assert grid == [
        ["Run", "alone", "G", "G", "mid", "H"],
        ["Run", "alone", "b1", "b2", "mid", "h1"],
    ]


def test_cells_carry_label_note_tie_mark_and_alignment() -> None:
    columns = (Column("Acc.", "Model"), Column("folder", "", numeric=False), Column("x"))
    cells = (
        Cell("95.00", bold=True, note="n = 50", mark="°"),
        Cell("runs/a", note="", tied=False),
        Cell("40.00", note="n = 9", tied=True),
    )
    tied_alone = Cell("40.00", tied=True)
    rows = (Row(("r1",), cells), Row(("r2",), (Cell("-"), Cell("b"), tied_alone)))
    table = Table("t", "T", "", ("Run",), columns, rows, notes=("a <note>", "b"))
    parser = parse(render_table(table))
    body = [row[1:] for row in parser.rows if any(tag == "td" for tag, _, _ in row)]
    first = [attrs for _, attrs, _ in body[0]]
    assert [attrs["data-label"] for attrs in first] == ["Model · Acc.", "folder", "x"]
    assert first[0].get("title") == "n = 50" and "class" not in first[0]
    assert "title" not in first[1] and first[1]["class"] == "text"
    assert first[2]["title"] == "n = 9; tied for the best" and first[2]["class"] == "tied"
    assert body[1][2][1]["title"] == "tied for the best"
    assert [text for _, _, text in body[0]] == ["95.00°", "runs/a", "40.00"]
    assert parser.notes == ["a <note>", "b"]
    assert parse(render_table(table, notes=False)).notes == []


def test_long_labels_may_wrap_after_their_underscores() -> None:
    # more than 12 characters: a <wbr> after each underscore; 12 or fewer: none
    labels = ("a_b", "abcdef_ghijk", "abcdef_ghijkl", "top_1_vs_label")
    columns = tuple(Column(label) for label in labels)
    table = Table("t", "T", "", ("Run",), columns, (Row(("r",), tuple(Cell("1") for _ in labels)),))
    header = render_table(table).split("<thead>")[1].split("</thead>")[0]
    cells = header.split('<th scope="col">')[2:]
    assert [cell.split("</th>")[0] for cell in cells] == [
        "a_b",
        "abcdef_ghijk",
        "abcdef_<wbr>ghijkl",
        "top_<wbr>1_<wbr>vs_<wbr>label",
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (Row(("a",), (Cell("1"),)), "row 1 (a) has 1 cell(s) for the table's 2 column(s)"),
        (Row(("a",), (Cell("1"),) * 3), "row 1 (a) has 3 cell(s) for the table's 2 column(s)"),
        (Row((), (Cell("1"),) * 2), "row 1 () has 0 label(s) for the table's 1 stub column(s)"),
        (
            Row(("a", "b"), (Cell("1"),) * 2),
            "row 1 (a, b) has 2 label(s) for the table's 1 stub column(s)",
        ),
    ],
)
def test_a_table_with_a_row_of_another_width_is_refused_by_name(row: Row, message: str) -> None:
    columns = (Column("x"), Column("y"))
    whole = Row(("r",), (Cell("1"), Cell("2")))
    with pytest.raises(ValueError, match=re.escape(f"table 't': {message}")):
        Table("t", "T", "", ("Run",), columns, (whole, row))
