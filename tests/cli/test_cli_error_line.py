"""The Error line's shortening of long values: the length it gives is the value's."""

from __future__ import annotations

from torchlap.cli import error_line


def test_a_long_quoted_value_is_shown_with_its_own_length() -> None:
    value = "x" * 5000
    line = error_line(ValueError(f"--out {value!r} is too long for a path"))
    # before: the quotes around the value were counted, "(5002 characters)"
    assert line == f"Error: --out '{'x' * 59}...(5000 characters) is too long for a path"


def test_a_long_bare_value_keeps_its_length_and_the_punctuation_after_it() -> None:
    line = error_line(ValueError(f"got {'y' * 300}; pass fewer"))
    assert line == f"Error: got {'y' * 60}...(300 characters); pass fewer"
