"""The file `torchlap export` writes: every refusal before it is written (the ONNX check's test
images and onnxruntime included), never over a file someone else created meanwhile, and the
temporary files of killed exports removed by the next export into the folder."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.export import _publish, export_run, run_test_images
from torchlap.runs import RunError, RunFileNotFoundError


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _with_relative_data(run_dir: Path, root: Path) -> Path:
    """A copy of the run whose config.json records its data as the relative folder 'gone'
    (a run saved before torchlap recorded absolute paths), which exists nowhere."""
    copy = root / "runs" / "old"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["train"]["data"] = "gone"
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def test_missing_verification_data_is_refused_before_the_file_is_written(
    run_dir, tmp_path, monkeypatch
) -> None:
    # the export used to be written first, then the check failed (advising --data, which
    # export does not have) and the rerun was refused because the file existed
    pytest.importorskip("onnxruntime")
    old = _with_relative_data(run_dir, tmp_path)
    monkeypatch.chdir(tmp_path / "runs")
    out = tmp_path / "m.onnx"
    args = ["export", "--run", str(old), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    error = next(line for line in result.output.splitlines() if line.startswith("Error:"))
    assert "'gone' as a relative path" in error
    assert "pass --verify-images 0" in error and "--data" not in error
    assert "--data" not in result.output  # nor in the warning of load_run (another command's)
    assert not out.exists() and _hidden(tmp_path) == []
    result = CliRunner().invoke(app, [*args, "--verify-images", "0"])  # the advice works
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_run_test_images_names_how_to_export_without_the_check(run_dir, tmp_path, monkeypatch):
    old = _with_relative_data(run_dir, tmp_path)
    monkeypatch.chdir(tmp_path / "runs")
    with pytest.raises(RunFileNotFoundError, match=r"pass --verify-images 0 to export") as error:
        run_test_images(old, 2)
    assert "--data" not in str(error.value)
    config = json.loads((old / "config.json").read_text())
    config["train"]["data"] = ""
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match=r"names no data .*--verify-images 0"):
        run_test_images(old, 2)


def test_missing_onnxruntime_is_refused_before_the_file_is_written(
    run_dir, tmp_path, monkeypatch
) -> None:
    pytest.importorskip("onnxscript")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", "--run", str(run_dir), "--out", str(out)])
    assert result.exit_code != 0 and "needs onnxruntime" in result.output, result.output
    assert "--verify-images 0" in result.output
    assert not out.exists() and _hidden(tmp_path) == []


def test_a_file_created_during_the_export_is_left_as_it_is(
    run_dir, tmp_path, monkeypatch, caplog
) -> None:
    # the existence check ran before the seconds of export and os.replace then replaced the
    # other file (logging '--overwrite: replaced' without --overwrite)
    out = tmp_path / "m.pt2"
    save = torch.export.save

    def racing_save(program, handle):
        out.write_text("someone else's")  # appears while torchlap exports
        save(program, handle)

    monkeypatch.setattr(torch.export, "save", racing_save)
    with (
        caplog.at_level(logging.WARNING, logger="torchlap.export"),
        pytest.raises(FileExistsError, match=r"m\.pt2 was created by someone else while"),
    ):
        export_run(run_dir, out, "exported-program")
    assert out.read_text() == "someone else's"
    assert "replaced" not in caplog.text
    assert _hidden(tmp_path) == []  # the temporary file is removed


def test_a_dangling_symlink_is_refused_before_the_export(run_dir, tmp_path, monkeypatch) -> None:
    """exists() follows links: a symlink to nothing passed the check, the export ran in full and
    publishing then refused it as 'created by someone else while torchlap exported'."""
    import torchlap.export as export

    out = tmp_path / "m.pt2"
    out.symlink_to(tmp_path / "nowhere.pt2")
    real_load_run = export.load_run

    def no_work(*args, **kwargs):
        raise AssertionError("the export started")

    monkeypatch.setattr(export, "load_run", no_work)
    message = r"m\.pt2 is a symlink \(to .*nowhere\.pt2, which does not exist\); pass --overwrite"
    with pytest.raises(FileExistsError, match=message):
        export_run(run_dir, out, "exported-program")
    assert out.is_symlink() and _hidden(tmp_path) == []
    monkeypatch.setattr(export, "load_run", real_load_run)
    export_run(run_dir, out, "exported-program", overwrite=True)  # replaces the link itself
    assert out.is_file() and not out.is_symlink() and not (tmp_path / "nowhere.pt2").exists()


def test_without_hard_links_a_last_check_refuses_a_new_file(tmp_path, monkeypatch) -> None:
    def no_link(source, target):
        raise PermissionError(1, "Operation not permitted")  # e.g. a FAT or SMB file system

    monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "m.pt2"

    def racing_write(path: Path) -> None:
        out.write_text("someone else's")
        path.write_bytes(b"export")

    with pytest.raises(FileExistsError, match="created by someone else"):
        _publish(out, racing_write, overwrite=False)
    assert out.read_text() == "someone else's" and _hidden(tmp_path) == []
    out.unlink()
    assert _publish(out, lambda path: path.write_bytes(b"export"), overwrite=False) is False
    assert out.read_bytes() == b"export" and _hidden(tmp_path) == []


def test_publishing_without_overwrite_writes_a_new_file_with_the_usual_mode(tmp_path) -> None:
    out = tmp_path / "m.pt2"
    assert _publish(out, lambda path: path.write_bytes(b"export"), overwrite=False) is False
    umask = os.umask(0)
    os.umask(umask)
    assert out.read_bytes() == b"export" and out.stat().st_nlink == 1
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert _hidden(tmp_path) == []


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_next_export_removes_temporaries_of_killed_exports(run_dir, tmp_path) -> None:
    # a `kill -9` during an export leaves `.<name>.<pid>.<hex>.torchlap-tmp` behind; the README
    # says the next command writing into the folder removes it, and export did not
    stale = tmp_path / f".old.pt2.{_dead_pid()}.0123abcd.torchlap-tmp"
    stale.write_bytes(b"half an export")
    live = tmp_path / f".busy.pt2.{os.getpid()}.0123abcd.torchlap-tmp"  # a running process's
    live.write_bytes(b"in progress")
    export_run(run_dir, tmp_path / "m.pt", "torchscript", batch_size=1)
    assert not stale.exists() and live.exists()
    assert (tmp_path / "m.pt").is_file()
