"""What ``setup_logging`` prints on stderr: whose INFO lines, which repeats, the level prefix,
tracebacks, Python warnings, colours on a terminal, and Lightning's own handlers taken over."""

from __future__ import annotations

import io
import logging
import sys
import warnings

import pytest
from rich.console import Console

from torchlap import logs


def test_errors_repeat_other_lines_show_once_per_level(logging_state, capsys) -> None:
    logs.setup_logging()
    log = logging.getLogger("torchlap.x")
    for _ in range(2):
        log.error("boom")
        log.warning("careful")
    log.info("careful")  # the same text at another level is another event
    log.critical("down")
    assert capsys.readouterr().err.splitlines() == [
        "error: boom",
        "warning: careful",
        "error: boom",
        "careful",
        "critical: down",
    ]


def test_info_lines_are_torchlaps_only_unless_verbose(logging_state, capsys) -> None:
    logs.setup_logging()
    logging.getLogger("torchlap").info("a")
    logging.getLogger("torchlap.evaluate.run").info("b")
    logging.getLogger("torchlapper").info("not ours")
    logging.getLogger("some.library").info("not ours either")
    logging.getLogger("some.library").warning("c")
    assert capsys.readouterr().err.splitlines() == ["a", "b", "warning: c"]
    logs.setup_logging(verbose=True)
    logging.getLogger("torchlap").debug("d")
    logging.getLogger("some.library").info("e")
    logs.setup_logging()  # back to INFO: torchlap's DEBUG hidden again
    logging.getLogger("torchlap").debug("hidden")
    assert capsys.readouterr().err.splitlines() == ["d", "e"]


def test_tracebacks_follow_errors_only(logging_state, capsys) -> None:
    logs.setup_logging()
    log = logging.getLogger("torchlap")
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("failed")
        log.warning("went on", exc_info=True)
    log.error("plain error")
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: failed"
    assert err[1] == "Traceback (most recent call last):"
    assert err[-3:] == ["ValueError: bad value", "warning: went on", "error: plain error"]


def test_python_warnings_show_their_first_line_other_lines_all(logging_state, capsys) -> None:
    logs.setup_logging()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful", UserWarning, stacklevel=1)
    logging.getLogger("torchlap").warning("two\nlines")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert err[0].startswith("warning: ") and err[0].endswith(": UserWarning: careful")
    assert err[1:] == ["warning: two", "lines"]


def test_terminal_lines_are_coloured_by_level_and_not_wrapped(logging_state, monkeypatch) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", width=20)
    monkeypatch.setattr(logs, "_own_console", console)
    monkeypatch.setattr(logs, "_stderr_is_terminal", lambda: True)
    logs.setup_logging()
    log = logging.getLogger("torchlap")
    log.info("an information line longer than the console")
    log.warning("w")
    log.error("e")
    assert out.getvalue().splitlines() == [
        "an information line longer than the console",
        "\x1b[33mwarning: w\x1b[0m",
        "\x1b[1;31merror: e\x1b[0m",
    ]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stderr_is_a_terminal_only_when_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert logs._stderr_is_terminal() is True
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert logs._stderr_is_terminal() is False
    monkeypatch.setattr(sys, "stderr", object())  # no isatty
    assert logs._stderr_is_terminal() is False
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)  # isatty raises ValueError
    assert logs._stderr_is_terminal() is False


def test_setting_up_again_keeps_one_console_and_the_other_handlers(
    logging_state, capsys, tmp_path
) -> None:
    users = io.StringIO()
    logging.getLogger().addHandler(logging.StreamHandler(users))
    logs.setup_logging()
    with logs.log_file(tmp_path / "run.log"):
        logs.setup_logging()
        logging.getLogger("torchlap").info("once")
    assert capsys.readouterr().err.splitlines() == ["once"]
    assert users.getvalue() == "once\n"
    assert (tmp_path / "run.log").read_text().endswith("INFO torchlap: once\n")


class _KeptHandler(logging.StreamHandler):
    """Not Lightning's plain stderr handler: left where it is."""


def test_lightnings_stderr_handlers_give_way_once_set_up(logging_state, monkeypatch, capsys):
    logger = logging.getLogger("lightning_fabric")
    lightnings, kept = logging.StreamHandler(io.StringIO()), _KeptHandler(io.StringIO())
    monkeypatch.setattr(logger, "handlers", [lightnings, kept])
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.StreamHandler(io.StringIO())])
    logs.adopt_lightning_loggers()  # torchlap's logging not set up: Lightning's own stays
    assert logger.handlers == [lightnings, kept] and not logger.propagate
    logs.setup_logging()
    assert logger.handlers == [kept] and logger.propagate
    logger.warning("from lightning")
    assert capsys.readouterr().err.splitlines() == ["warning: from lightning"]
    logger.handlers.insert(0, lightnings)  # Lightning imported only now, by training
    assert logs.lightning_progress_callbacks(enabled=False) == ([], False)
    assert logger.handlers == [kept]


def test_lines_reach_a_buffered_stderr_at_once(logging_state, monkeypatch) -> None:
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, encoding="utf-8"))
    logs.setup_logging()
    logging.getLogger("torchlap").info("now")
    assert raw.getvalue() == b"now\n"  # flushed: not held back behind a subprocess's output


def test_torchlaps_own_console_writes_to_stderr(logging_state, monkeypatch, capsys) -> None:
    monkeypatch.setattr(logs, "_own_console", None)
    monkeypatch.setattr(logs, "_stderr_is_terminal", lambda: True)
    logs.setup_logging()
    logging.getLogger("torchlap").info("on stderr")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == "on stderr"


def test_a_broken_log_call_is_reported_not_raised(logging_state, monkeypatch, capsys, tmp_path):
    """A log call whose arguments do not fit its format (any library's) is reported the way
    logging reports it, on stderr, and the command goes on. Before: the console's filter
    formatted the message outside the handler's guard, and the log call raised TypeError."""
    logs.setup_logging()
    root = logging.getLogger()
    with logs.log_file(tmp_path / "run.log"):
        ours = [h for h in root.handlers if getattr(h, "_torchlap_handler", False)]
        assert len(ours) == 2  # the console, the file
        monkeypatch.setattr(root, "handlers", ours)  # without pytest's own capture handlers
        for handler in ours:
            root.handlers = [handler]
            logging.getLogger("some.library").warning("%d items", "three")
            assert "--- Logging error ---" in capsys.readouterr().err
