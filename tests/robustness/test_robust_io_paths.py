"""torchlap.io's readers and path checks, each at its boundary: strict JSON, which temporaries
``clean_stale_temps`` removes (a dead writer's only; never a live process's, never through a
link), folder paths under a file, over-long names, what stands in place of a file, an
unreadable file named, and the SHA-256 of a file larger than one read block."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from torchlap.io import (
    PinnedPath,
    check_folder_path,
    clean_stale_temps,
    fitting_path,
    is_stale_temp,
    loads_strict,
    not_a_file,
    read_file,
    sha256_file,
)

DEAD = 2**22 + 1  # above Linux's largest pid: no process has it


def _temp(folder: Path, name: str, pid: int, token: str = "0123abcd") -> Path:
    """A file named as atomic_write's temporary of ``name`` by process ``pid``."""
    path = folder / f".{name}.{pid}.{token}.torchlap-tmp"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("partial")
    return path


# ------------------------------------------------------------------------------ loads_strict


def test_loads_strict_reads_json_and_refuses_a_key_given_twice() -> None:
    assert loads_strict('{"a": 1, "b": {"a": 2}}', "--ratios") == {"a": 1, "b": {"a": 2}}
    with pytest.raises(ValueError, match="--ratios names 'a' twice in one object; give each"):
        loads_strict('{"a": 1, "a": 2}', "--ratios")
    with pytest.raises(ValueError, match=r"names 'x' twice .* give each method and option once"):
        loads_strict('{"m": {"x": 1, "y": 2, "x": 3}}', "--options", "method and option")


@pytest.mark.parametrize("text", ['{"a": NaN}', "[Infinity]", '{"a": -Infinity}'])
def test_loads_strict_refuses_nan_and_infinity(text: str) -> None:
    with pytest.raises(ValueError, match=r"--ratios holds .*Infinity are refused"):
        loads_strict(text, "--ratios")


def test_loads_strict_refuses_what_is_not_text() -> None:
    with pytest.raises(TypeError, match=r"--ratios must be JSON text .*got dict"):
        loads_strict({"a": 1}, "--ratios")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- stale temporaries


def test_a_live_processs_temporary_is_kept_and_the_process_not_signalled(
    tmp_path: Path,
) -> None:
    """Checking whether a writer is alive sends it signal 0 (nothing), never a real one."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = _temp(tmp_path, "a.json", other.pid)
        mine = _temp(tmp_path, "b.json", os.getpid())
        dead = _temp(tmp_path, "c.json", DEAD)
        assert not is_stale_temp(live) and not is_stale_temp(mine) and is_stale_temp(dead)
        assert clean_stale_temps(tmp_path) == [dead]
        assert live.exists() and mine.exists() and not dead.exists()
        with pytest.raises(subprocess.TimeoutExpired):  # still running: not signalled
            other.wait(timeout=0.5)
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()


def test_a_process_owned_by_someone_else_counts_as_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_permitted(pid: int, signal_number: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", not_permitted)
    other = _temp(tmp_path, "a.json", 4321)
    assert not is_stale_temp(other) and clean_stale_temps(tmp_path) == []


@pytest.mark.parametrize(
    "name",
    [
        ".a.json.12.0123abc.torchlap-tmp",  # 7 hex digits
        ".a.json.12.0123abcde.torchlap-tmp",  # 9
        ".a.json.12.0123ABCD.torchlap-tmp",  # not lowercase
        "a.json.12.0123abcd.torchlap-tmp",  # no leading dot
        ".a.json.x12.0123abcd.torchlap-tmp",  # no pid
        ".a.json.12.0123abcd.torchlap-tmp.bak",
    ],
)
def test_names_that_are_not_torchlaps_temporaries_are_never_stale(name: str) -> None:
    assert not is_stale_temp(Path(name.replace("12", str(DEAD))))


def test_only_the_top_folder_is_cleaned_unless_recursive(tmp_path: Path) -> None:
    top = _temp(tmp_path, "a.json", DEAD)
    nested = _temp(tmp_path / "maps", "b.png", DEAD)
    assert clean_stale_temps(tmp_path, recursive=False) == [top]
    assert nested.exists()
    assert clean_stale_temps(tmp_path) == [nested]  # recursive by default
    assert clean_stale_temps(tmp_path / "missing") == []


def test_a_dead_writers_staging_folder_is_removed(tmp_path: Path) -> None:
    staging = tmp_path / f".export.{DEAD}.0123abcd.torchlap-tmp"
    (staging / "images").mkdir(parents=True)
    (staging / "images" / "a.png").write_bytes(b"png")
    assert clean_stale_temps(tmp_path) == [staging] and list(tmp_path.iterdir()) == []


def test_links_named_as_temporaries_are_removed_without_following_them(tmp_path: Path) -> None:
    """A link to a folder is left (and not reported as failing); a link to a file is removed,
    the file it leads to stays."""
    users = tmp_path / "users"
    (users / "data").mkdir(parents=True)
    (users / "data" / "keep.txt").write_text("mine")
    (users / "keep.txt").write_text("mine")
    to_folder = tmp_path / f".a.{DEAD}.0123abcd.torchlap-tmp"
    to_folder.symlink_to(users / "data", target_is_directory=True)
    to_file = tmp_path / f".b.{DEAD}.0123abcd.torchlap-tmp"
    to_file.symlink_to(users / "keep.txt")
    assert clean_stale_temps(tmp_path, recursive=False) == [to_file]
    assert to_folder.is_symlink() and not os.path.lexists(to_file)
    assert (users / "data" / "keep.txt").read_text() == "mine"
    assert (users / "keep.txt").read_text() == "mine"


def test_a_staging_folder_that_cannot_be_emptied_is_named_not_raised(
    tmp_path: Path, stuck_png: None, caplog: pytest.LogCaptureFixture
) -> None:
    staging = tmp_path / f".export.{DEAD}.0123abcd.torchlap-tmp"
    staging.mkdir()
    (staging / "stuck.png").write_bytes(b"png")
    with caplog.at_level(logging.WARNING, logger="torchlap.io"):
        assert clean_stale_temps(tmp_path) == []
    assert (staging / "stuck.png").exists()
    assert f"could not remove {staging}, left by a killed process" in caplog.text


# ------------------------------------------------------------------------------ path checks


def test_check_folder_path_refuses_a_path_under_a_file_or_a_dangling_link(
    tmp_path: Path,
) -> None:
    (tmp_path / "file.txt").write_text("x")
    check_folder_path(tmp_path / "new" / "deeper", "--out")  # a folder to make: fine
    with pytest.raises(ValueError, match=r"--maps .*a[/\\]b is inside .*file\.txt, which is"):
        check_folder_path(tmp_path / "file.txt" / "a" / "b", "--maps")
    (tmp_path / "gone").symlink_to(tmp_path / "nothing")
    with pytest.raises(ValueError, match=r"is inside .*gone, which is not a folder"):
        check_folder_path(tmp_path / "gone" / "out")


def test_fitting_path_takes_names_up_to_255_bytes_and_paths_up_to_4096() -> None:
    name = "é" * 127 + "a"  # 255 bytes in UTF-8
    assert fitting_path(f"out/{name}", "--out") == f"out/{name}"
    assert fitting_path("", "--out") == ""
    for too_long in (f"{name}a", f"out/{name}a", f"a/{name}b/c"):
        with pytest.raises(ValueError, match=r"--out .* file and folder names take at most 255"):
            fitting_path(too_long, "--out")
    path = "/".join(["d" * 200] * 20) + "/"  # 20 * 201 = 4020 bytes
    assert fitting_path(path + "e" * 76, "--out") == path + "e" * 76  # 4096
    with pytest.raises(ValueError, match="a path 4096"):
        fitting_path(path + "e" * 77, "--out")  # 4097


def test_not_a_file_says_what_stands_there(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    os.mkfifo(tmp_path / "pipe")
    assert not_a_file(tmp_path / "file") is None
    assert not_a_file(tmp_path / "missing") is None
    assert not_a_file(tmp_path / "folder") == "a folder"
    assert not_a_file(tmp_path / "dangling") == "a link to nothing or a link loop"
    assert not_a_file(tmp_path / "loop") == "a link to nothing or a link loop"
    assert not_a_file(tmp_path / "pipe") == "not a regular file (a pipe, socket or device)"


# ---------------------------------------------------------------------------------- reading


def test_read_file_names_a_file_it_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"w")
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "missing.safetensors")
    with pytest.raises(IsADirectoryError):
        read_file(tmp_path)

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    said = (
        f"{file} cannot be read (Permission denied); torchlap needs read access to the run's "
        "weights: fix the file's permissions (or restore it)"
    )
    with pytest.raises(PermissionError, match=f"^{re.escape(said)}$"):
        read_file(file, "the run's weights")


def test_a_changed_pinned_file_is_named_with_both_digests(tmp_path: Path) -> None:
    file = tmp_path / "w.bin"
    file.write_bytes(b"swapped")
    actual = hashlib.sha256(b"swapped").hexdigest()
    checked = hashlib.sha256(b"checked").hexdigest()
    with pytest.raises(ValueError) as raised:
        read_file(PinnedPath(file, checked))
    assert f"its SHA-256 is now {actual[:16]}..., the checked file's was {checked[:16]}...;" in (
        str(raised.value)
    )


def test_sha256_file_is_the_digest_of_all_its_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * (5 * 4096 + 3)  # more than 5 MiB: several read blocks
    (tmp_path / "w.bin").write_bytes(data)
    assert sha256_file(tmp_path / "w.bin") == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
