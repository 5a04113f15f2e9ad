"""`torchlap explain` on the command line: the README's defaults (``--methods lap,gradcam``,
``--out explanations``, ``--batch-size 16``) reach :func:`explain_files`, and a ``--methods``
naming nothing is refused with exit 2 before any run is read."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.evaluate import explain as explain_module


@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
    """The arguments of every :func:`explain_files` call (none does any work)."""
    made: list[tuple] = []

    def recorded(run_dir, inputs, methods, out, batch_size=None):
        made.append((run_dir, inputs, methods, out, batch_size))
        return [Path("a.png"), Path("b.png")]

    monkeypatch.setattr(explain_module, "explain_files", recorded)
    return made


def test_the_documented_defaults_reach_explain_files(calls) -> None:
    result = CliRunner().invoke(app, ["explain", "scans/x.png", "scans", "--run", "runs/r"])
    assert result.exit_code == 0, result.output
    assert calls == [
        (Path("runs/r"), [Path("scans/x.png"), Path("scans")], ["lap", "gradcam"],
         Path("explanations"), 16)
    ]  # fmt: skip
    assert "wrote 2 figures and 2 .npz maps to explanations" in result.output
    given = ["explain", "x.png", "--run", "r", "--methods", "rise, gradcam", "--out", "o",
             "--batch-size", "3"]  # fmt: skip
    assert CliRunner().invoke(app, given).exit_code == 0
    assert calls[1] == (Path("r"), [Path("x.png")], ["rise", "gradcam"], Path("o"), 3)


@pytest.mark.parametrize("methods", ["", ",", " , "])
def test_methods_naming_nothing_are_refused_before_any_work(calls, methods) -> None:
    args = ["explain", "x.png", "--run", "r", "--methods", methods]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "--methods needs at least one method name, got" in result.output
    assert calls == []
