"""Fixtures of the logging tests."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator

import pytest

from torchlap import logs


@pytest.fixture
def rich_mode() -> Iterator[None]:
    """Progress shown with rich for the test, the default mode (``auto``) afterwards."""
    logs.set_progress_mode("rich")
    try:
        yield
    finally:
        logs.set_progress_mode("auto")


@pytest.fixture
def logging_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Rank 0 of no launcher; root's handlers and levels, the warnings capture and the
    progress mode as they were, afterwards."""
    for pair in logs.RANK_VARIABLES:
        for name in pair:
            monkeypatch.delenv(name, raising=False)
    for name in ("NODE_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    ours = logging.getLogger("torchlap")
    before = list(root.handlers)
    monkeypatch.setattr(root, "handlers", list(before))
    levels = root.level, ours.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in before:
                handler.close()
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
        logging.captureWarnings(False)
        logs.set_progress_mode("auto")


class Clock:
    """A stand-in for ``time`` in torchlap.logs: ``monotonic()`` moves only when told to. It
    starts at the real clock (rounded to 1/1024 s, so that sums of whole seconds are exact):
    the elapsed times torchlap prints come out as the seconds the test advanced since the
    last ``restart()`` (the tasks take their start from the real clock)."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.now = math.floor(time.monotonic() * 1024) / 1024

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(logs, "time", fake)
    return fake
