"""The Error line: one line, long values shortened to their start and their own length, the
errors Python words badly (a KeyError, a path too long) said plainly; and the exit code: 2 for
what the user fixes in the command or its files, 1 for a failure while working."""

from __future__ import annotations

import errno

from typer._click.exceptions import ClickException, UsageError

from torchlap.cli import error_line, exit_code


def test_a_long_quoted_value_is_shown_with_its_own_length() -> None:
    value = "x" * 5000
    line = error_line(ValueError(f"--out {value!r} is too long for a path"))
    # before: the quotes around the value were counted, "(5002 characters)"
    assert line == f"Error: --out '{'x' * 59}...(5000 characters) is too long for a path"


def test_a_long_bare_value_keeps_its_length_and_the_punctuation_after_it() -> None:
    line = error_line(ValueError(f"got {'y' * 300}; pass fewer"))
    assert line == f"Error: got {'y' * 60}...(300 characters); pass fewer"


def test_a_run_of_200_characters_is_shown_whole_and_one_of_201_cut() -> None:
    assert error_line(ValueError("a" * 200)) == "Error: " + "a" * 200
    assert error_line(ValueError("a" * 201)) == f"Error: {'a' * 60}...(201 characters)"


def test_the_line_is_one_line_and_names_what_python_leaves_unnamed() -> None:
    assert error_line(ValueError("bad\n  value\tthere")) == "Error: bad value there"
    assert error_line(RuntimeError()) == "Error: RuntimeError"  # no message: the type says what
    # a KeyError's own text is the bare quoted key
    assert error_line(KeyError("train")) == "Error: missing key 'train'"
    assert error_line(KeyError("a", "b")) == "Error: ('a', 'b')"  # not one key: as Python says it
    too_long = OSError(errno.ENAMETOOLONG, "File name too long", "x" * 30)
    assert error_line(too_long) == f"Error: a path is too long for the file system: '{'x' * 30}'"
    other = OSError(errno.EACCES, "Permission denied", "f")
    assert error_line(other) == "Error: [Errno 13] Permission denied: 'f'"


def test_usage_and_input_errors_exit_2_and_failures_1() -> None:
    assert exit_code(UsageError("bad option")) == 2
    assert exit_code(ClickException("failed")) == 1
    assert exit_code(OSError(errno.ENAMETOOLONG, "File name too long", "x")) == 2
    assert exit_code(OSError(errno.EIO, "I/O error", "x")) == 1
    for error in (ValueError(), TypeError(), KeyError("k"), FileNotFoundError(), PermissionError()):
        assert exit_code(error) == 2, error
    assert exit_code(RuntimeError("while working")) == 1
