"""``benchmarks/_steps.py``: ``OUT/study.json`` written atomically, and only if a study wrote it."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def steps():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("_steps")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_a_failed_write_keeps_the_old_state_and_leaves_no_temp(
    steps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps.save_state(tmp_path, {"steps": {"a": {"seconds": 1.0}}})
    before = (tmp_path / "study.json").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        steps.save_state(tmp_path, {"steps": {"b": {"seconds": 2.0}}})
    assert (tmp_path / "study.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["study.json"]  # no temp file left


def test_a_study_json_the_study_did_not_write_is_refused_and_kept(steps, tmp_path: Path) -> None:
    mine = tmp_path / "study.json"
    mine.write_text('{"participants": 12}')
    with pytest.raises(ValueError, match="was not written by a torchlap study") as error:
        steps.load_state(tmp_path)
    assert str(mine) in str(error.value)
    done = tmp_path / "done.txt"
    command = [sys.executable, "-c", f"open({str(done)!r}, 'w').write('x')"]
    with pytest.raises(ValueError, match=r"study\.json"):
        steps.run_step(tmp_path, {"steps": {}}, "a/step", command, done)
    assert mine.read_text() == '{"participants": 12}'
    assert not done.exists()  # refused before the step ran


def test_a_study_json_of_an_earlier_study_is_read_and_marked(steps, tmp_path: Path) -> None:
    (tmp_path / "study.json").write_text(json.dumps({"steps": {"a": {"seconds": 3.0}}}))
    state = steps.load_state(tmp_path)
    assert state["steps"] == {"a": {"seconds": 3.0}}
    steps.save_state(tmp_path, state)
    assert json.loads((tmp_path / "study.json").read_text())["format"] == "torchlap-study"
