"""The README's "What torchlap refuses" table says what torchlap really says.

Each row of that table names a class of bad input, an example, and what torchlap says, often
quoting the message in backticks. For the rows in ``readme_refusal_cases.all_cases()`` the
example is run on tiny inputs (a tiny run of the small CNN is trained once, ~7 s) and every
quoted fragment listed there must appear in the message the example really produces: the
fragment's text between ``...`` (which the README uses to shorten) is looked for piece by piece,
in order. A covered row whose message is edited to a wrong one, or a covered row that is
removed or renamed, fails here.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from readme_refusal_cases import all_cases

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## What torchlap refuses"
MIN_COVERED_ROWS = 60


def refusal_rows(text: str) -> dict[str, str]:
    """The refusal table of a README text: row key (first cell) -> third cell (what torchlap
    says)."""
    section = text.split(SECTION, 1)[1].split("\n#", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 3 and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[2]
    rows.pop("Class of bad input", None)
    return rows


def quoted(cell: str) -> list[str]:
    """The backticked fragments of a cell, in order."""
    return re.findall(r"`([^`]+)`", cell)


def says(fragment: str, message: str) -> bool:
    """Whether ``message`` holds the pieces of ``fragment`` between its ``...``, in order (the
    message's own backticks left out: a Markdown code span cannot hold them)."""
    message = message.replace("`", "")
    position = 0
    for piece in (p.strip() for p in fragment.split("...")):
        if not piece:
            continue
        found = message.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return True


CASES = all_cases()
COVERED = [(key, index) for key, triggers in CASES.items() for index, _ in triggers]


@functools.cache
def real_message(key: str, index: int) -> str:
    """The message the row's example gives, for its fragment ``index`` (run once)."""
    return dict(CASES[key])[index]()


@pytest.fixture(scope="module")
def rows() -> dict[str, str]:
    return refusal_rows(README.read_text(encoding="utf-8"))


def test_the_table_is_found_and_enough_rows_are_covered(rows: dict[str, str]) -> None:
    assert len(rows) > 200, "the refusal table was not found (or lost most of its rows)"
    assert len(CASES) >= MIN_COVERED_ROWS, len(CASES)


def test_every_covered_row_is_still_in_the_readme(rows: dict[str, str]) -> None:
    missing = sorted(set(CASES) - set(rows))
    assert not missing, f"covered rows missing from the README (renamed or removed): {missing}"


@pytest.mark.parametrize(("key", "index"), COVERED, ids=[f"{k}[{i}]" for k, i in COVERED])
def test_the_quoted_message_is_what_torchlap_says(
    rows: dict[str, str], key: str, index: int
) -> None:
    fragments = quoted(rows[key])
    assert index < len(fragments), f"row {key!r} quotes {len(fragments)} fragments: {fragments}"
    message = real_message(key, index)
    assert says(fragments[index], message), (
        f"README row {key!r} says `{fragments[index]}`, torchlap says: {message}"
    )


def _edited(fragment: str) -> str:
    """The fragment with one word changed, as a careless edit would leave it."""
    pieces = fragment.split("...")
    longest = max(range(len(pieces)), key=lambda i: len(pieces[i]))
    words = pieces[longest].split(" ")
    middle = max(range(len(words)), key=lambda i: len(words[i]))
    words[middle] = words[middle][::-1] + "x"
    pieces[longest] = " ".join(words)
    return "...".join(pieces)


def test_an_edited_message_fails_the_check(rows: dict[str, str]) -> None:
    # the check itself: each covered fragment, edited in a copy of the README, no longer passes
    text = README.read_text(encoding="utf-8")
    for key, index in COVERED[:: max(1, len(COVERED) // 25)]:
        fragment = quoted(rows[key])[index]
        row = next(line for line in text.splitlines() if line.startswith(f"| {key} |"))
        edited_row = row.replace(f"`{fragment}`", f"`{_edited(fragment)}`")
        edited_text = text.replace(row, edited_row)
        edited = quoted(refusal_rows(edited_text)[key])[index]
        assert edited != fragment
        assert not says(edited, real_message(key, index)), (key, index, edited)
    assert "Paths leaving the dataset" not in refusal_rows(
        "\n".join(line for line in text.splitlines() if "| Paths leaving the dataset |" not in line)
    )
