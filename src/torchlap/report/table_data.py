"""Tables as data (:class:`Table`: columns with groups, rows of cells with a bold flag), how a
metric becomes a cell (bold best, ties, chance and flat-map marks) and the chance levels.

:mod:`torchlap.report.tables` builds the paper's tables from results dicts with these pieces;
Markdown is :meth:`Table.to_markdown`, HTML :mod:`torchlap.report.html`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torchlap.report._common import MISSING, UNDEFINED, format_number, metric_value, section

__all__ = [
    "CHANCE_MARK",
    "FLAT_MARK",
    "Cell",
    "Column",
    "Row",
    "Table",
    "at_chance",
    "escape_markdown",
    "flat_maps",
    "model_chance",
    "region_chance",
    "split_by_group",
]

_TOPK_ACCURACY = re.compile(r"top(\d+)_accuracy")


# ------------------------------------------------------------------------------ data model


@dataclass(frozen=True)
class Cell:
    """One rendered table value; ``note`` is a tooltip (sample counts) for HTML; ``tied``:
    shares the best value of its comparison group with others (not bold); ``mark``: symbols
    shown after the value (:data:`CHANCE_MARK`, :data:`FLAT_MARK`)."""

    text: str
    bold: bool = False
    note: str = ""
    tied: bool = False
    mark: str = ""

    @property
    def shown(self) -> str:
        """The text with its marks, as both renderings show it."""
        return f"{self.text}{self.mark}"


@dataclass(frozen=True)
class Column:
    """A value column; ``group`` is the spanning header above it (e.g. "Thresholding");
    ``numeric`` columns are right-aligned, text columns left-aligned."""

    label: str
    group: str = ""
    numeric: bool = True


@dataclass(frozen=True)
class Row:
    """``labels`` fill the stub columns (run, or run and method); ``cells`` the columns."""

    labels: tuple[str, ...]
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Table:
    """A table as data: ``stub`` names the label columns, ``columns`` the value columns."""

    id: str
    title: str
    caption: str
    stub: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()
    split_groups: bool = False  # HTML: one table per column group (e.g. per binarization)

    def __post_init__(self) -> None:
        """A row with another number of labels than ``stub`` or of cells than ``columns`` is
        refused here, naming it, rather than cut short or failing in a renderer."""
        for index, row in enumerate(self.rows):
            for kind, have, expected in (
                ("label", row.labels, ("stub column", len(self.stub))),
                ("cell", row.cells, ("column", len(self.columns))),
            ):
                if len(have) != expected[1]:
                    raise ValueError(
                        f"table {self.id!r}: row {index} ({', '.join(map(str, row.labels))}) has "
                        f"{len(have)} {kind}(s) for the table's {expected[1]} {expected[0]}(s); "
                        f"give every row one {kind} per {expected[0]}"
                    )

    @property
    def has_values(self) -> bool:
        """True when at least one cell holds something other than ``-``."""
        return any(cell.text != MISSING for row in self.rows for cell in row.cells)

    def header_labels(self) -> list[str]:
        """Flat column headers: stub labels, then ``"group: label"`` per value column."""
        flat = [f"{c.group}: {c.label}" if c.group else c.label for c in self.columns]
        return list(self.stub) + flat

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown: a bold title and caption line, the table, the notes.

        Markdown has no spanning headers, so a column's group prefixes its label.
        """
        lines = [f"**{escape_markdown(self.title)}.** {escape_markdown(self.caption)}", ""]
        lines.append("| " + " | ".join(escape_markdown(h) for h in self.header_labels()) + " |")
        align = [":---"] * len(self.stub) + ["---:" if c.numeric else ":---" for c in self.columns]
        lines.append("|" + "|".join(align) + "|")
        for row in self.rows:
            cells = [escape_markdown(label) for label in row.labels]
            cells += [
                f"**{escape_markdown(c.shown)}**" if c.bold else escape_markdown(c.shown)
                for c in row.cells
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.extend(["", *(f"{escape_markdown(note)}  " for note in self.notes)])
        return "\n".join(lines).rstrip() + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "-", text.lower()).strip("-") or "group"


def split_by_group(table: Table) -> list[Table]:
    """``table`` as one table per run of columns sharing a group (e.g. Table II by
    binarization), each with the stub columns and all rows; titles name the group
    (``"Table II (Thresholding)"``), ids get its slug, the caption stays on the first part and
    the notes go under the last. A table with fewer than two groups is returned as is."""
    spans: list[tuple[str, int, int]] = []
    for index, column in enumerate(table.columns):
        if spans and spans[-1][0] == column.group:
            spans[-1] = (column.group, spans[-1][1], index + 1)
        else:
            spans.append((column.group, index, index + 1))
    if len(spans) < 2:
        return [table]
    parts = []
    for number, (group, start, stop) in enumerate(spans):
        columns = tuple(Column(c.label, "", c.numeric) for c in table.columns[start:stop])
        rows = tuple(Row(row.labels, row.cells[start:stop]) for row in table.rows)
        name = group or "other"
        parts.append(
            Table(
                f"{table.id}-{_slug(name)}",
                f"{table.title} ({name})",
                table.caption if number == 0 else "",
                table.stub,
                columns,
                rows,
                table.notes if number == len(spans) - 1 else (),
            )
        )
    return parts


_MD_SPECIAL = re.compile(r"([\\|*`])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def escape_markdown(text: str) -> str:
    """Escape Markdown: pipes (cell breaks), emphasis markers, code ticks, raw HTML."""
    escaped = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)
    return escaped.replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


# --------------------------------------------------------------------------- value cells


@dataclass(frozen=True)
class _Entry:
    """A metric dict (``None`` when absent) and how to show it."""

    metric: Mapping[str, Any] | None
    scale: float = 100.0  # 100: fraction shown as %; 1: shown as stored
    decimals: int = 2
    chance: float | None = None  # chance level of the metric (as a fraction), when known
    flat: str = ""  # why the map is flat ("4 of 4 maps flat"), when it is

    @property
    def shown(self) -> float | None:
        value = metric_value(self.metric)
        return None if value is None else round(value * self.scale, self.decimals)

    @property
    def higher_is_better(self) -> bool:
        return bool(self.metric.get("higher_is_better", True)) if self.metric else True

    def text(self) -> str:
        if self.metric is None:
            return MISSING
        shown = self.shown
        return UNDEFINED if shown is None else format_number(shown, self.decimals)

    def note(self) -> str:
        if self.metric is None:
            return "not computed"
        n, excluded = self.metric.get("n"), self.metric.get("n_excluded")
        parts = []
        if n is not None:
            parts.append(f"n = {n}")
        if excluded:
            parts.append(f"{excluded} excluded")
        interval = self.metric.get("interval")
        if isinstance(interval, (list, tuple)) and len(interval) == 2:
            low, high = (format_number(bound * self.scale, self.decimals) for bound in interval)
            parts.append(f"bootstrap interval [{low}, {high}]")
        if self.shown is None:
            reason = self.metric.get("reason")
            parts.append(f"undefined: {reason}" if reason else "undefined: no usable sample")
        if self.at_chance:
            parts.append(f"not above chance ({100 * self.chance:.2f}%)")  # type: ignore[operator]
        if self.flat:
            parts.append(self.flat)
        return ", ".join(parts)

    @property
    def at_chance(self) -> bool:
        if self.chance is None or self.metric is None:
            return False
        return at_chance(metric_value(self.metric), self.chance, self.metric.get("n"))

    def mark(self) -> str:
        return (CHANCE_MARK if self.at_chance else "") + (FLAT_MARK if self.flat else "")


CHANCE_MARK = "†"
FLAT_MARK = "‡"
_CHANCE_Z = 1.6449  # one-sided 5% normal quantile


def at_chance(value: float | None, chance: float, n: object) -> bool:
    """True when a mean ``value`` of ``n`` per-sample scores in [0, 1] is not above the
    ``chance`` level: ``value <= chance + 1.645 * sqrt(chance * (1 - chance) / n)``, a one-sided
    5% test (a [0, 1] variable with mean ``chance`` has variance at most
    ``chance * (1 - chance)``, so the test is conservative). False when anything is unknown."""
    if value is None or isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        return False
    if not 0.0 < chance < 1.0:
        return False
    return value <= chance + _CHANCE_Z * math.sqrt(chance * (1.0 - chance) / n)


def _plain(value: float | None, decimals: int, higher_is_better: bool) -> _Entry:
    """An entry for a bare number (timing), shown with ``decimals``."""
    if value is None:
        return _Entry(None, 1.0, decimals)
    return _Entry({"value": value, "higher_is_better": higher_is_better}, 1.0, decimals)


def _best_positions(entries: Sequence[_Entry]) -> list[int]:
    """Indices holding the best shown value of a comparison group (several on a tie); empty
    when fewer than 2 values are defined."""
    defined = [(i, e.shown) for i, e in enumerate(entries) if e.shown is not None]
    if len(defined) < 2:
        return []
    directions = {entries[i].higher_is_better for i, _ in defined}
    higher = directions.pop() if len(directions) == 1 else True
    values = [v for _, v in defined]
    best = max(values) if higher else min(values)
    return [i for i, value in defined if value == best]


Position = tuple[int, int]


Tie = tuple[list[Position], bool]  # positions tied for the best; whether all values are


def _cells(
    grid: list[list[_Entry]], groups: Iterable[list[Position]]
) -> tuple[list[list[Cell]], list[Tie]]:
    """Render a grid of entries; each group (a list of (row, column) positions) gets its
    unique best value in bold. Returns the cells and the groups' ties for the best (the
    positions, flagged ``tied`` and bolded nowhere, and whether every defined value of the
    group is in the tie)."""
    bold = [[False] * len(row) for row in grid]
    tied = [[False] * len(row) for row in grid]
    ties = []
    for group in groups:
        entries = [grid[r][c] for r, c in group]
        best = [group[i] for i in _best_positions(entries)]
        if len(best) == 1:
            bold[best[0][0]][best[0][1]] = True
        elif best:
            all_equal = len(best) == sum(entry.shown is not None for entry in entries)
            ties.append((best, all_equal))
            for r, c in best:
                tied[r][c] = not all_equal  # all equal: no best to point at
    cells = [
        [
            Cell(entry.text(), bold[r][c], entry.note(), tied[r][c], entry.mark())
            for c, entry in enumerate(row)
        ]
        for r, row in enumerate(grid)
    ]
    return cells, ties


def _column_groups(grid: list[list[_Entry]], rows: Sequence[int]) -> list[list[tuple[int, int]]]:
    """One comparison group per column over ``rows``."""
    n_columns = len(grid[0]) if grid else 0
    return [[(r, c) for r in rows] for c in range(n_columns)]


def _run_blocks(labels: Sequence[tuple[str, ...]]) -> list[list[int]]:
    """Row indices grouped by run (first stub label), in order."""
    blocks: dict[str, list[int]] = {}
    for i, row_labels in enumerate(labels):
        blocks.setdefault(row_labels[0], []).append(i)
    return list(blocks.values())


def _common_prefix(parts: list[tuple[str, ...]]) -> tuple[str, ...]:
    prefix: tuple[str, ...] = ()
    for items in zip(*parts, strict=False):
        if len(set(items)) != 1:
            break
        prefix += (items[0],)
    return prefix


def _tie_note(
    ties: list[Tie],
    labels: list[tuple[str, ...]],
    columns: list[Column],
    cells: list[list[Cell]],
) -> str | None:
    """One note naming every tie for the best (``context: A = B (value)``) and, shorter,
    every group whose values are all equal (``context (value)``)."""
    if not ties:
        return None
    described, equal = [], []
    for tie, all_equal in ties:
        keys = [
            (*labels[r], *((columns[c].group,) if columns[c].group else ()), columns[c].label)
            for r, c in tie
        ]
        if len({c for _, c in tie}) == 1:  # a column group: the rows differ
            column = columns[tie[0][1]]
            heading = f"{column.group}: {column.label}" if column.group else column.label
            rows = [labels[r] for r, _ in tie]
            context = _common_prefix(rows)
            names = [" / ".join(row[len(context) :]) for row in rows]
            where = ", ".join((*context, heading))
        else:
            context = _common_prefix(keys)
            names = [" / ".join(key[len(context) :]) for key in keys]
            where = ", ".join(context)
        value = cells[tie[0][0]][tie[0][1]].text
        if all_equal:
            equal.append(f"{where} ({value})" if where else value)
        else:
            described.append(f"{where}: {' = '.join(names)} ({value})" if where else value)
    notes = []
    if described:
        notes.append("Tied for the best, so not bold: " + "; ".join(described) + ".")
    if equal:
        notes.append("All values equal, so nothing bold: " + "; ".join(equal) + ".")
    return " ".join(notes)


def _table(
    table_id: str,
    title: str,
    caption: str,
    stub: tuple[str, ...],
    columns: list[Column],
    labels: list[tuple[str, ...]],
    cells: list[list[Cell]],
    notes: Iterable[str] = (),
    ties: Sequence[Tie] = (),
    *,
    split_groups: bool = False,
) -> Table:
    rows = tuple(Row(lab, tuple(c)) for lab, c in zip(labels, cells, strict=True))
    notes = list(notes)
    tie_note = _tie_note(list(ties), labels, columns, cells)
    if tie_note:
        notes.insert(max(len(notes) - 1, 0), tie_note)  # before the legend line
    marks = {cell.mark for row in rows for cell in row.cells}
    if any(CHANCE_MARK in mark for mark in marks):
        notes.append(_CHANCE_NOTE)
    if any(FLAT_MARK in mark for mark in marks):
        notes.append(_FLAT_NOTE)
    return Table(table_id, title, caption, stub, tuple(columns), rows, tuple(notes), split_groups)


_LEGEND = "'-': not computed; 'n/a': undefined (no usable sample)."
#: Table II's two binarizations (results key, column group), also the paired leads' groups
_IOU_GROUPS = (("iou_threshold", "Thresholding"), ("iou_topk", "Top-Scored Selection"))
_CHANCE_NOTE = (
    f"{CHANCE_MARK} not above chance: value ≤ chance + 1.645·√(chance·(1 − chance)/n), a "
    "one-sided 5% test (chance: the majority class's share of the test images for accuracy "
    "and LAP predictivity, 1/classes for balanced accuracy, the k most frequent classes' "
    "share for top-k accuracy, the region's share of the image, over the images holding a "
    "region, for EBPG and the pointing game)."
)
_FLAT_NOTE = (
    f"{FLAT_MARK} the method's maps are flat (constant within the tolerance) on some images: "
    "a flat map ranks no pixel above another, so these numbers say nothing about the model."
)


# -------------------------------------------------------------------- chance and flat maps


def _n(metric: Mapping[str, Any] | None) -> int | None:
    n = metric.get("n") if isinstance(metric, Mapping) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def _num_classes(run: Mapping[str, Any]) -> int | None:
    """``results["data"]["n_classes"]``; 2 for a binary task's metrics when it is absent."""
    data = section(run, "data")
    n = data.get("n_classes") if isinstance(data, Mapping) else None
    if isinstance(n, int) and not isinstance(n, bool) and n >= 2:
        return n
    model = section(run, "model")
    return 2 if "sensitivity" in model or "specificity" in model else None


def _label_counts(run: Mapping[str, Any]) -> list[int] | None:
    """``results["data"]["label_counts"]`` (test images per class index, written since
    metrics revision 7) when it is a list of ints >= 0 with a positive sum, else ``None``."""
    counts = section(run, "data").get("label_counts")
    if not isinstance(counts, list) or not counts:
        return None
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
        return None
    return counts if sum(counts) > 0 else None


def _top_share(counts: list[int], k: int) -> float:
    """The share of the test images in the ``k`` most frequent classes."""
    return sum(sorted(counts, reverse=True)[:k]) / sum(counts)


def _label_chance(run: Mapping[str, Any]) -> float | None:
    """Chance of an accuracy-type score (top-1 accuracy, LAP predictivity): the majority
    class's share of the test images (``results["data"]["label_counts"]``, a constant
    predictor of that class scores it). Older results.json without the counts keep the old
    rule: the majority share for a binary task with sensitivity/specificity sample counts,
    else 1/classes."""
    counts = _label_counts(run)
    if counts is not None:
        return _top_share(counts, 1)
    model = section(run, "model")
    positives, negatives = _n(model.get("sensitivity")), _n(model.get("specificity"))
    if positives and negatives:
        return max(positives, negatives) / (positives + negatives)
    num_classes = _num_classes(run)
    return None if num_classes is None else 1.0 / num_classes


def model_chance(run: Mapping[str, Any], key: str) -> float | None:
    """Chance level of a model metric of ``results["model"]`` (``None``: none or unknown)."""
    num_classes = _num_classes(run)
    if key in ("accuracy", "top1_accuracy"):
        return _label_chance(run)
    if key == "balanced_accuracy":
        return None if num_classes is None else 1.0 / num_classes
    match = _TOPK_ACCURACY.fullmatch(key)
    counts = _label_counts(run)
    if match and counts is not None:  # the k most frequent classes' share
        return _top_share(counts, int(match.group(1)))
    if match and num_classes is not None:  # older results.json without label_counts
        return min(int(match.group(1)), num_classes) / num_classes
    return None


def region_chance(run: Mapping[str, Any]) -> float | None:
    """EBPG of a constant map and pointing-game hit rate of a random point: the mean share
    of the image covered by the region (``results["data"]["region_fraction"]``)."""
    fraction = section(run, "data").get("region_fraction")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        return None
    return float(fraction) if 0.0 < fraction < 1.0 else None


def flat_maps(run: Mapping[str, Any]) -> dict[str, str]:
    """Methods whose maps are flat on some images -> ``"k of n maps flat"`` (from
    ``results["maps"][method] = {"n", "n_flat", "tolerance"}``)."""
    flat = {}
    for method, entry in section(run, "maps").items():
        if not isinstance(entry, Mapping):
            continue
        n, n_flat = entry.get("n"), entry.get("n_flat")
        if isinstance(n_flat, int) and isinstance(n, int) and n_flat > 0:
            tolerance = entry.get("tolerance")
            numeric = isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool)
            within = f", constant within {tolerance:g}" if numeric else ""
            flat[method] = f"{n_flat} of {n} maps flat{within}"
    return flat
