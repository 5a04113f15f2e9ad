"""What torchlap writes when a write fails half-way or the output folder holds entries of the
wrong kind: no half-written output, no temp file, nobody's folder replaced, and no count of
files that were not written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import snapshot, temp_files
from torchlap.cli import app
from torchlap.evaluate.common import guard_output_folder

runner = CliRunner()

_EVALUATE = ["--methods", "gradcam", "--max-images", "4", "--max-val-images", "4",
             "--stability-images", "2"]  # fmt: skip


def _make(out: Path, entry: str, kind: str) -> None:
    """A user's ``entry`` in ``out``: a file, or a folder holding a file."""
    path = out / entry
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        path.write_text("mine\n")
    else:
        path.mkdir()
        (path / "notes.txt").write_text("mine\n")


_ODD = [
    ("figures", "file"),
    ("methods", "file"),
    ("tables.md", "folder"),
    ("report.html", "folder"),
    ("results.json", "folder"),
    ("evaluate.log", "folder"),
    ("figures/keep_k.png", "folder"),
    ("methods/gradcam.json", "folder"),
]


@pytest.mark.parametrize("ours", [False, True], ids=["user folder", "torchlap's folder"])
@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize(("entry", "kind"), _ODD)
def test_an_output_entry_of_the_wrong_kind_is_refused_force_or_not(
    tmp_path: Path, entry: str, kind: str, force: bool, ours: bool
) -> None:
    """Before: with --force (and without it, in a folder whose results.json is torchlap's) the
    guard let a ``figures`` file or a ``tables.md`` folder pass, logged it as replaced, and the
    write failed after every method was computed (``[Errno 17] File exists``, ``[Errno 21] Is
    a directory``)."""
    out = tmp_path / "out"
    out.mkdir()
    if ours and entry != "results.json":
        (out / "results.json").write_text(json.dumps({"format": "torchlap-results"}))
    _make(out, entry, kind)
    before = snapshot(out)
    with pytest.raises(FileExistsError, match=rf"holds {entry}, which torchlap did not write: "
                       rf"{entry} is (a folder|not a folder).*--force or not"):  # fmt: skip
        guard_output_folder(out, force)
    assert snapshot(out) == before and (out / entry).is_dir() == (kind == "folder")


def test_entries_of_the_right_kind_still_pass(tmp_path: Path) -> None:
    """A user's folder inside figures/ under a name torchlap writes no figure to is the
    ordinary case (refused without --force, left in place with it), and so is a dangling link
    at a file name (removed under --force only for a log, as before)."""
    out = tmp_path / "out"
    (out / "figures" / "drafts").mkdir(parents=True)
    (out / "results.json").write_text(json.dumps({"format": "torchlap-results"}))
    with pytest.raises(FileExistsError, match=r"holds drafts, which torchlap did not write; "):
        guard_output_folder(out, False)
    assert guard_output_folder(out, True) == [out / "figures" / "drafts"]
    assert (out / "figures" / "drafts").is_dir()
    (out / "tables.md").symlink_to(tmp_path / "nowhere.md")
    assert guard_output_folder(out, True) == [out / "figures" / "drafts"]


def test_evaluate_force_refuses_a_folder_in_place_of_its_report_before_any_work(
    tiny_run: Path, tmp_path: Path
) -> None:
    """End to end: ``--force`` with a folder named report.html in --out exits 2 before any
    method runs; nothing is written into --out (before: results.json, tables.md, the figures
    and every method's cache were written, then ``Is a directory``)."""
    out = tmp_path / "out"
    _make(out, "report.html", "folder")
    before = snapshot(out)
    result = runner.invoke(
        app, ["evaluate", "--run", str(tiny_run), "--out", str(out), *_EVALUATE, "--force"]
    )
    assert result.exit_code == 2, result.output
    assert "report.html is a folder" in result.stderr
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["report.html"]
    assert temp_files(out) == []
