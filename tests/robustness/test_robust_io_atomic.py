"""torchlap.io's atomic writers, each promise on its own: a temporary next to the target with
the documented name, fsynced and given the usual mode before the rename, the folder fsynced
after it; ``replace=False`` never replaces a file (also without hard links); a folder appears
complete or not at all; a failed write leaves neither a temporary nor a changed target."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path

import pytest

import torchlap.io as io_module
from torchlap.io import atomic_folder, atomic_path, atomic_write, atomic_write_json

# the module docstring's temporary name: ".<name>.<pid>.<8 hex digits>.torchlap-tmp"
TEMP_NAME = r"\.{name}\.{pid}\.[0-9a-f]{{8}}\.torchlap-tmp"


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def umask_022():
    """The umask 022 (files 0644, folders 0755) while the test runs."""
    mask = os.umask(0o022)
    yield
    os.umask(mask)


def test_the_temporary_is_named_as_documented_next_to_the_target(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "weights.bin"  # missing folders above are made
    with atomic_path(target) as temporary:
        assert temporary.parent == target.parent
        pattern = TEMP_NAME.format(name=re.escape("weights.bin"), pid=os.getpid())
        assert re.fullmatch(pattern, temporary.name), temporary.name
        temporary.write_bytes(b"w")
    assert target.read_bytes() == b"w" and _entries(target.parent) == ["weights.bin"]


def test_the_file_is_fsynced_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power cut after the rename must find the new bytes and the new name on disk."""
    target = tmp_path / "a.json"
    calls: list[tuple[int, bool]] = []
    fsync = os.fsync

    def recording(descriptor: int) -> None:
        calls.append((os.fstat(descriptor).st_ino, target.exists()))
        fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording)
    atomic_write(target, "{}")
    folder = tmp_path.stat().st_ino
    assert calls == [(target.stat().st_ino, False), (folder, True)]
    calls.clear()
    with atomic_folder(tmp_path / "out") as staging:
        (staging / "x.txt").write_text("x")
    assert calls == [(folder, True)]


def test_the_folder_fsync_closes_its_descriptor(tmp_path: Path) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to count open descriptors")
    atomic_write(tmp_path / "first.txt", "x")  # (anything opened once, lazily)
    before = len(os.listdir("/proc/self/fd"))
    for index in range(5):
        atomic_write(tmp_path / f"{index}.txt", "x")
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_temporary_made_private_by_its_writer_gets_the_usual_mode(
    tmp_path: Path, umask_022: None
) -> None:
    """Writers given a name (torch.save, savefig) may create it 0600; the result is 0644."""
    target = tmp_path / "fig.png"
    with atomic_path(target) as temporary:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(descriptor, b"png")
        os.close(descriptor)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_nothing_written_to_the_temporary_is_refused_and_publishes_nothing(
    tmp_path: Path,
) -> None:
    target = tmp_path / "model.onnx"
    with (
        pytest.raises(OSError, match=r"nothing was written to .* for .*model\.onnx"),
        atomic_path(target),
    ):
        pass
    assert _entries(tmp_path) == []


@pytest.mark.parametrize("write", ["atomic_path", "atomic_write"])
def test_by_default_an_existing_file_is_replaced(tmp_path: Path, write: str) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    if write == "atomic_path":
        with atomic_path(target) as temporary:
            temporary.write_text("new")
    else:
        atomic_write(target, "new")
    assert target.read_text() == "new" and _entries(tmp_path) == ["metrics.json"]


def test_replace_false_publishes_a_new_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    assert atomic_write(target, b"onnx", replace=False) == target
    assert target.read_bytes() == b"onnx" and target.stat().st_nlink == 1
    assert _entries(tmp_path) == ["model.onnx"]


@pytest.mark.parametrize("hard_links", [True, False], ids=["hard links", "no hard links"])
def test_replace_false_never_replaces_a_file_that_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hard_links: bool
) -> None:
    """A file made while torchlap wrote stays as it is; the temporary goes."""
    if not hard_links:

        def no_link(source: object, target: object) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    target = tmp_path / "model.onnx"
    refused = pytest.raises(FileExistsError, match="pass overwrite to replace it")
    with refused, atomic_path(target, replace=False) as temporary:
        temporary.write_bytes(b"torchlap's")
        target.write_bytes(b"the user's")  # appears while torchlap writes
    assert target.read_bytes() == b"the user's" and _entries(tmp_path) == ["model.onnx"]
    other = tmp_path / "new.onnx"  # without hard links, a new name is still published
    atomic_write(other, b"onnx", replace=False)
    assert other.read_bytes() == b"onnx" and _entries(tmp_path) == ["model.onnx", "new.onnx"]


def test_atomic_folder_appears_complete_with_the_usual_mode(
    tmp_path: Path, umask_022: None
) -> None:
    target = tmp_path / "made" / "for it" / "export"  # missing folders above are made
    with atomic_folder(target) as staging:
        pattern = TEMP_NAME.format(name="export", pid=os.getpid())
        assert re.fullmatch(pattern, staging.name) and staging.parent == target.parent
        assert not target.exists()
        (staging / "a.txt").write_text("a")
    assert _entries(target) == ["a.txt"] and _entries(target.parent) == ["export"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


def test_atomic_folder_takes_the_place_of_an_empty_folder_only(tmp_path: Path) -> None:
    target = tmp_path / "export"
    target.mkdir()
    with atomic_folder(target) as staging:
        (staging / "a.txt").write_text("a")
    assert _entries(target) == ["a.txt"]
    with pytest.raises(OSError), atomic_folder(target) as staging:
        (staging / "b.txt").write_text("b")
    assert _entries(target) == ["a.txt"] and _entries(tmp_path) == ["export"]


def test_atomic_folder_removes_its_staging_folder_on_error(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_folder(tmp_path / "export") as staging:
        (staging / "sub").mkdir()
        (staging / "sub" / "a.txt").write_text("a")
        raise KeyboardInterrupt
    assert _entries(tmp_path) == []


def test_a_staging_folder_left_half_removed_does_not_hide_the_writers_error(
    tmp_path: Path, stuck_png: None
) -> None:
    """The error that stopped the writer is what the caller sees, not the cleanup's."""
    with pytest.raises(ValueError, match="the writer's"), atomic_folder(tmp_path / "x") as staging:
        (staging / "stuck.png").write_bytes(b"png")
        raise ValueError("the writer's")
    assert not (tmp_path / "x").exists()


def test_atomic_write_writes_text_as_utf8_and_bytes_as_they_are(tmp_path: Path) -> None:
    atomic_write(tmp_path / "t.txt", "Läsion ✓")
    assert (tmp_path / "t.txt").read_bytes() == b"L\xc3\xa4sion \xe2\x9c\x93"
    atomic_write(tmp_path / "b.bin", bytearray(b"\x00\xff"))
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    atomic_write(tmp_path / "c.bin", lambda handle: handle.write(b"called"))
    assert (tmp_path / "c.bin").read_bytes() == b"called"


def test_atomic_write_json_is_indented_and_keeps_nan_unless_refused(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    atomic_write_json(target, {"loss": float("nan"), "k": [1]})
    assert target.read_text() == '{\n  "loss": NaN,\n  "k": [\n    1\n  ]\n}\n'
    with pytest.raises(ValueError, match="not JSON compliant"):
        atomic_write_json(target, {"loss": float("inf")}, allow_nan=False)
    assert json.loads(target.read_text())["k"] == [1]  # the earlier file stays


def test_bad_arguments_are_refused_before_any_work(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    with pytest.raises(TypeError, match="replace must be True or False, got 'no'"):
        atomic_write(target, "x", replace="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="allow_nan must be True or False, got 1"):
        atomic_write_json(target, {}, allow_nan=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="recursive must be True or False, got 'yes'"):
        io_module.clean_stale_temps(tmp_path, recursive="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"path must be a path .*got int"):
        atomic_write_json(3, object())  # type: ignore[arg-type]  # the path, before the JSON
    with pytest.raises(ValueError, match="path must be a path, got an empty one"), atomic_path(""):
        pass
    assert _entries(tmp_path) == []
