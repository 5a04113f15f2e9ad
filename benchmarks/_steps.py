"""Resumable benchmark steps shared by the study scripts: each step is one ``torchlap`` command
in its own process, skipped when its output exists, its wall time kept in ``OUT/study.json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def torchlap_command() -> list[str]:
    """``python -m torchlap.cli`` with this interpreter (the venv running the script)."""
    return [sys.executable, "-m", "torchlap.cli"]


def load_state(out: Path) -> dict:
    """``OUT/study.json`` (wall time per finished step), or an empty state."""
    path = out / "study.json"
    return json.loads(path.read_text()) if path.is_file() else {"steps": {}}


def save_state(out: Path, state: dict) -> None:
    """Write ``OUT/study.json`` atomically (temp file, then rename)."""
    path = out / "study.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def run_step(out: Path, state: dict, key: str, command: list[str], done: Path) -> None:
    """Run ``command`` unless ``done`` exists; record its wall time, date and torchlap arguments
    under ``key``."""
    if done.exists():
        return
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
