"""A file torchlap may not read (permission denied) is refused through the command line with
exit 2 and one ``Error`` line naming the file and saying it cannot be read; no traceback,
nothing written.

The tests run as root in the sandbox, where a ``chmod 000`` file is still readable: the
opening of the one file is made to fail instead (``open``, which Python's file reading,
``pathlib`` and PIL all go through).

Before: the annotations CSV, ``config.json`` and a ``--concept-sets`` file gave Python's bare
``[Errno 13] Permission denied: '...'``; an image ``not a readable image: [Errno 13] ...`` (as
if it were not an image); an unreadable ``results.json`` in ``--out`` was said to be a file
"torchlap did not write".
"""

from __future__ import annotations

import builtins
import io
import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tiny_runs import tiny_lesions, tiny_run
from torchlap.cli import app


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A 40-image `lesions` folder, a small CNN trained one epoch on it, a concept-sets file
    and an evaluation of the run (its results.json)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("unreadable")
    data = tiny_lesions(root)
    run = tiny_run(data, root / "run")
    concepts = root / "concepts.json"
    concepts.write_text(json.dumps({"healthy": [0], "lesion": [0]}))
    result = CliRunner().invoke(app, [*_evaluate(run), "--out", str(root / "eval")])
    assert result.exit_code == 0, result.output
    return {"root": root, "data": data, "run": run, "concepts": concepts, "eval": root / "eval"}


def _evaluate(run: Path) -> list[str]:
    return ["evaluate", "--run", str(run), "--methods", "gradcam", "--max-images", "4",
            "--max-val-images", "4", "--stability-images", "1"]  # fmt: skip


def _train(data: Path) -> list[str]:
    return ["train", "--data", str(data), "--arch", "smallcnn", "--epochs", "1",
            "--image-size", "32"]  # fmt: skip


def _explain(image: Path, run: Path) -> list[str]:
    return ["explain", str(image), "--run", str(run), "--methods", "gradcam"]


def _cases(made: dict[str, Path], out: Path) -> dict[str, tuple[Path, list[str]]]:
    """Case -> (the file that cannot be read, the command)."""
    data, run = made["data"], made["run"]
    image = sorted((data / "images" / "test").glob("*.png"))[0]
    eval_out = str(made["eval"])  # (evaluated already: its results.json is torchlap's)
    return {
        "annotations-evaluate": (data / "annotations.csv", [*_evaluate(run), "--out", str(out)]),
        "annotations-train": (data / "annotations.csv", [*_train(data), "--out", str(out)]),
        "annotations-data-check": (data / "annotations.csv", ["data", "check", str(data)]),
        "image-evaluate": (image, [*_evaluate(run), "--out", str(out)]),
        "image-explain": (image, [*_explain(image, run), "--out", str(out)]),
        "config-evaluate": (run / "config.json", [*_evaluate(run), "--out", str(out)]),
        "weights-evaluate": (run / "model.safetensors", [*_evaluate(run), "--out", str(out)]),
        "concept-sets-train": (
            made["concepts"],
            [*_train(data), "--concept-sets", str(made["concepts"]), "--out", str(out)],
        ),
        "results-evaluate": (made["eval"] / "results.json", [*_evaluate(run), "--out", eval_out]),
    }


CASES = ["annotations-evaluate", "annotations-train", "annotations-data-check",
         "image-evaluate", "image-explain", "config-evaluate", "weights-evaluate",
         "concept-sets-train", "results-evaluate"]  # fmt: skip


def _listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", CASES)
def test_a_file_that_cannot_be_read_is_one_error_line(made, case, tmp_path, monkeypatch) -> None:
    target, args = _cases(made, tmp_path / "out")[case]
    locked = target.resolve()
    real_open = io.open

    def denied(file, *more, **options):
        if isinstance(file, (str, os.PathLike)) and Path(file).resolve() == locked:
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *more, **options)

    before = _listing(made["root"])
    monkeypatch.setattr(builtins, "open", denied)
    monkeypatch.setattr(io, "open", denied)
    result = CliRunner().invoke(app, args)
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    assert f"{target} cannot be read (Permission denied)" in errors[0]
    assert "[Errno" not in errors[0]  # (said in words, once)
    assert not (tmp_path / "out").exists()
    assert _listing(made["root"]) == before  # nothing written, nothing removed
