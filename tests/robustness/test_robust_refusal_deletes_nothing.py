"""A refused command deletes nothing: ``--force``/``--overwrite`` remove a user's log only once
every check of the command passed.

Before: ``evaluate --force`` and ``compare --force`` removed a user's evaluate.log/compare.log
in ``--out`` before the run folder or the data were read, so a bad ``--run`` left the user's log
deleted and nothing evaluated; ``demo --overwrite`` removed a user's demo.log before the run
folders under ``out/runs`` were checked.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

import torchlap.demo as demo
from conftest import snapshot
from torchlap.cli import app

runner = CliRunner()

_EVALUATE = ["--methods", "gradcam", "--max-images", "4", "--max-val-images", "4",
             "--stability-images", "2"]  # fmt: skip
_NOTES = "my own notes\n"


def _user_folder(out: Path, log: str) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    (out / log).write_text(_NOTES)
    (out / "report.html").write_text("my report\n")
    return snapshot(out)


def _not_a_run(tmp_path: Path) -> Path:
    folder = tmp_path / "not_a_run"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    return folder


@pytest.mark.parametrize("bad", ["run", "data"])
def test_a_refused_evaluate_force_deletes_nothing(tiny_run: Path, tmp_path: Path, bad: str):
    out = tmp_path / "out"
    before = _user_folder(out, "evaluate.log")
    run = _not_a_run(tmp_path) if bad == "run" else tiny_run
    extra = ["--data", str(tmp_path / "no_such_data")] if bad == "data" else []
    args = ["evaluate", "--run", str(run), "--out", str(out), *_EVALUATE, *extra, "--force"]
    result = runner.invoke(app, args)
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert snapshot(out) == before  # the user's log and report, as they were
    assert not (out / "results.json").exists()


def test_a_refused_compare_force_deletes_nothing(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "out"
    before = _user_folder(out, "compare.log")
    args = ["compare", str(tiny_run), str(_not_a_run(tmp_path)), "--out", str(out), *_EVALUATE]
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code != 0, result.output
    assert snapshot(out) == before


def test_evaluate_force_that_runs_replaces_the_users_log(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "out"
    _user_folder(out, "evaluate.log")
    args = ["evaluate", "--run", str(tiny_run), "--out", str(out), *_EVALUATE, "--force"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    log = (out / "evaluate.log").read_text()
    assert _NOTES not in log and "evaluate.log" in log  # the replacement is in the new log
    assert (out / "results.json").is_file()


def test_a_refused_demo_overwrite_deletes_nothing(tmp_path: Path, monkeypatch) -> None:
    """A folder of someone else's files under out/runs is refused before any run trains."""
    out = tmp_path / "out"
    before = _user_folder(out, "demo.log")
    (out / "runs" / "vanilla").mkdir(parents=True)
    (out / "runs" / "vanilla" / "thesis.tex").write_text("mine")
    before = snapshot(out)
    monkeypatch.setattr(demo, "fit", lambda config: pytest.fail("the demo trained"))
    result = runner.invoke(app, ["demo", "--out", str(out), "--overwrite"])
    assert result.exit_code != 0, result.output
    assert "holds no torchlap run" in " ".join(result.output.split())
    assert snapshot(out) == before


def test_a_demo_overwrite_that_runs_replaces_the_users_log(tmp_path: Path, monkeypatch) -> None:
    import torchlap.demo_cli as demo_cli

    out = tmp_path / "out"
    _user_folder(out, "demo.log")

    def fake_demo(folder, settings, overwrite, suite, on_checked=None):
        logging.getLogger("torchlap.demo").info("the demo checked its input")
        if on_checked is not None:
            on_checked()
        logging.getLogger("torchlap.demo").info("the demo ran")
        return Path(folder) / "report.html"

    monkeypatch.setattr(demo_cli, "run_demo", fake_demo)
    result = runner.invoke(app, ["demo", "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    log = (out / "demo.log").read_text()
    assert _NOTES not in log and "the demo checked its input" in log and "the demo ran" in log
