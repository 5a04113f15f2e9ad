"""The shape of the code, checked: the layering contract, file and function sizes, imports at top.

* ``lint-imports`` (import-linter) keeps the contracts of ``[tool.importlinter]`` in
  pyproject.toml: layers/data/metrics/report import nothing of torchlap above them, models does
  not import train/evaluate/explainers, explainers does not import train/report, no import cycle.
* No file under src/ above 600 lines, no function above 80 lines, except the entries of
  ``SIZE_EXCEPTIONS`` (each says why splitting would hurt).
* An import of a torchlap module inside a function hides a dependency from the reader: allowed
  only with a comment on the same line or the line above saying why (a measured CLI start-up
  cost, an optional extra, a cycle that cannot be cut).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "torchlap"
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80

#: "path relative to src/torchlap" (a file) or "path:function" -> why it is not split.
#: Keep it short: every entry is a file or function a newcomer reads in one piece.
SIZE_EXCEPTIONS: dict[str, str] = {}


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [
        node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def test_import_contracts_hold():
    """``lint-imports`` (installed by the dev extra next to this Python) keeps every contract."""
    executable = Path(sys.executable).with_name("lint-imports")
    if not executable.exists():
        pytest.fail(
            f"{executable} does not exist: install the dev extra (pip install -e '.[dev]'), "
            "which brings import-linter"
        )
    result = subprocess.run(
        [str(executable), "--no-cache", "--no-logo", str(REPO / "pyproject.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            "the import contracts of pyproject.toml are broken:\n" + result.stdout + result.stderr,
            pytrace=False,
        )


def test_files_and_functions_are_short():
    offenders = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        name = _relative(path)
        lines = len(text.splitlines())
        if lines > MAX_FILE_LINES and name not in SIZE_EXCEPTIONS:
            offenders.append(f"{name}: {lines} lines (at most {MAX_FILE_LINES})")
        for node in _functions(ast.parse(text)):
            length = node.end_lineno - node.lineno + 1
            key = f"{name}:{node.name}"
            if length > MAX_FUNCTION_LINES and key not in SIZE_EXCEPTIONS:
                offenders.append(f"{key} (line {node.lineno}): {length} lines")
    if offenders:
        pytest.fail(
            "split these (or add them to SIZE_EXCEPTIONS with the reason splitting would hurt):\n"
            + "\n".join(offenders),
            pytrace=False,
        )


def test_size_exceptions_are_still_needed():
    """An allow-list entry whose file or function has shrunk (or gone) is removed."""
    sizes: dict[str, int] = {}
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        sizes[_relative(path)] = len(text.splitlines())
        for node in _functions(ast.parse(text)):
            key = f"{_relative(path)}:{node.name}"
            sizes[key] = max(sizes.get(key, 0), node.end_lineno - node.lineno + 1)
    stale = [
        key
        for key in SIZE_EXCEPTIONS
        if sizes.get(key, 0) <= (MAX_FUNCTION_LINES if ":" in key else MAX_FILE_LINES)
    ]
    assert not stale, f"remove these SIZE_EXCEPTIONS entries, they fit now: {stale}"


def _imports_torchlap(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "torchlap" for alias in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "torchlap"
    return False


def _has_comment(lines: list[str], node: ast.stmt) -> bool:
    """A ``#`` comment on the import's first line or alone on the line above it."""
    same = lines[node.lineno - 1]
    above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
    return "#" in same or above.startswith("#")


def inner_imports_without_reason(text: str) -> list[int]:
    """Line numbers of torchlap imports inside functions with no comment saying why."""
    lines = text.splitlines()
    found = set()
    for function in _functions(ast.parse(text)):
        for node in ast.walk(function):
            if _imports_torchlap(node) and not _has_comment(lines, node):
                found.add(node.lineno)
    return sorted(found)


def test_torchlap_imports_are_at_module_top():
    offenders = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        offenders += [
            f"{_relative(path)}:{line}: {lines[line - 1].strip()}"
            for line in inner_imports_without_reason(text)
        ]
    if offenders:
        pytest.fail(
            "move these imports to the top of their module, or comment why they must stay "
            "inside the function (measured CLI start-up cost, an optional extra):\n"
            + "\n".join(offenders),
            pytrace=False,
        )


def test_inner_import_check_catches_what_it_should():
    """The checker itself: an uncommented inner import is caught, a commented one passes, a
    third-party inner import is not its business."""
    source = (
        "def f():\n"
        "    from torchlap.data import folder\n"
        "def g():\n"
        "    # pydicom is an optional extra\n"
        "    from torchlap.data import dicom\n"
        "def h():\n"
        "    import numpy\n"
        "def k():\n"
        "    import torchlap.runs  # cycle: runs imports this module\n"
        "def m():\n"
        "    from . import sibling\n"
    )
    assert inner_imports_without_reason(source) == [2, 11]
