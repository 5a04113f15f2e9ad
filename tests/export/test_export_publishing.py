"""The file an export publishes. An ONNX model too large for one file (torch.onnx writes its
weights to a side file ``<file>.data`` next to the file it was given, torchlap's temporary) is
refused: neither a file without its weights is published (an old file stays) nor is the side
file left behind; a writer failing after the side file leaves nothing either. The temporaries
of killed exports are removed next to the file, not in the folders below it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from torchlap.export import _publish


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _with_external_weights(path: Path) -> None:
    path.write_bytes(b"graph without its weights")
    path.with_name(path.name + ".data").write_bytes(b"weights")


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_model_with_external_weights_is_refused_and_leaves_nothing(
    tmp_path: Path, overwrite: bool
) -> None:
    out = tmp_path / "m.onnx"
    if overwrite:
        out.write_bytes(b"an older export")
    with pytest.raises(ValueError, match=r"m\.onnx: the model is too large for a single ONNX"):
        _publish(out, _with_external_weights, overwrite=overwrite)
    assert _files(tmp_path) == (["m.onnx"] if overwrite else [])
    if overwrite:
        assert out.read_bytes() == b"an older export"


def test_a_writer_that_fails_after_the_side_file_leaves_nothing(tmp_path: Path) -> None:
    def failing(path: Path) -> None:
        _with_external_weights(path)
        raise RuntimeError("the exporter failed")

    with pytest.raises(RuntimeError, match="the exporter failed"):
        _publish(tmp_path / "m.onnx", failing, overwrite=False)
    assert _files(tmp_path) == []


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_publishing_cleans_only_the_folder_of_the_file_not_its_subfolders(tmp_path) -> None:
    """The export removes what killed exports left next to ``out`` only: a folder below it
    (another run's, possibly written from another machine of a shared file system, where a
    process id says nothing) is not walked."""
    pid = _dead_pid()
    stale = tmp_path / f".old.onnx.{pid}.0123abcd.torchlap-tmp"
    stale.write_bytes(b"half an export")
    (tmp_path / "runs").mkdir()
    below = tmp_path / "runs" / f".model.safetensors.{pid}.0123abcd.torchlap-tmp"
    below.write_bytes(b"someone's")
    _publish(tmp_path / "m.onnx", lambda path: path.write_bytes(b"export"), overwrite=False)
    assert not stale.exists() and below.exists()
    assert (tmp_path / "m.onnx").read_bytes() == b"export"


def test_overwrite_reports_a_replacement_only_when_something_was_there(tmp_path) -> None:
    """``_publish`` says whether it replaced a file (``export_run`` then logs '--overwrite:
    replaced'): not for a new file, also with ``overwrite``; for a file or a link to nothing
    (the link is replaced, its target is never created)."""

    def write(path: Path) -> None:
        path.write_bytes(b"export")

    assert _publish(tmp_path / "new.onnx", write, overwrite=True) is False
    (tmp_path / "old.onnx").write_bytes(b"an older export")
    assert _publish(tmp_path / "old.onnx", write, overwrite=True) is True
    (tmp_path / "link.onnx").symlink_to(tmp_path / "nowhere.onnx")
    assert _publish(tmp_path / "link.onnx", write, overwrite=True) is True
    assert not (tmp_path / "link.onnx").is_symlink() and not (tmp_path / "nowhere.onnx").exists()
    for name in ("new.onnx", "old.onnx", "link.onnx"):
        assert (tmp_path / name).read_bytes() == b"export"


def test_an_existing_file_is_refused_before_the_run_is_read(tmp_path, monkeypatch) -> None:
    """Without ``overwrite`` a file at ``out`` (torchlap's or anyone's) is refused up front,
    with the advice to pass --overwrite, not after the export's work (where publishing would
    say it was created 'while torchlap exported')."""
    import torchlap.export as export

    def no_work(*args, **kwargs):
        raise AssertionError("the export started")

    monkeypatch.setattr(export, "load_run", no_work)
    out = tmp_path / "mine.pt2"
    out.write_text("not torchlap's")
    with pytest.raises(FileExistsError, match=r"mine\.pt2 exists; pass --overwrite to replace it"):
        export.export_run(tmp_path / "run", out, "exported-program")
    assert out.read_text() == "not torchlap's" and _files(tmp_path) == ["mine.pt2"]
