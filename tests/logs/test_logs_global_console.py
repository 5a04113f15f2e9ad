"""torchlap's rich output (progress bars, log lines on a terminal) leaves rich's global console
as the caller set it up, and its live display stops whatever stops the loop it tracks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import rich
from rich.progress import Progress

from torchlap import logs


def test_progress_and_log_lines_leave_the_global_console_alone(
    rich_mode: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the first bar or terminal log line called ``rich.reconfigure(stderr=True)``,
    which replaced every setting of the caller's global console (here its width and record
    flag) and sent the caller's own ``rich.print`` output to stderr from then on."""
    monkeypatch.setattr(logs, "_stderr_is_terminal", lambda: True)
    console = rich.get_console()
    saved = dict(vars(console))
    monkeypatch.setattr(console, "__dict__", {**saved})  # the caller's own settings:
    console.width, console.record = 77, True  # restored by monkeypatch afterwards
    settings = dict(vars(console))
    for _ in logs.track(range(3), description="tracked"):
        logs._ConsoleHandler().emit(logging.makeLogRecord({"msg": "a line", "levelno": 30}))
    assert dict(vars(console)) == settings
    assert not console.stderr and console.width == 77 and console.record


def test_a_failing_task_start_stops_the_display(
    rich_mode: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the display was started (and counted) before the ``try`` that stops it, so a
    task that failed to start left it running, and every later bar inside it."""

    def refuse(self: Progress, *args: object, **kwargs: object) -> int:
        raise RuntimeError("no task")

    monkeypatch.setattr(Progress, "add_task", refuse)
    with pytest.raises(RuntimeError, match="no task"):
        list(logs.track(range(2)))
    assert logs._display.progress is None and logs._display.users == 0


def test_a_run_with_the_rich_bar_gives_the_global_console_back(
    rich_mode: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fit`` with the rich progress bar: Lightning's RichProgressBar reconfigures rich's
    global console (to stderr, as torchlap asks); afterwards it has the caller's settings
    again. Before: the caller's console wrote to stderr with rich's default settings."""
    from torchlap.train import TrainConfig, fit

    console = rich.get_console()
    monkeypatch.setattr(console, "__dict__", dict(vars(console)))
    console.width, console.record = 77, True
    settings = dict(vars(console))
    config = TrainConfig(
        data="lesions", out=str(tmp_path / "run"), arch="smallcnn", epochs=1, image_size=32,
        batch_size=16, n_images=40, progress_bar=True, accelerator="cpu", devices="1",
    )  # fmt: skip
    fit(config)
    assert dict(vars(console)) == settings


def test_settings_added_in_the_block_are_gone_afterwards(monkeypatch: pytest.MonkeyPatch) -> None:
    console = rich.get_console()
    monkeypatch.setattr(console, "__dict__", dict(vars(console)))
    settings = dict(vars(console))
    with logs.kept_rich_console():
        rich.reconfigure(stderr=True, width=33)
        console.added_in_the_block = True
    assert dict(vars(console)) == settings
