"""Whose a torchlap output folder is: the record an evaluation (``results.json``) or a
comparison (``comparison.json``) leaves in it says which job wrote the folder's report.html,
tables.md and figures, and :func:`~torchlap.evaluate.common.guard_output_folder` lets a job
replace them without ``--force`` only when that record is its own: ``torchlap evaluate``'s a
``results.json`` of the same run, ``torchlap compare``'s (and the demo's) a ``comparison.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torchlap.io import read_file

__all__ = ["COMPARISON", "OWN_FORMATS", "describe_owner", "job_records", "read_record"]

#: the records torchlap evaluate and compare leave in their folders, and their format marks
OWN_FORMATS = {"results.json": "torchlap-results", "comparison.json": "torchlap-comparison"}
#: the owner of a comparison's folder (``torchlap compare``, the demo); an evaluation's owner
#: is the run folder it evaluates
COMPARISON = "comparison"

Owner = str | os.PathLike[str] | None


def read_record(path: Path, locked: list[PermissionError]) -> dict[str, Any] | None:
    """``path`` (a ``results.json`` or ``comparison.json``) as torchlap wrote it (a JSON object
    with its format mark), else ``None``; a file torchlap may not read adds its error to
    ``locked`` (it cannot tell whose it is)."""
    try:
        record = json.loads(read_file(path, f"{path.name} to tell whether it wrote it"))
    except PermissionError as error:
        locked.append(error)
        return None
    except (OSError, ValueError, RecursionError):  # (nested deeper than json parses)
        return None
    if isinstance(record, dict) and record.get("format") == OWN_FORMATS[path.name]:
        return record
    return None


def job_records(
    out: Path, owner: Owner, locked: list[PermissionError]
) -> tuple[bool, list[tuple[Path, str]]]:
    """Whether a torchlap record in ``out`` is ``owner``'s (``None``: any record is, for a
    caller that does not say whose outputs it writes), and the records of other jobs, each
    with what it is (``results.json, torchlap's evaluation of run a (/runs/a)``)."""
    own, others = False, []
    for name in OWN_FORMATS:
        path = out / name
        record = read_record(path, locked) if path.is_file() else None
        if record is None:
            continue
        if owner is None or _is_owner(out, name, record, owner):
            own = True
        else:
            others.append((path, _describe_record(name, record)))
    return own, others


def describe_owner(owner: Owner) -> str:
    """The job that writes a folder of ``owner``, for a message."""
    if owner is None or str(owner) == COMPARISON:
        return "a comparison"
    run = Path(owner)
    return f"the evaluation of run {run.resolve().name} ({run})"


def _is_owner(out: Path, name: str, record: dict[str, Any], owner: Owner) -> bool:
    if str(owner) == COMPARISON:
        return name == "comparison.json"
    return name == "results.json" and _same_run(out, record, Path(owner))  # type: ignore[arg-type]


def _same_run(out: Path, record: dict[str, Any], run_dir: Path) -> bool:
    """Whether the evaluation ``record`` is of the run ``run_dir``: its resolved path recorded
    (``run.path``; before it was recorded, ``run.run_dir`` as it was given, read from the
    current folder), or ``out`` inside that run folder (its default ``RUN/eval-SPLIT``, which
    moves with the run)."""
    mine = run_dir.resolve()
    if out.resolve().parent == mine:
        return True
    run = record.get("run")
    recorded = (run.get("path") or run.get("run_dir")) if isinstance(run, dict) else None
    try:
        return isinstance(recorded, str) and bool(recorded) and Path(recorded).resolve() == mine
    except (OSError, ValueError, RuntimeError):  # (a NUL byte, a link loop)
        return False


def _describe_record(name: str, record: dict[str, Any]) -> str:
    """``results.json, torchlap's evaluation of run a (/runs/a)`` or ``comparison.json,
    torchlap's comparison of a, b``."""
    if name == "results.json":
        run = record.get("run") if isinstance(record.get("run"), dict) else {}
        where = run.get("path") or run.get("run_dir")
        if not where:
            return f"{name}, torchlap's evaluation of a run it does not name"
        return f"{name}, torchlap's evaluation of run {run.get('name')} ({where})"
    runs = record.get("runs") if isinstance(record.get("runs"), dict) else {}
    return f"{name}, torchlap's comparison of {', '.join(map(str, runs)) or 'no run'}"
