"""The run folder's names, format and errors, and :func:`read_run_config` (its config.json,
checked to be a torchlap run of a format this code reads)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torchlap.io import not_a_file, read_file

__all__ = [
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "LAST_CHECKPOINT",
    "METRICS_FILE",
    "RUN_FILES",
    "RUN_FORMAT",
    "RUN_FORMAT_VERSION",
    "WEIGHTS_FILE",
    "RunError",
    "RunFileNotFoundError",
    "RunFolderError",
    "is_run_config",
    "read_run_config",
]

RUN_FORMAT = "torchlap-run"
RUN_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, CHECKPOINTS_DIR)


class RunError(ValueError):
    """A run folder that cannot be used: not a run, unfinished, damaged or from newer code."""


class RunFolderError(RunError):
    """The output folder cannot take this run (it holds another run, or nothing to resume)."""


class RunFileNotFoundError(RunError, FileNotFoundError):
    """A file of a run folder is missing (not a run folder, or the run has not finished);
    both a :class:`RunError` and a ``FileNotFoundError``."""


def is_run_config(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a ``config.json`` written by torchlap train; a file there that
    torchlap may not read raises the ``PermissionError`` of :func:`~torchlap.io.read_file`
    naming it (it may be a run's: "no" would skip a run's checks)."""
    try:
        data = json.loads(read_file(path, "the run's config.json"))
    except PermissionError:
        raise
    except (OSError, ValueError, RecursionError):  # (nested deeper than json parses: damaged)
        return False
    return isinstance(data, dict) and data.get("format") == RUN_FORMAT


def read_run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``run_dir/config.json``, checked to be a torchlap run of a format this code reads."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if run_dir.is_file():
        raise RunError(
            f"{run_dir} is a file; a run is the folder `torchlap train` wrote (pass "
            f"{run_dir.parent if run_dir.name == CONFIG_FILE else 'its folder'})"
        )
    if not run_dir.is_dir():
        raise RunFileNotFoundError(
            f"run folder {run_dir} does not exist; pass a folder written by `torchlap train`"
        )
    if not path.is_file():
        if odd := not_a_file(path):  # a folder, a dangling link, a link loop: not "missing"
            raise RunError(f"{path} is {odd}; torchlap train writes it as a file: restore it")
        raise RunFileNotFoundError(
            f"{run_dir} is not a torchlap run folder: no {CONFIG_FILE} in it; pass a folder "
            "written by `torchlap train`"
        )
    content = read_file(path, "the run's config.json")  # (an unreadable one named, exit 2)
    try:
        data = json.loads(content.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:  # (too deep)
        raise RunError(f"{path} is not valid JSON ({error}); it is damaged") from None
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
        raise RunError(
            f"{path} was not written by torchlap train (its format is not {RUN_FORMAT!r}); "
            "pass a folder written by `torchlap train`"
        )
    version = data.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise RunError(f"{path}: format_version is {version!r}, not an integer")
    if version > RUN_FORMAT_VERSION:
        raise RunError(
            f"{path} has format_version {version}, newer than this torchlap reads "
            f"({RUN_FORMAT_VERSION}); upgrade torchlap to load it"
        )
    if version < 1:
        raise RunError(
            f"{path}: format_version is {version}, which no torchlap wrote (known: "
            f"{', '.join(map(str, range(1, RUN_FORMAT_VERSION + 1)))}); was config.json edited?"
        )
    return data


def present_weights(folder: Path, missing: str) -> Path:
    """``folder``'s weights file; :class:`RunError` when that name is something other than a
    file (a folder, a dangling link), :class:`RunFileNotFoundError` with ``missing`` (what the
    caller says a folder without weights is) when it is absent."""
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        if odd := not_a_file(weights):
            raise RunError(f"{weights} is {odd}; torchlap train writes a file: restore it")
        raise RunFileNotFoundError(missing)
    return weights
