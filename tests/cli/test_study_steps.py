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


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"cannot be read \(Expecting value"),
        (b'{"format": "torchlap-comparison", "ru', r"cannot be read \(Unterminated string"),
        (b"\xff\xfe{}", r"cannot be read \('utf-8' codec can't decode"),
        (b'{"format": "torchlap-comparison", "runs": {"a": Infinity}}', r"Infinity is not a JSON"),
        (b'"torchlap-comparison"', r"holds a str; expected a JSON object with \"format\""),
        (b'{"format": "torchlap-results", "runs": {}}', r"has the format 'torchlap-results'"),
        (b'{"format": "torchlap-comparison"}', r": 'runs' is None; expected"),
        (b'{"format": "torchlap-comparison", "runs": "all"}', r": 'runs' is 'all'; expected"),
    ],
    ids=[
        "empty",
        "truncated",
        "not UTF-8",
        "Infinity",
        "a string",
        "other format",
        "no runs",
        "runs text",
    ],
)
def test_read_output_names_a_damaged_file(steps, tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "comparison.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as caught:
        steps.read_output(path, "torchlap-comparison", ("runs",))
    assert str(caught.value).startswith(str(path))
    assert "as torchlap writes it (in a study: remove the step's output folder" in str(caught.value)


def test_read_output_names_a_missing_file_and_a_folder(steps, tmp_path: Path) -> None:
    for path in (tmp_path / "nowhere.json", tmp_path):
        with pytest.raises(ValueError, match=r"cannot be read \(\[Errno"):
            steps.read_output(path)


def test_read_output_returns_what_it_accepts(steps, tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text('{"test": null, "selected_epoch": {"global_epoch": 2}}')
    record = steps.read_output(path, optional=("test", "selected_epoch"))
    assert record == {"test": None, "selected_epoch": {"global_epoch": 2}}


@pytest.mark.parametrize("script", ["peer_table", "dataset_tables"])
def test_the_table_scripts_name_a_damaged_comparison(
    steps, tmp_path: Path, script: str, capsys
) -> None:
    """peer_table printed a JSONDecodeError (or AttributeError for a list) traceback;
    dataset_tables a JSONDecodeError or KeyError."""
    module = importlib.import_module(script)
    if script == "peer_table":
        path = tmp_path / "comparison.json"
        path.write_text("[]")
        assert module.main([str(path)]) == 1
        error = capsys.readouterr().err
        assert f"{path} is not a torchlap comparison.json: {path} holds a list" in error
        return
    good = {"format": "torchlap-comparison", "runs": {}}
    for folder in module.COMPARES:
        (tmp_path / "lesions" / folder).mkdir(parents=True)
        (tmp_path / "lesions" / folder / "comparison.json").write_text(json.dumps(good))
    assert module.merged(tmp_path, "lesions") == {"runs": {}}
    damaged = tmp_path / "lesions" / list(module.COMPARES)[-1] / "comparison.json"
    damaged.write_text('{"format": "torchlap-comparison"}')
    with pytest.raises(ValueError, match=r": 'runs' is None; expected") as caught:
        module.merged(tmp_path, "lesions")
    assert str(caught.value).startswith(str(damaged))


@pytest.mark.parametrize("script", ["dataset_tables", "resolution_study"])
def test_the_scripts_name_a_foreign_study_file_in_one_line(
    steps, script: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A study.json the study did not write: argparse's one error line and exit 2 (it was a
    traceback and exit 1), the file as it was."""
    (tmp_path / "study.json").write_text('{"a": 1}')
    main = importlib.import_module(script).main
    with pytest.raises(SystemExit) as ended:
        main(["--out", str(tmp_path), "--table-only"])
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert "study.json was not written by a torchlap study" in err and "Traceback" not in err
    assert (tmp_path / "study.json").read_text() == '{"a": 1}'
