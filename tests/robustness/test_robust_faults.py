"""Faults: a process killed (SIGKILL) in the middle of writing a file, truncated files, stale
temporaries. The same command afterwards leaves no temp file and no half-written output."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import TINY, snapshot, temp_files
from torchlap.cli import app
from torchlap.runs import (
    RunError,
    atomic_write,
    check_integrity,
    clean_stale_temps,
    load_run,
)

# Runs the torchlap CLI in a fresh process whose atomic writer SIGKILLs the process halfway
# through writing the NTH file called NAME (after half its bytes reached the temp file).
KILLER = """
import io, os, signal, sys
from pathlib import Path
import torchlap.cli, torchlap.runs as runs
import torchlap.train.run, torchlap.evaluate.explain
import torchlap.data.annotations, torchlap.data.export

NAME, NTH = {name!r}, {nth}
original = runs.atomic_write
seen = [0]

def killing(path, data, replace=True):
    if Path(path).name.endswith(NAME):
        seen[0] += 1
        if seen[0] == NTH:
            if callable(data):
                buffer = io.BytesIO(); data(buffer); data = buffer.getvalue()
            raw = data.encode() if isinstance(data, str) else bytes(data)
            with runs.atomic_path(path) as tmp:
                with open(tmp, "wb") as handle:
                    handle.write(raw[: len(raw) // 2]); handle.flush(); os.fsync(handle.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
    return original(path, data, replace)

for module in list(sys.modules.values()):
    if getattr(module, "atomic_write", None) is original and module.__name__.startswith("torchlap"):
        module.atomic_write = killing
sys.argv = ["torchlap", *{args!r}]
torchlap.cli.main()
"""


def _killed(args: list[str], name: str, nth: int, cwd: Path) -> None:
    script = KILLER.format(name=name, nth=nth, args=args)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def _rerun(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def _train_args(out: Path) -> list[str]:
    return [
        "train", "--data", TINY["data"], "--out", str(out), "--arch", TINY["arch"],
        "--epochs", "1", "--n-images", str(TINY["n_images"]), "--image-size",
        str(TINY["image_size"]), "--batch-size", str(TINY["batch_size"]), "--no-progress",
        "--accelerator", "cpu", "--devices", "1",
    ]  # fmt: skip


# ----------------------------------------------------------------------------- atomic_write


def test_killed_writer_leaves_old_file_and_a_temp_the_next_run_removes(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    atomic_write(target, b"old content")
    script = f"""
import os, signal
from torchlap.runs import atomic_write
def half(handle):
    handle.write(b"new cont"); handle.flush(); os.kill(os.getpid(), signal.SIGKILL)
atomic_write({str(target)!r}, half)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"old content"  # never half-written
    stale = temp_files(tmp_path)
    assert len(stale) == 1 and stale[0].name.startswith(".file.bin.")
    mine = tmp_path / f".other.{os.getpid()}.0123abcd.torchlap-tmp"  # a live process's temp
    mine.write_bytes(b"in progress")
    foreign = tmp_path / ".user.99999999.0123abcd.tmp"  # not torchlap's name: left alone
    foreign.write_bytes(b"user")
    # the external-weights side file an ONNX export writes next to its temporary (it used to
    # survive a kill -9 of the export)
    side = stale[0].with_name(stale[0].name + ".data")
    side.write_bytes(b"weights")
    assert sorted(clean_stale_temps(tmp_path)) == sorted([*stale, side])
    assert mine.exists() and foreign.exists() and not stale[0].exists() and not side.exists()


def test_writer_error_leaves_no_temp_and_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic_write(target, "{}")

    def failing(handle) -> None:
        handle.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, failing)
    assert target.read_text() == "{}" and temp_files(tmp_path) == []
    with pytest.raises(TypeError, match=r"atomic_write takes bytes, str or a callable, got int"):
        atomic_write(target, 5)  # type: ignore[arg-type]


def test_written_files_have_the_usual_mode(tmp_path: Path) -> None:
    """mkstemp makes 0600 files; torchlap's files get 0666 minus the umask (annotations.csv
    used to stay 0600)."""
    from torchlap.data import ImageRecord, write_annotations

    mask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.txt", "x")
        write_annotations(tmp_path / "annotations.csv", [ImageRecord("a.png", "x", "train")])
    finally:
        os.umask(mask)
    for name in ("a.txt", "annotations.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


# ----------------------------------------------------------------------------- run integrity


def test_truncated_checkpoint_on_resume_is_named(run_copy: Path) -> None:
    checkpoint = run_copy / "checkpoints" / "phase1" / "last.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    (run_copy / "model.safetensors").unlink()  # an unfinished run, to be resumed
    before = snapshot(run_copy)
    before.pop("train.log", None)  # the run's log may record the refusal
    result = CliRunner().invoke(app, [*_train_args(run_copy), "--resume"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr
    assert "last.ckpt is damaged or was changed" in result.stderr.splitlines()[-1]
    after = snapshot(run_copy)
    after.pop("train.log", None)
    assert after == before
    with pytest.raises(RunError, match=r"phase1/last\.ckpt is damaged"):
        check_integrity(run_copy, checkpoint)


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_damaged_checkpoint_of_a_run_without_digests_is_named(run_copy: Path, damage: str) -> None:
    """A run from before torchlap recorded digests has no SHA-256 to check: its damaged
    checkpoint failed with the loader's raw error after "phase 1/1: training". The archive's own
    checks name it before anything is written; the intact checkpoint still passes them."""
    from torchlap.train.folder import RunFolderError, _check_whole_archive

    config = json.loads((run_copy / "config.json").read_text())
    del config["integrity"]  # a run from before the record
    (run_copy / "config.json").write_text(json.dumps(config))
    checkpoint = run_copy / "checkpoints" / "phase1" / "last.ckpt"
    _check_whole_archive(checkpoint)  # intact: passes
    data = bytearray(checkpoint.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:  # same length, bytes in the middle changed: only the CRC tells
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(64)
    checkpoint.write_bytes(bytes(data))
    (run_copy / "model.safetensors").unlink()  # an unfinished run, to be resumed
    before = snapshot(run_copy)
    before.pop("train.log", None)
    result = CliRunner().invoke(app, [*_train_args(run_copy), "--resume"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr and "phase 1/1" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert "last.ckpt is damaged (not a whole checkpoint archive" in last, last
    after = snapshot(run_copy)
    after.pop("train.log", None)
    assert after == before
    with pytest.raises(RunFolderError, match="records no SHA-256"):
        _check_whole_archive(checkpoint)


def test_integrity_recorded_for_weights_and_checkpoints(tiny_run: Path) -> None:
    config = json.loads((tiny_run / "config.json").read_text())
    assert set(config["integrity"]) == {"model.safetensors", "checkpoints/phase1/last.ckpt"}
    check_integrity(tiny_run, tiny_run / "model.safetensors")
    check_integrity(tiny_run, tiny_run / "checkpoints" / "phase1" / "last.ckpt")


def test_overwrite_says_what_it_replaces_and_keeps_other_files(run_copy: Path) -> None:
    (run_copy / "notes.txt").write_text("my notes")
    # a user's file among the checkpoints: not torchlap's, so not deleted (and named)
    (run_copy / "checkpoints" / "mine.ckpt").write_text("my checkpoint")
    result = CliRunner().invoke(app, [*_train_args(run_copy), "--overwrite", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "replacing the run in" in result.stderr and "model.safetensors" in result.stderr
    assert (run_copy / "notes.txt").read_text() == "my notes"
    assert (run_copy / "checkpoints" / "mine.ckpt").read_text() == "my checkpoint"
    assert re.search(r"left \S*mine\.ckpt in place \(torchlap did not write", result.stderr)
    load_run(run_copy)


# ----------------------------------------------------------------------------- kill -9


def test_train_killed_writing_weights_then_resumed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _killed(_train_args(out), "model.safetensors", 1, tmp_path)
    assert temp_files(out) and not (out / "model.safetensors").exists()
    with pytest.raises(FileNotFoundError, match="has not finished"):
        load_run(out)
    _rerun([*_train_args(out), "--resume"])
    assert temp_files(out) == []
    run = load_run(out)  # integrity checked
    assert run.config["integrity"]["model.safetensors"]["sha256"]


@pytest.mark.slow  # a second training subprocess; the kill-and-rerun path is tested above
def test_train_killed_before_its_first_epoch_ended_restarts(tmp_path: Path) -> None:
    """Killed while writing the first metrics.json: the same command starts the run again
    (the folder holds only this run's config, nothing to lose); issue 16's blocking stub."""
    out = tmp_path / "run"
    _killed(_train_args(out), "metrics.json", 1, tmp_path)
    assert (out / "config.json").is_file() and not (out / "metrics.json").exists()
    _rerun(_train_args(out))
    assert temp_files(out) == []
    load_run(out)


def test_evaluate_killed_writing_results_then_rerun(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    args = ["evaluate", "--run", str(tiny_run), "--out", str(out), "--methods", "gradcam",
            "--max-images", "4", "--max-val-images", "4", "--stability-images", "2"]  # fmt: skip
    _killed(args, "results.json", 1, tmp_path)
    assert temp_files(out) and not (out / "results.json").exists()
    _rerun(args)
    assert temp_files(out) == []
    assert json.loads((out / "results.json").read_text())["format"] == "torchlap-results"


def test_explain_killed_writing_maps_then_rerun(tiny_run: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    for split in ("train", "val"):
        (images / split).mkdir(parents=True)
        Image.fromarray(np.full((32, 32), 77, np.uint8)).save(images / split / "0.png")
    out = tmp_path / "out"
    args = ["explain", str(images), "--run", str(tiny_run), "--methods", "gradcam",
            "--out", str(out)]  # fmt: skip
    _killed(args, ".npz", 2, tmp_path)
    assert temp_files(out)
    stdout = _rerun(args)
    assert "wrote 2 figures and 2 .npz maps" in stdout
    assert temp_files(out) == []
    for split in ("train", "val"):
        assert set(np.load(out / split / "0.npz").files) >= {"gradcam"}


def test_data_export_killed_then_rerun(tmp_path: Path) -> None:
    out = tmp_path / "exported"
    args = ["data", "export", "lesions", "--out", str(out), "--n-images", "30",
            "--image-size", "32"]  # fmt: skip
    _killed(args, "annotations.csv", 1, tmp_path)
    assert not out.exists() and temp_files(tmp_path)  # the staging folder of the killed run
    _rerun(args)
    assert temp_files(tmp_path) == []
    check = CliRunner().invoke(app, ["data", "check", str(out)])
    assert check.exit_code == 0 and "train:" in check.output


def test_data_export_refuses_then_keeps_user_folder(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["data", "export", "lesions", "--out", str(out)])
    assert result.exit_code == 2 and (out / "keep.txt").read_text() == "mine"
    shutil.rmtree(out)


def test_a_stale_temp_that_cannot_be_removed_is_named_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: a staging folder rmtree(ignore_errors=True) could not remove was counted (and
    logged) as removed, and a file unlink could not remove raised out of every command."""
    import torchlap.io as io_module

    monkeypatch.setattr(io_module, "_pid_alive", lambda pid: False)
    staging = tmp_path / ".data.12345.0123abcd.torchlap-tmp"
    (staging / "images").mkdir(parents=True)
    stuck = tmp_path / ".x.json.12345.89abcdef.torchlap-tmp"
    stuck.write_text("{")
    gone = tmp_path / ".y.json.12345.01234567.torchlap-tmp"
    gone.write_text("{")
    monkeypatch.setattr(io_module.shutil, "rmtree", lambda path, ignore_errors=False: None)
    unlink = Path.unlink

    def refusing(self: Path, missing_ok: bool = False) -> None:
        if self == stuck:
            raise PermissionError(13, "Permission denied", str(self))
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refusing)
    with caplog.at_level(logging.INFO, logger="torchlap.io"):
        assert clean_stale_temps(tmp_path) == [gone]
    assert staging.exists() and stuck.exists() and not gone.exists()
    assert f"could not remove {staging}" in caplog.text
    assert f"could not remove {stuck}" in caplog.text
    assert "removed 1 temporary file(s)" in caplog.text
