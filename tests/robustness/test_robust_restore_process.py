"""Process-wide state torchlap reads or changes for a moment comes back as it was: the umask
(every file torchlap writes gets mode 0666 minus it) and the levels of Lightning's loggers
(quieted while a sharded evaluation starts its processes)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from torchlap.io import atomic_write

PROC_STATUS = Path("/proc/self/status")


def _recording_umask(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.umask

    def umask(mask: int) -> int:
        calls.append(mask)
        return real(mask)

    monkeypatch.setattr(os, "umask", umask)
    return calls


@pytest.mark.skipif(not PROC_STATUS.is_file(), reason="no /proc/self/status (not Linux)")
def test_writing_a_file_does_not_set_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the umask was read by setting it to 0 and back, so a file another thread made
    meanwhile got mode 0666, and a KeyboardInterrupt between the two calls left it at 0."""
    mask = os.umask(0o027)
    try:
        calls = _recording_umask(monkeypatch)
        atomic_write(tmp_path / "a.txt", "x")
        assert calls == []
    finally:
        monkeypatch.undo()
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640


def test_without_proc_the_umask_is_read_under_the_strictest_mask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where /proc cannot be read, the umask is set to 0o077 (never 0) while it is read, and
    put back."""
    real_read = Path.read_text

    def read_text(path: Path, *args: object, **kwargs: object) -> str:
        if path == PROC_STATUS:
            raise OSError("no /proc here")
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    mask = os.umask(0o027)
    try:
        calls = _recording_umask(monkeypatch)
        atomic_write(tmp_path / "a.txt", "x")
        assert calls == [0o077, 0o027]  # read under 0o077, then put back
    finally:
        monkeypatch.undo()
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640


class _FabricStub:
    def __init__(self, **options: object) -> None:
        raise RuntimeError("no processes in this test")


def test_sharded_launch_gives_lightnings_logger_levels_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sharded evaluation quiets Lightning's loggers while Fabric starts: their levels come
    back when Fabric fails, and when a KeyboardInterrupt lands on any line before the guarded
    block ends. Before: the levels were lowered before the ``try``, so an interrupt between
    the first and the second logger left the first at WARNING."""
    import logging

    import lightning.fabric
    from test_robust_restore_lines import run_interrupted, setup_lines

    from torchlap.evaluate.shard import ShardPlan, launch_sharded

    monkeypatch.setattr(lightning.fabric, "Fabric", _FabricStub)
    loggers = [logging.getLogger(n) for n in ("lightning.fabric", "lightning.pytorch")]
    levels = [each.level for each in loggers]
    plan = ShardPlan("cpu", 2, 1, 2)

    def launch() -> None:
        with contextlib.suppress(RuntimeError):  # the stub's; an interrupt goes through
            launch_sharded(plan, lambda: None)

    try:
        for each in loggers:
            each.setLevel(logging.INFO)
        code, lines = setup_lines(launch_sharded)
        fired = 0
        for line, hits in lines:
            for hit in range(1, hits + 1):
                fired += run_interrupted(code, line, hit, launch)
                assert [each.level for each in loggers] == [logging.INFO] * 2, (line, hit)
        assert fired >= 3
    finally:
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)
