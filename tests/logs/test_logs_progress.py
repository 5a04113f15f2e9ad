"""Progress: the mode in effect, the plain lines (their text and their interval, also for
training), and rich's display for nested ``track`` calls (rows, totals, one display)."""

from __future__ import annotations

import io
import logging
import sys
from types import SimpleNamespace

import pytest
from rich.console import Console

from torchlap import logs


def test_seconds_and_task_lines() -> None:
    assert [logs._seconds(v) for v in (0.4, 59.4, 60, 125, 3600)] == [
        "0 s", "59 s", "1 min 00 s", "2 min 05 s", "60 min 00 s",
    ]  # fmt: skip
    started = logs.time.monotonic() - 30
    assert logs._Task("d", 4, "items", 2, started).line() == "d: 2/4 items, 30 s, ETA 30 s"
    assert logs._Task("d", None, "items", 2, started).line() == "d: 2 items, 30 s"
    assert logs._Task("d", 4, "items", 0, started).line() == "d: 0/4 items, 30 s"
    assert logs._Task("d", 4, "items").line() == "d: 0/4 items, 0 s"


@pytest.mark.parametrize(
    ("mode", "terminal", "rank", "expected"),
    [
        ("auto", True, "0", "rich"),
        ("auto", False, "0", "plain"),
        ("rich", False, "0", "rich"),
        ("plain", True, "0", "plain"),
        ("off", True, "0", "off"),
        ("rich", True, "1", "off"),
    ],
)
def test_progress_mode(logging_state, monkeypatch, mode, terminal, rank, expected) -> None:
    monkeypatch.setattr(logs, "_stderr_is_terminal", lambda: terminal)
    monkeypatch.setenv("LOCAL_RANK", rank)
    logs.set_progress_mode(mode)
    assert logs.progress_mode() == expected


def _progress_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_plain_lines_come_every_interval(logging_state, clock, capsys) -> None:
    logs.setup_logging()
    logs.set_progress_mode("plain")
    for _ in logs.track(range(3), description="evaluating", unit="images"):
        clock.now += 5.0  # a line once 10 s have passed: after the 2nd image
    assert _progress_lines(capsys) == ["evaluating: 2/3 images, 10 s, ETA 5 s"]
    clock.restart()
    for _ in logs.track(["a"], description="methods", unit="methods"):
        clock.now += 9.0  # an inner loop keeps the outer one's clock
        for _ in logs.track(range(2), description="batches"):
            clock.now += 1.0
    (line,) = _progress_lines(capsys)  # (the inner task counts from the clock's restart)
    assert line.startswith("batches: 1/2 batches, ")
    assert line.endswith("(methods: 0/1 methods, 10 s)")
    clock.restart()
    for _ in logs.track(range(2), description="again", unit="steps"):
        clock.now += 10.0  # the finished loops are no outer steps of this one
    assert _progress_lines(capsys) == [
        "again: 1/2 steps, 10 s, ETA 10 s",
        "again: 2/2 steps, 20 s, ETA 0 s",
    ]


@pytest.fixture
def rich_display(rich_mode: None, monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What torchlap's rich console (a terminal) shows."""
    out = io.StringIO()
    monkeypatch.setattr(logs, "_own_console", Console(file=out, force_terminal=True, width=100))
    return out


def _rows() -> list[tuple[str, float | None, float]]:
    return [(t.description, t.total, t.completed) for t in logs._display.progress.tasks]


def test_rich_rows_of_nested_loops_share_one_display(rich_display) -> None:
    streams = sys.stdout, sys.stderr
    seen = []
    for _method in logs.track(["rise", "lap"], description="explaining", describe=str):
        display = logs._display.progress
        assert display.live.is_started and (sys.stdout, sys.stderr) == streams
        for _batch in logs.track(iter(range(2)), description="batches"):
            assert logs._display.progress is display
            seen.append(_rows())
        assert logs._display.progress is display and len(_rows()) == 1
    assert seen[0] == [("explaining rise", 2, 0), ("batches", None, 0)]
    assert seen[1] == [("explaining rise", 2, 0), ("batches", None, 1)]
    assert seen[2][0] == ("explaining lap", 2, 1)
    assert logs._display.progress is None and not display.live.is_started


def test_the_bar_is_erased_once_the_loop_ends(rich_display: io.StringIO) -> None:
    assert list(logs.track(range(2), description="tracked")) == [0, 1]
    shown = rich_display.getvalue()
    assert "\x1b[2K" in shown[shown.rindex("tracked") :]  # its last frame erased


def test_a_given_total_wins_over_the_length(rich_display) -> None:
    totals = [logs._display.progress.tasks[0].total for _ in logs.track([1, 2, 3], total=5)]
    assert totals == [5, 5, 5]


@pytest.mark.parametrize(
    ("mode", "terminal", "enabled", "expected"),
    [
        ("auto", False, None, ("PlainTrainingProgress", False)),
        ("auto", True, None, ("EpochFromOneBar", True)),
        ("auto", False, True, ("EpochFromOneBar", True)),  # --progress without a terminal
        ("auto", True, False, (None, False)),
        ("plain", False, True, ("PlainTrainingProgress", False)),
        ("rich", False, None, ("EpochFromOneBar", True)),
        ("off", True, True, (None, False)),
    ],
)
def test_training_progress_callbacks(logging_state, monkeypatch, mode, terminal, enabled, expected):
    monkeypatch.setattr(logs, "_stderr_is_terminal", lambda: terminal)
    logs.set_progress_mode(mode)
    callbacks, flag = logs.lightning_progress_callbacks(enabled)
    assert ([type(c).__name__ for c in callbacks] or [None])[0] == expected[0]
    assert len(callbacks) <= 1 and flag is expected[1]


def test_the_bar_counts_epochs_from_one() -> None:
    bar = logs._epoch_from_one_bar()
    bar._trainer = SimpleNamespace(max_epochs=3)
    assert bar._get_train_description(0) == "epoch 1/3 "  # as wide as "Validation"
    assert bar._get_train_description(11) == "epoch 12/3"
    bar._trainer = SimpleNamespace(max_epochs=None)
    assert bar._get_train_description(1) == "epoch 2   "


def _train_lines(module: object, batches: float, caplog, steps: int = 4) -> list[str]:
    logs.time.restart()
    callback = logs._plain_training_progress()
    trainer = SimpleNamespace(num_training_batches=batches, current_epoch=1, max_epochs=3)
    callback.on_train_batch_end(trainer, module, None, None, 0)  # before an epoch: nothing
    callback.on_train_epoch_start(trainer, module)
    for index in range(steps):
        logs.time.now += 5.0
        callback.on_train_batch_end(trainer, module, None, None, index)
    lines = [r.getMessage() for r in caplog.records if r.name == "torchlap.progress"]
    caplog.clear()
    return lines


def test_plain_training_lines(logging_state, clock, caplog, monkeypatch) -> None:
    caplog.set_level(logging.INFO, logger="torchlap.progress")
    assert _train_lines(SimpleNamespace(phase_index=1), 4, caplog) == [
        "phase 2 epoch 2/3: 2/4 batches, 10 s, ETA 10 s",
        "phase 2 epoch 2/3: 4/4 batches, 20 s, ETA 0 s",
    ]
    assert _train_lines(SimpleNamespace(phase_index=None), float("inf"), caplog, 2) == [
        "epoch 2/3: 2 batches, 10 s"
    ]
    assert _train_lines(SimpleNamespace(), None, caplog, 2) == ["epoch 2/3: 2 batches, 10 s"]
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert _train_lines(SimpleNamespace(), 4, caplog) == []
