"""An output folder is an evaluation's or a comparison's own only by its own record: evaluate's
a ``results.json`` of the same run, compare's (and the demo's) a ``comparison.json``.

Before: any torchlap ``results.json`` or ``comparison.json`` vouched for the folder, so
``compare --out`` an evaluation's folder (or the reverse) replaced its report.html, tables.md
and figures without ``--force`` and left the other job's record describing them, and
``evaluate --run A --out`` a folder holding run B's evaluation silently replaced it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tiny_runs import tiny_lesions, tiny_run
from torchlap.cli import app
from torchlap.evaluate.common import (
    COMPARE_OUTPUTS,
    EVALUATE_OUTPUTS,
    clear_output_folder,
    guard_output_folder,
)
from torchlap.evaluate.output_owner import COMPARISON


def _results(run: Path, **run_record: str) -> str:
    record = run_record or {"name": run.name, "run_dir": str(run), "path": str(run.resolve())}
    return json.dumps({"format": "torchlap-results", "run": record})


def _folder(tmp_path: Path, entries: dict[str, str]) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    for name, text in {"report.html": "<html>", "tables.md": "|", **entries}.items():
        (out / name).write_text(text)
    return out


def _guard(out: Path, owner, force: bool = False, names=EVALUATE_OUTPUTS) -> list[Path]:
    return guard_output_folder(out, force, names=names, apply=False, owner=owner)


def test_an_evaluation_of_the_same_run_is_its_own(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a"
    out = _folder(tmp_path, {"results.json": _results(run)})
    assert _guard(out, run) == []
    # before run.path was recorded: run_dir as given (an absolute one here)
    (out / "results.json").write_text(_results(run, name="a", run_dir=str(run.resolve())))
    assert _guard(out, run) == []


def test_the_default_folder_inside_the_run_is_its_own(tmp_path: Path) -> None:
    run = tmp_path / "moved"  # a run folder moved with its eval-test (run.path is the old one)
    out = run / "eval-test"
    out.mkdir(parents=True)
    (out / "results.json").write_text(_results(run, name="a", path="/old/place/a"))
    assert _guard(out, run) == []


def test_an_evaluation_of_another_run_is_refused(tmp_path: Path) -> None:
    out = _folder(tmp_path, {"results.json": _results(tmp_path / "runs" / "a")})
    with pytest.raises(FileExistsError) as refused:
        _guard(out, tmp_path / "runs" / "b")
    message = str(refused.value)
    assert (
        f"holds results.json, torchlap's evaluation of run a ({tmp_path}/runs/a), not " in message
    )
    assert "not the evaluation of run b" in message and "pass --force to replace them" in message


def test_an_evaluation_is_not_a_comparison_and_the_reverse(tmp_path: Path) -> None:
    out = _folder(tmp_path, {"results.json": _results(tmp_path / "a")})
    with pytest.raises(FileExistsError, match=r"evaluation of run a .*, not a comparison: its "):
        _guard(out, COMPARISON, names=COMPARE_OUTPUTS)
    (out / "results.json").unlink()
    comparison = {"format": "torchlap-comparison", "runs": {"a": {}, "b": {}}}
    (out / "comparison.json").write_text(json.dumps(comparison))
    assert _guard(out, COMPARISON, names=COMPARE_OUTPUTS) == []
    with pytest.raises(FileExistsError, match=r"holds comparison\.json, torchlap's comparison "):
        _guard(out, tmp_path / "a")


def test_force_replaces_the_other_jobs_outputs_and_removes_its_record(
    tmp_path: Path, caplog
) -> None:
    out = _folder(tmp_path, {"results.json": _results(tmp_path / "a")})
    foreign = _guard(out, COMPARISON, force=True, names=COMPARE_OUTPUTS)
    assert set(foreign) == {out / "report.html", out / "tables.md", out / "results.json"}
    assert (out / "results.json").is_file()  # apply=False: nothing removed yet
    with caplog.at_level(logging.WARNING, logger="torchlap"):
        clear_output_folder(out, foreign)
    assert not (out / "results.json").exists()
    assert "removed" in caplog.text and "record of another job" in caplog.text


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> dict[str, Path]:
    """Two tiny runs of the same data and an evaluation of the first in ``ev``."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("owner")
    data = tiny_lesions(root)
    made = {name: tiny_run(data, root / name) for name in ("a", "b")}
    made["ev"] = root / "ev"
    result = CliRunner().invoke(app, ["evaluate", "--run", str(made["a"]), *_FAST, "--out",
                                      str(made["ev"])])  # fmt: skip
    assert result.exit_code == 0, result.output
    return made


_FAST = ["--methods", "gradcam", "--max-images", "2", "--max-val-images", "2",
         "--stability-images", "1", "--bootstrap-resamples", "0", "--quiet"]  # fmt: skip


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "args",
    [["compare", "a", "b"], ["evaluate", "--run", "b"]],
    ids=["compare into an evaluation", "evaluate another run"],
)
def test_the_commands_leave_another_jobs_folder_as_it_was(evaluated, args) -> None:
    ev = evaluated["ev"]
    before = _snapshot(ev)
    paths = [str(evaluated[a]) if a in ("a", "b") else a for a in args]
    result = CliRunner().invoke(app, [*paths, *_FAST, "--out", str(ev)])
    assert result.exit_code == 2, result.output
    assert "holds results.json, torchlap's evaluation of run a" in result.stderr
    assert _snapshot(ev) == before
