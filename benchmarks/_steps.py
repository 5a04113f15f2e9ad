"""Resumable benchmark steps shared by the study scripts: each step is one ``torchlap`` command
in its own process, skipped when its output exists, its wall time kept in ``OUT/study.json``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from torchlap.io import atomic_write_json

#: the ``format`` of ``OUT/study.json`` (a file without it is the study's only when it holds
#: nothing but ``{"steps": {step: {...}}}``, as studies wrote it before the mark)
STUDY_FORMAT = "torchlap-study"


def torchlap_command() -> list[str]:
    """``python -m torchlap.cli`` with this interpreter (the venv running the script)."""
    return [sys.executable, "-m", "torchlap.cli"]


def load_state(out: Path) -> dict:
    """``OUT/study.json`` (wall time per finished step), or an empty state. A file of that
    name that a study did not write is refused (ValueError naming it): the study would
    replace it."""
    path = out / "study.json"
    if not path.exists() and not path.is_symlink():
        return {"format": STUDY_FORMAT, "steps": {}}
    refused = ValueError(
        f'{path} was not written by a torchlap study (expected {{"format": '
        f'"{STUDY_FORMAT}", "steps": {{...}}}}); the study records its steps there and '
        "would replace it: move the file, or pass another --out"
    )
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        raise refused from None
    if not _is_study_state(state):
        raise refused
    return {**state, "format": STUDY_FORMAT}


def _is_study_state(state: object) -> bool:
    """Whether ``state`` is what :func:`save_state` writes (or wrote before the mark)."""
    if not isinstance(state, dict) or not isinstance(state.get("steps"), dict):
        return False
    if not all(isinstance(step, dict) for step in state["steps"].values()):
        return False
    return state.get("format") == STUDY_FORMAT or set(state) == {"steps"}


def read_output(
    path: Path,
    format: str | None = None,
    keys: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
) -> dict:
    """A JSON file a step's torchlap command wrote (``comparison.json``, a run's
    ``metrics.json``), as a dict: with ``format``, its ``"format"`` must be that; each of
    ``keys`` must hold a dict, each of ``optional`` a dict or null (or be absent). Anything
    else (not UTF-8 JSON, NaN/Infinity, another type, a missing key) raises a ValueError
    naming the file, what is wrong and what is accepted, instead of a JSONDecodeError or
    KeyError in the middle of a table."""

    def constant(name: str) -> None:
        raise ValueError(f"{name} is not a JSON number")

    expected = f'a JSON object with "format": "{format}"' if format else "a JSON object"
    if keys or optional:
        named = [f'"{key}": {{...}}' for key in keys]
        named += [f'"{key}": {{...}} or null' for key in optional]
        expected += " with " + ", ".join(named)
    advice = (
        f"expected {expected}, as torchlap writes it (in a study: remove the step's output "
        "folder to run the step again)"
    )
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=constant)
    except (OSError, ValueError) as error:  # (UnicodeDecodeError, JSONDecodeError too)
        raise ValueError(f"{path} cannot be read ({error}); {advice}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}; {advice}")
    if format is not None and data.get("format") != format:
        raise ValueError(f"{path} has the format {data.get('format')!r}; {advice}")
    wrong = [key for key in keys if not isinstance(data.get(key), dict)]
    wrong += [key for key in optional if not isinstance(data.get(key), (dict, type(None)))]
    if wrong:
        raise ValueError(f"{path}: {wrong[0]!r} is {repr(data.get(wrong[0]))[:80]}; {advice}")
    return data


def save_state(out: Path, state: dict) -> None:
    """Write ``OUT/study.json`` through torchlap's atomic writer (a temp file in ``OUT``,
    fsync, rename; the temp file removed if the write fails)."""
    atomic_write_json(out / "study.json", {**state, "format": STUDY_FORMAT})


def run_step(out: Path, state: dict, key: str, command: list[str], done: Path) -> None:
    """Run ``command`` unless ``done`` exists; record its wall time, date and torchlap arguments
    under ``key``."""
    if done.exists():
        return
    load_state(out)  # a study.json the study did not write: refused before the step runs
    print(f"[study] {key}: {' '.join(command[3:])}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    entry = {
        "seconds": round(time.perf_counter() - started, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M", time.localtime()),
        # the torchlap arguments, so a table can say how a step ran (image count, epochs)
        "arguments": command[3:],
    }
    # re-read before writing: parts of a study may run at the same time in other processes
    # (the rename is atomic; two steps finishing in the same instant could still race)
    state.update(load_state(out))
    state["steps"][key] = entry
    save_state(out, state)
