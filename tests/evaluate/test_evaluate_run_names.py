"""compare's run names: a link's own name, as its refusal of a clashing name advises."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torchlap.evaluate.compare import run_names


def test_a_link_under_another_name_gives_the_run_that_name(tmp_path: Path) -> None:
    (tmp_path / "report.html").mkdir()  # a run folder named as a file compare writes
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="rename the run folder, or link it under another name"):
        run_names([tmp_path / "a", tmp_path / "report.html"])
    os.symlink(tmp_path / "report.html", tmp_path / "b")
    # before: the link was resolved, and its target's name refused again
    assert run_names([tmp_path / "a", tmp_path / "b"]) == ["a", "b"]


def test_dots_and_relative_paths_still_name_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "runs" / "a").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "runs" / "a")
    assert run_names(["."]) == ["a"]
    assert run_names(["../a/"]) == ["a"]
    with pytest.raises(ValueError, match="distinct names"):
        run_names([".", "../a"])
