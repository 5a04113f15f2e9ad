"""A run's data is checked against the run's facts before its model is built, and each run's
``config.json`` is read once.

Before: ``evaluate`` and ``compare`` rebuilt the model and loaded its weights
(:func:`torchlap.runs.load_run`) before opening the data, so a folder whose layout passes but
whose contents do not fit the run (a malformed ``annotations.csv`` row, classes other than the
run's, a channel count the run does not take) was refused only after that work (the channel
count only after every image was decoded); ``compare`` built every model twice and read each
``config.json`` four times (twice per ``load_run``: once itself, once for the weights'
digest); ``export``'s ONNX check built the model once for its test images and again for the
export; ``explain`` built the model before decoding the images it was given.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import torchlap
import torchlap.runs
from tiny_runs import tiny_lesions, tiny_run
from torchlap.cli import app
from torchlap.evaluate import EvaluateOptions, compare_runs
from torchlap.export import run_test_images
from torchlap.runs import RunError, load_run, read_run_facts


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A 40-image `lesions` folder (grayscale, 32 px), a vanilla small CNN trained one epoch on
    it, a copy of that run under another name (for compare) and a LAP run of it (for export)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("data-before-model")
    data = tiny_lesions(root)
    runs = {"data": data}
    for name, lap in (("first", "none"), ("lap", "auto")):
        runs[name] = tiny_run(data, root / name, lap=lap)
    runs["second"] = Path(shutil.copytree(runs["first"], root / "second"))
    return runs


def _rows(folder: Path) -> list[list[str]]:
    with open(folder / "annotations.csv", newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _write_rows(folder: Path, rows: list[list[str]]) -> None:
    with open(folder / "annotations.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def _malformed_row(folder: Path) -> str:
    rows = _rows(folder)
    column = rows[0].index("x_max")
    boxed = next(i for i, row in enumerate(rows[1:], start=1) if row[column])
    rows[boxed][column] = "abc"
    _write_rows(folder, rows)
    return r"x_max is 'abc', not a number"


def _other_classes(folder: Path) -> str:
    rows = _rows(folder)
    column = rows[0].index("label")
    for row in rows[1:]:
        row[column] = f"other-{row[column]}"
    _write_rows(folder, rows)
    return r"has classes \['other-.*the run was trained on"


def _colour_images(folder: Path) -> str:
    for path in (folder / "images").rglob("*.png"):
        Image.open(path).convert("RGB").save(path)
    return r"has 3-channel images, the run expects 1"


DAMAGES = {"malformed row": _malformed_row, "other classes": _other_classes,
           "other channel count": _colour_images}  # fmt: skip


@pytest.fixture(params=sorted(DAMAGES))
def bad_data(request, made, tmp_path) -> tuple[Path, str]:
    """A copy of the run's data folder, damaged; and the refusal's expected text."""
    folder = Path(shutil.copytree(made["data"], tmp_path / "bad"))
    return folder, DAMAGES[request.param](folder)


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the models :func:`load_run` rebuilds (in the module that defines it)."""
    module = sys.modules[load_run.__module__]
    real, builds = module.rebuild_model, []

    def counting(config: Any) -> Any:
        builds.append(1)
        return real(config)

    monkeypatch.setattr(module, "rebuild_model", counting)
    return builds


def _count_config_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Count the reads of a run's config.json through read_run_config, wherever imported."""
    real, reads = torchlap.runs.read_run_config, []

    def counting(run_dir: Any) -> Any:
        reads.append(Path(run_dir))
        return real(run_dir)

    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "") or ""
        if name.startswith("torchlap") and getattr(module, "read_run_config", None) is real:
            monkeypatch.setattr(module, "read_run_config", counting)
    return reads


def _tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_read_run_facts_are_load_runs_without_a_model(made, monkeypatch):
    """The facts :func:`read_run_facts` checks are the ones :func:`load_run` returns, read
    without building the model; load_run built from them reads config.json no more."""
    builds = _count_builds(monkeypatch)
    facts = read_run_facts(made["first"])
    assert builds == []
    reads = _count_config_reads(monkeypatch)
    run = load_run(facts)
    assert builds == [1] and reads == []
    for key in ("classes", "mean", "std", "image_size", "in_channels", "run_dir", "config"):
        assert getattr(run, key) == getattr(facts, key)
    assert load_run(made["first"]).classes == facts.classes and len(reads) == 1


def test_read_run_facts_refuses_an_unfinished_run_without_a_model(made, tmp_path, monkeypatch):
    run_dir = Path(shutil.copytree(made["first"], tmp_path / "run"))
    (run_dir / "model.safetensors").unlink()
    builds = _count_builds(monkeypatch)
    with pytest.raises(RunError, match="does not exist: the run has not finished"):
        read_run_facts(run_dir)
    assert builds == []


def _quick(*args: str) -> list[str]:
    return [*args, "--methods", "gradcam", "--max-images", "4", "--max-val-images", "4",
            "--stability-images", "1"]  # fmt: skip


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_bad_data_is_refused_before_any_model_is_built(made, bad_data, tmp_path, monkeypatch,
                                                       command):  # fmt: skip
    folder, expected = bad_data
    builds = _count_builds(monkeypatch)
    out = tmp_path / "out"
    runs = [made["first"], made["second"]]
    before = {run: _tree(run) for run in runs}
    if command == "evaluate":
        args = _quick("evaluate", "--run", str(runs[0]), "--data", str(folder), "--out", str(out))
    else:
        args = _quick("compare", *map(str, runs), "--data", str(folder), "--out", str(out))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert re.search(expected, " ".join(result.output.split())), result.output
    assert builds == []
    assert not out.exists()
    assert {run: _tree(run) for run in runs} == before


def test_compare_reads_each_config_once_and_builds_each_model_once(made, tmp_path, monkeypatch):
    """Everything compare prepares before the first run is evaluated (the names, the data
    plan, the data, the models, the explainers): one config.json read and one build per run."""
    import torchlap.evaluate.compare as compare

    class PreparedError(Exception):
        pass

    def stop(*_args: Any, **_kwargs: Any) -> None:
        raise PreparedError

    monkeypatch.setattr(compare, "finish_evaluation", stop)
    reads, builds = _count_config_reads(monkeypatch), _count_builds(monkeypatch)
    options = EvaluateOptions(methods=("gradcam",), max_images=4, max_val_images=4,
                              stability_images=1)  # fmt: skip
    with pytest.raises(PreparedError):
        compare_runs([made["first"], made["second"]], None, tmp_path / "out", options)
    assert sorted(p.name for p in reads) == ["first", "second"]
    assert len(builds) == 2


def test_explain_decodes_the_images_before_the_model_is_built(made, tmp_path, monkeypatch):
    bad = tmp_path / "scan.png"
    bad.write_text("not an image\n")
    builds = _count_builds(monkeypatch)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["explain", str(bad), "--run", str(made["first"]), "--methods", "gradcam",
              "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "scan.png" in result.output and "Traceback" not in result.output
    assert builds == [] and not out.exists()


def test_the_export_check_reads_its_test_images_without_building_the_model(
    made, tmp_path, monkeypatch
):
    """The ONNX check's test images are read with the run's facts: a bad data folder is
    refused with no model built (the export itself builds it once, after)."""
    run_dir = Path(shutil.copytree(made["lap"], tmp_path / "run"))
    data = Path(shutil.copytree(made["data"], tmp_path / "les"))
    _other_classes(data)
    config = read_run_facts(run_dir).config
    config["train"]["data"] = str(data)
    (run_dir / "config.json").write_text(json.dumps(config))
    builds = _count_builds(monkeypatch)
    with pytest.raises(RunError, match=r"other-.*pass --verify-images 0"):
        run_test_images(run_dir, 4)
    assert builds == []
    assert run_test_images(made["lap"], 4).shape == (4, 1, 32, 32) and builds == []
