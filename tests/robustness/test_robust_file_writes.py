"""What torchlap writes when a write fails half-way or the output folder holds entries of the
wrong kind: no half-written output, no temp file, nobody's folder replaced, and no count of
files that were not written."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
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


# ------------------------------------------------------------------ a write failing half-way


class _FailAt:
    """``os.fsync`` that raises ``error`` at the ``n``-th regular file it is given (every
    atomic write fsyncs its temporary file before the rename: the data is written, not
    published), counting the files it let through."""

    def __init__(self, n: int, error: BaseException) -> None:
        self.n, self.error, self.seen = n, error, 0
        self.fsync = os.fsync

    def __call__(self, descriptor: int) -> None:
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            self.seen += 1
            if self.seen == self.n:
                raise self.error
        self.fsync(descriptor)


def _images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for k in range(n):
        Image.fromarray(np.full((32, 32), 40 * k, np.uint8)).save(folder / f"{k}.png")
    return folder


_ERRORS = [OSError(28, "No space left on device"), KeyboardInterrupt()]


def _code(error: BaseException) -> int:
    """The torchlap command's exit code for ``error``: 1 (a failure), 130 (Ctrl-C, click's)."""
    return 130 if isinstance(error, KeyboardInterrupt) else 1


@pytest.mark.parametrize("error", _ERRORS, ids=["disk full", "Ctrl-C"])
@pytest.mark.parametrize("n", [1, 2, 4])
def test_explain_failing_at_the_nth_file(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int, error
) -> None:
    """The manifest (file 1), then a figure and an .npz per image: the files before the failure
    are whole (each a figure or map torchlap wrote), the one that failed is not there, no
    temporary is left, no count is printed; the same command afterwards writes them all."""
    from torchlap.report.plots import is_torchlap_figure

    images = _images(tmp_path / "images", 3)
    out = tmp_path / "out"
    args = ["explain", str(images), "--run", str(tiny_run), "--methods", "gradcam",
            "--out", str(out)]  # fmt: skip
    failing = _FailAt(n, error)
    monkeypatch.setattr(os, "fsync", failing)
    result = runner.invoke(app, args)
    monkeypatch.undo()
    assert result.exit_code == _code(error) and "wrote" not in result.stdout, result.output
    assert temp_files(out) == []
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    planned = [".torchlap-explain.json", *(f"{k}.{s}" for k in range(3) for s in ("npz", "png"))]
    order = [".torchlap-explain.json", "0.png", "0.npz", "1.png", "1.npz", "2.png", "2.npz"]
    assert written == sorted(order[: n - 1])
    for name in written[1:]:
        path = out / name
        assert is_torchlap_figure(path) if name.endswith(".png") else np.load(path).files
    rerun = runner.invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    assert "wrote 3 figures and 3 .npz maps" in rerun.stdout
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(planned)


@pytest.mark.parametrize("error", _ERRORS, ids=["disk full", "Ctrl-C"])
def test_data_export_failing_half_way_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error
) -> None:
    """An image write failing after 5 images (PIL's save, inside the staging folder): no
    ``--out``, no staging folder, no count printed."""
    save = Image.Image.save
    calls = []

    def failing_save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise error
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    out = tmp_path / "exported"
    result = runner.invoke(
        app,
        [
            "data",
            "export",
            "lesions",
            "--out",
            str(out),
            "--n-images",
            "20",
            "--image-size",
            "32",
        ],
    )
    assert result.exit_code == _code(error) and "wrote" not in result.stdout, result.output
    assert len(calls) == 6 and sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", _ERRORS, ids=["disk full", "Ctrl-C"])
def test_export_failing_while_writing_leaves_nothing(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error
) -> None:
    """The exported file fails at its fsync: no file, no temporary (nor ONNX's side file), no
    "wrote" line; an existing file at --out (with --overwrite) is kept as it was."""
    out = tmp_path / "model.pt2"
    out.write_bytes(b"the old export")
    monkeypatch.setattr(os, "fsync", _FailAt(1, error))
    result = runner.invoke(
        app,
        [
            "export",
            "--run",
            str(tiny_run),
            "--format",
            "exported-program",
            "--out",
            str(out),
            "--overwrite",
        ],
    )
    assert result.exit_code == _code(error) and "wrote" not in result.stdout, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt2"]
    assert out.read_bytes() == b"the old export"


@pytest.mark.parametrize(
    ("n", "error"),
    [(1, _ERRORS[0]), (2, _ERRORS[1]), (4, _ERRORS[0]), (-1, _ERRORS[1])],
    ids=["method cache", "results.json (Ctrl-C)", "a figure", "report.html (Ctrl-C)"],
)
def test_evaluate_failing_at_the_nth_file(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int, error
) -> None:
    """Files before the failure whole, no temporary, no "results:"/"report:" line; the same
    command afterwards (no --force: every file there is torchlap's) finishes the folder."""
    out = tmp_path / "out"
    args = ["evaluate", "--run", str(tiny_run), "--out", str(out), *_EVALUATE]
    if n == -1:  # the last file: count them on a first evaluation elsewhere
        counting = _FailAt(0, error)
        monkeypatch.setattr(os, "fsync", counting)
        first = runner.invoke(app, [*args[:4], str(tmp_path / "count"), *args[5:]])
        assert first.exit_code == 0, first.output
        n = counting.seen
    monkeypatch.setattr(os, "fsync", _FailAt(n, error))
    result = runner.invoke(app, args)
    monkeypatch.undo()
    assert result.exit_code == _code(error), result.output
    assert "results:" not in result.stdout and "report:" not in result.stdout
    assert temp_files(out) == []
    for path in out.rglob("*.json"):  # every JSON there whole
        json.loads(path.read_text())
    rerun = runner.invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    assert (out / "report.html").is_file() and temp_files(out) == []


# ------------------------------------------------- --force: what it replaces, and what it says


def test_force_removes_only_the_log_the_command_appends_to(tiny_run: Path, tmp_path: Path) -> None:
    """Before: ``evaluate --force`` deleted a user's compare.log (and ``compare --force`` a
    user's evaluate.log, and said it replaced a results.json it never writes): every name of
    either command was taken as the command's own. Now the names a command does not write
    are left alone, refused by none, removed by none."""
    out = tmp_path / "out"
    _make(out, "compare.log", "file")
    _make(out, "comparison.json", "file")
    result = runner.invoke(app, ["evaluate", "--run", str(tiny_run), "--out", str(out), *_EVALUATE])
    assert result.exit_code == 0, result.output
    assert (out / "compare.log").read_text() == "mine\n"
    assert (out / "comparison.json").read_text() == "mine\n"
    assert "replacing" not in result.stderr

    out = tmp_path / "comparison"
    _make(out, "evaluate.log", "file")
    _make(out, "results.json", "file")
    _make(out, "methods", "folder")
    _make(out, "report.html", "file")
    result = runner.invoke(
        app, ["compare", str(tiny_run), "--out", str(out), *_EVALUATE, "--force"]
    )
    assert result.exit_code == 0, result.output
    for name in ("evaluate.log", "results.json", "methods/notes.txt"):
        assert (out / name).read_text() == "mine\n", name
    replacing = [line for line in result.stderr.splitlines() if "--force: replacing" in line]
    assert len(replacing) == 1 and replacing[0].endswith(str(out / "report.html")), replacing
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("ours", [False, True], ids=["user folder", "torchlap's folder"])
def test_force_does_not_claim_to_replace_a_users_figure_it_leaves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, ours: bool
) -> None:
    """A user's figures/mine.png is left in place under --force (only a figure of the same
    name is replaced): the log used to say it was replaced."""
    import logging

    out = tmp_path / "out"
    _make(out, "figures/mine.png", "file")
    _make(out, "tables.md", "file")
    if ours:
        (out / "results.json").write_text(json.dumps({"format": "torchlap-results"}))
    with caplog.at_level(logging.WARNING, logger="torchlap.evaluate.common"):
        foreign = guard_output_folder(out, True)
    lines = [r.getMessage() for r in caplog.records]
    shown = "mine.png" if ours else "figures/"
    assert (
        f"--force: in {out / 'figures'}, what torchlap did not write ({shown}) is replaced only"
        in lines[-1]
    )
    assert lines[-1].endswith("the rest is left in place"), lines
    replaced = [line for line in lines if line.startswith("--force: replacing")]
    assert replaced == ([] if ours else [f"--force: replacing {out / 'tables.md'}"])
    assert (out / "figures" / "mine.png").read_text() == "mine\n" and foreign


# ------------------------------------------------------------------ train --overwrite


def _train(out: Path, *extra: str) -> list[str]:
    from conftest import TINY

    return ["train", "--data", TINY["data"], "--out", str(out), "--arch", TINY["arch"],
            "--epochs", "1", "--n-images", str(TINY["n_images"]), "--image-size",
            str(TINY["image_size"]), "--batch-size", str(TINY["batch_size"]), "--no-progress",
            "--accelerator", "cpu", "--devices", "1", *extra]  # fmt: skip


def test_train_refuses_checkpoints_leading_out_before_deleting_anything(
    run_copy: Path, tmp_path: Path
) -> None:
    """``checkpoints`` a link to a folder on another disk. Before: ``--overwrite`` deleted
    config.json, metrics.json and the weights, then rmdir refused the link (``[Errno 20] Not
    a directory``), and every later train into the folder was refused; past that, the first
    checkpoint's record refused a path leading out of the run folder, after an epoch."""
    scratch = tmp_path / "scratch_disk"
    (run_copy / "checkpoints").rename(scratch)
    (run_copy / "checkpoints").symlink_to(scratch)
    before, kept = snapshot(run_copy), snapshot(scratch)
    result = runner.invoke(app, _train(run_copy, "--overwrite"))
    assert result.exit_code == 2, result.output
    assert "checkpoints is a link to" in result.stderr and "outside the run" in result.stderr
    assert snapshot(run_copy) == before and snapshot(scratch) == kept
    assert "phase 1" not in result.stderr  # nothing trained


def test_train_overwrite_keeps_a_checkpoints_link_inside_the_run(run_copy: Path) -> None:
    """A ``checkpoints`` link to a folder inside the run: --overwrite keeps the link (it used
    to fail at rmdir, after the old run's files were deleted) and the new run writes through
    it."""
    (run_copy / "checkpoints").rename(run_copy / "kept")
    (run_copy / "checkpoints").symlink_to("kept")
    result = runner.invoke(app, _train(run_copy, "--overwrite"))
    assert result.exit_code == 0, result.output
    assert (run_copy / "checkpoints").is_symlink() and (run_copy / "kept" / "phase1").is_dir()
    assert temp_files(run_copy) == []


# ------------------------------------------------------------------ stale figures


def _torchlap_png(path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    mark = PngInfo()
    mark.add_text("Software", "torchlap (matplotlib 3)")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4)).save(path, pnginfo=mark)


def test_evaluate_removes_its_own_stale_figures_only(tiny_run: Path, tmp_path: Path) -> None:
    """Before: every PNG with torchlap's mark in figures/ that this evaluation did not write was
    deleted, so the figures of ``torchlap explain --out OUT/figures`` (or copied from another
    evaluation) went with the next evaluation into OUT. Now only the names an evaluation
    writes go (``overlays_rise.png`` of a run with RISE, rerun without it); every figure an
    evaluation with the checks writes has one of those names."""
    from torchlap.evaluate.outputs import EVALUATION_FIGURES

    out = tmp_path / "out"
    (out / "results.json").parent.mkdir(parents=True)
    run = {"name": tiny_run.name, "run_dir": str(tiny_run), "path": str(tiny_run.resolve())}
    (out / "results.json").write_text(json.dumps({"format": "torchlap-results", "run": run}))
    _torchlap_png(out / "figures" / "scan_01.png")  # torchlap explain's
    _torchlap_png(out / "figures" / "overlays_rise.png")  # an earlier evaluation's
    checks = ["--sanity", "--sanity-images", "2", "--grid-pg", "--grid-pg-grids", "2"]
    args = ["evaluate", "--run", str(tiny_run), "--out", str(out), *_EVALUATE, *checks]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert "scan_01.png" in names and "overlays_rise.png" not in names
    written = [n for n in names if n != "scan_01.png"]
    assert {"overlays_gradcam.png", "sanity_curves.png", "keep_k.png"} <= set(written)
    assert all(EVALUATION_FIGURES.fullmatch(n) for n in written), written


# ------------------------------------------------------------------ explain's subfolders


@pytest.mark.parametrize("kind", ["file", "dangling link"])
def test_explain_refuses_a_subfolder_it_cannot_make_before_any_work(
    tiny_run: Path, tmp_path: Path, kind: str
) -> None:
    """Outputs mirror the inputs' subfolders (``train/0.png`` -> ``OUT/train/0.png``): a file
    (or a link to nothing) at ``OUT/train`` is refused before anything is written. Before: the
    check passed (``OUT/train/0.png`` does not exist), the manifest was written and the first
    batch explained, then ``[Errno 17] File exists`` / ``[Errno 20] Not a directory``."""
    images = tmp_path / "images"
    for split in ("train", "val"):
        _images(images / split, 1)
    out = tmp_path / "out"
    out.mkdir()
    if kind == "file":
        (out / "train").write_text("mine\n")
    else:
        (out / "train").symlink_to(tmp_path / "nowhere")
    before = snapshot(out)
    args = ["explain", str(images), "--run", str(tiny_run), "--methods", "gradcam",
            "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"{out / 'train'}, which is not a folder" in result.stderr
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["train"]
    assert not (tmp_path / "nowhere").exists()
