"""The integrity record of a run folder: ``config.json``'s ``integrity`` holds the SHA-256 of
``model.safetensors`` and of every resume checkpoint (and the previous digest, so a process
killed between recording and renaming the new file still finds the old file valid)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from torchlap.io import atomic_write_json, sha256_file
from torchlap.runs._folder import CONFIG_FILE, RunError, read_run_config

__all__ = [
    "check_integrity",
    "check_recorded_digest",
    "checked_integrity_record",
    "record_integrity",
]


def _relative(run_dir: Path, path: Path) -> str:
    """``path``'s name in the integrity record: relative to ``run_dir``, symlinks followed;
    :class:`RunError` when it leads out of the run folder."""
    resolved, folder = Path(path).resolve(), Path(run_dir).resolve()
    if not resolved.is_relative_to(folder):
        raise RunError(
            f"{path} must be a file inside the run folder {run_dir}, but it leads to "
            f"{resolved} (a symlink leading out of the run folder is refused): copy the file "
            "into the run folder"
        )
    return resolved.relative_to(folder).as_posix()


#: what ``config.json``'s ``integrity`` holds (in the messages refusing another one)
_INTEGRITY_FORMAT = (
    'a dict of file name (relative to the run folder) -> {"sha256": hex digest, "previous": '
    "hex digest or null}"
)


def checked_integrity_record(config_path: Path, record: Any) -> dict[str, dict[str, Any]]:
    """``config.json``'s ``integrity`` (``None``: an empty record), checked to be
    :data:`_INTEGRITY_FORMAT`; :class:`RunError` naming the bad entry otherwise."""
    if record is None:
        return {}
    if not isinstance(record, dict):
        raise RunError(
            f"{config_path}: 'integrity' must be {_INTEGRITY_FORMAT}, got {record!r} (was "
            "config.json edited?)"
        )
    for name, entry in record.items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not isinstance(entry.get("previous"), (str, type(None)))
        ):
            raise RunError(
                f"{config_path}: 'integrity' entry {name!r} is {entry!r}; 'integrity' must be "
                f"{_INTEGRITY_FORMAT} (was config.json edited?)"
            )
    return record


def record_integrity(
    run_dir: str | os.PathLike[str], path: str | os.PathLike[str], digest: str | None = None
) -> None:
    """Record ``path``'s SHA-256 in ``run_dir/config.json``'s ``integrity`` (keeping the
    previous digest as ``previous``, so a process killed between recording and renaming the
    new file still finds the old file valid)."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    config = read_run_config(run_dir)
    digest = digest or sha256_file(path)
    key = _relative(run_dir, Path(path))
    integrity = dict(checked_integrity_record(config_path, config.get("integrity")))
    old = integrity.get(key) or {}
    integrity[key] = {"sha256": digest, "previous": old.get("sha256")}
    config["integrity"] = integrity
    atomic_write_json(config_path, config)


def check_integrity(run_dir: str | os.PathLike[str], path: str | os.PathLike[str]) -> str | None:
    """Raise :class:`RunError` naming ``path`` when its SHA-256 is not the one ``config.json``
    recorded; return the SHA-256 checked. Runs written before integrity was recorded (no
    ``integrity`` key) pass unchecked (``None``).

    ``integrity`` must be a dict of file name (relative to the run folder) -> ``{"sha256":
    str, "previous": str or null}`` (or null), and ``path`` a file inside the run folder (not
    a symlink leading out of it); :class:`RunError` otherwise."""
    return check_recorded_digest(run_dir, read_run_config(run_dir), path)


def check_recorded_digest(
    run_dir: str | os.PathLike[str],
    config: dict[str, Any],
    path: str | os.PathLike[str],
    content: bytes | None = None,
) -> str | None:
    """:func:`check_integrity` against ``config``, ``run_dir``'s ``config.json`` already read
    (:func:`~torchlap.runs.load_run` reads it once). ``content``: ``path``'s bytes as the
    caller read them (what is checked is then what the caller uses, not a second read of the
    file, which may have been swapped in between); ``None``: the file is read here. Returns
    the SHA-256 checked (``None`` for a run without an ``integrity`` record)."""
    run_dir = Path(run_dir)
    if "integrity" not in config:
        return None
    record = checked_integrity_record(run_dir / CONFIG_FILE, config["integrity"])
    key = _relative(run_dir, Path(path))
    entry = record.get(key)
    if entry is None:
        raise RunError(
            f"{path}: config.json records no SHA-256 for this file, so the run did not finish "
            "writing it; resume the run with --resume (or train it again)"
        )
    actual = sha256_file(path) if content is None else hashlib.sha256(content).hexdigest()
    if actual not in {entry.get("sha256"), entry.get("previous")} - {None}:
        raise RunError(
            f"{path} is damaged or was changed: its SHA-256 is {actual[:16]}..., config.json "
            f"records {str(entry.get('sha256'))[:16]}...; restore the file or train the run again"
        )
    return actual
