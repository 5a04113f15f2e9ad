"""``torchlap train --overwrite`` and the run's log file, train.log.

Before: the log file opened as soon as the folder held a config.json, i.e. the old run's, so
the new run's lines were appended to the old run's train.log (which --overwrite did not remove);
a refused overwrite appended its lines to the old log too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from train_configs import tiny_config
from typer.testing import CliRunner

import torchlap.train.run as train_run
from torchlap.cli import app
from torchlap.runs import RUN_FORMAT
from torchlap.train import RunFolderError, fit
from torchlap.train.folder import prepare_folder

_TINY = ["--data", "lesions", "--arch", "smallcnn", "--epochs", "1", "--n-images", "40",
         "--image-size", "32", "--batch-size", "16", "--accelerator", "cpu", "--devices", "1",
         "--no-progress"]  # fmt: skip


def _train(out: Path, *flags: str) -> None:
    result = CliRunner().invoke(app, ["train", "--out", str(out), *_TINY, *flags])
    assert result.exit_code == 0, (result.output, result.exception)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _epoch_lines(log: str) -> list[str]:
    return re.findall(r"phase 1 epoch 1: train.*", log)


@pytest.fixture(scope="module")
def old_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("overwrite_log") / "run"
    _train(out, "--seed", "1")
    assert len(_epoch_lines((out / "train.log").read_text())) == 1
    return out


@pytest.fixture
def run_copy(old_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    for name, data in _snapshot(old_run).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    return out


def test_overwrite_starts_a_fresh_log(run_copy: Path) -> None:
    old_log = (run_copy / "train.log").read_text()
    _train(run_copy, "--seed", "2", "--overwrite")
    log = (run_copy / "train.log").read_text()
    assert old_log.splitlines()[0] not in log  # nothing of the old run's log
    assert len(_epoch_lines(log)) == 1  # the new run's epoch, once
    # the new log records the overwrite that made it, naming the old log among what went
    (line,) = [line for line in log.splitlines() if "--overwrite: replacing the run in" in line]
    assert "train.log" in line, line
    assert json.loads((run_copy / "config.json").read_text())["train"]["seed"] == 2


def test_a_refused_overwrite_leaves_the_old_run_and_its_log_as_they_were(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(config):  # a refusal after the folder's dry check, while the data is prepared
        train_run.logger.info("preparing the data")
        raise ValueError("the data is refused")

    monkeypatch.setattr(train_run, "_prepare", refuse)
    before = _snapshot(run_copy)
    result = CliRunner().invoke(
        app, ["train", "--out", str(run_copy), *_TINY, "--seed", "2", "--overwrite"]
    )
    assert result.exit_code == 2, result.output
    assert "the data is refused" in result.output
    assert _snapshot(run_copy) == before  # train.log byte for byte too


def test_an_overwrite_failing_right_after_its_config_keeps_its_log(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old run is gone once the new config.json is written: the new run's lines up to a
    failure right after it (no line logged in between) are in the new train.log."""

    def fail(*args, **kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(train_run, "_metrics_writer", fail)
    old_log = (run_copy / "train.log").read_text()
    result = CliRunner().invoke(
        app, ["train", "--out", str(run_copy), *_TINY, "--seed", "2", "--overwrite"]
    )
    assert result.exit_code != 0, result.output
    log = (run_copy / "train.log").read_text()
    assert old_log.splitlines()[0] not in log
    assert "--overwrite: replacing the run in" in log


def test_overwrite_of_a_run_without_a_log_writes_one(tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(tiny_config(out, seed=1))  # the library writes no train.log
    assert not (out / "train.log").exists()
    _train(out, "--seed", "2", "--overwrite")
    log = (out / "train.log").read_text()
    assert "--overwrite: replacing the run" in log
    assert len(_epoch_lines(log)) == 1


@pytest.mark.parametrize("kind", ["link", "folder"])
def test_a_train_log_torchlap_did_not_write_is_refused_before_anything_goes(
    tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    config = tiny_config(out, seed=1)
    (out / "config.json").write_text(json.dumps({"format": RUN_FORMAT, "train": config.to_dict()}))
    (out / "metrics.json").write_text("{}")
    if kind == "link":
        (tmp_path / "my.log").write_text("mine")
        (out / "train.log").symlink_to(tmp_path / "my.log")
    else:
        (out / "train.log").mkdir()
        (out / "train.log" / "mine.txt").write_text("mine")
    before = _snapshot(out)
    for apply in (False, True):
        with pytest.raises(RunFolderError, match=r"train\.log is (a link|not a file); torchlap"):
            prepare_folder(out, tiny_config(out, seed=2, overwrite=True), apply=apply)
    assert _snapshot(out) == before and (out / "train.log").exists()


def test_a_removal_failing_half_way_keeps_the_config_so_overwrite_can_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: config.json went first; a failure after it left metrics.json and the weights
    without torchlap's config.json, a folder --overwrite then refused as not torchlap's."""
    out = tmp_path / "run"
    out.mkdir()
    config = tiny_config(out, seed=1)
    (out / "config.json").write_text(json.dumps({"format": RUN_FORMAT, "train": config.to_dict()}))
    for name in ("metrics.json", "model.safetensors", "train.log"):
        (out / name).write_text("old run")
    real_unlink = Path.unlink

    def unlink(path: Path, *args, **kwargs) -> None:
        if path.name == "model.safetensors":
            raise OSError("disk gone")
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(OSError, match="disk gone"):
        prepare_folder(out, tiny_config(out, seed=2, overwrite=True), apply=True)
    assert (out / "config.json").is_file()
    monkeypatch.setattr(Path, "unlink", real_unlink)
    prepare_folder(out, tiny_config(out, seed=2, overwrite=True), apply=True)  # the retry
    assert sorted(p.name for p in out.iterdir()) == []


def test_two_overwrites_in_one_process_each_start_a_fresh_log(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _train(out, "--seed", "1")
    for seed in ("2", "3"):  # the run before was written by this very process
        _train(out, "--seed", seed, "--overwrite")
        log = (out / "train.log").read_text()
        assert len(_epoch_lines(log)) == 1, log
        assert log.count("--overwrite: replacing the run in") == 1
