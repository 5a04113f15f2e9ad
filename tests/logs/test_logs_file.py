"""``log_file``: its line format, written as records come once the folder is ready (default:
the folder exists), the records of a folder that came last, DEBUG with ``-v``, nothing after,
no empty file, the file closed, Lightning's lines included."""

from __future__ import annotations

import gc
import io
import logging
import re
import warnings

from torchlap import logs


def test_lines_are_stamped_and_written_as_they_come(logging_state, tmp_path) -> None:
    logs.setup_logging()
    path = tmp_path / "run.log"
    path.write_text("an earlier run\n")
    with logs.log_file(path) as given:
        assert given == path
        logging.getLogger("torchlap.x").info("hello")
        lines = path.read_text().splitlines()  # while the block runs
    assert lines[0] == "an earlier run"  # appended to, never replaced
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO torchlap\.x: hello", lines[1])
    logging.getLogger("torchlap").info("after the block")
    assert "after the block" not in path.read_text()


def test_by_default_the_file_waits_for_its_folder(logging_state, tmp_path) -> None:
    logs.setup_logging()
    path = tmp_path / "out" / "evaluate.log"
    with logs.log_file(path):
        logging.getLogger("torchlap").info("first")
        assert not path.parent.exists()
        path.parent.mkdir()
        logging.getLogger("torchlap").info("second")
    lines = path.read_text().splitlines()
    assert [line.rsplit(": ", 1)[1] for line in lines] == ["first", "second"]


def test_a_folder_made_after_the_last_record_still_gets_them(logging_state, tmp_path) -> None:
    logs.setup_logging()
    path = tmp_path / "out" / "evaluate.log"
    with logs.log_file(path):
        logging.getLogger("torchlap").info("only record")
        path.parent.mkdir()
    assert path.read_text().endswith("INFO torchlap: only record\n")
    assert len(path.read_text().splitlines()) == 1


def test_debug_lines_reach_the_file_with_verbose_only(logging_state, tmp_path) -> None:
    for verbose in (False, True):
        logs.setup_logging(verbose=verbose)
        with logs.log_file(tmp_path / f"{verbose}.log"):
            logging.getLogger("torchlap").debug("detail")
            logging.getLogger("torchlap").info("event")
        text = (tmp_path / f"{verbose}.log").read_text()
        assert ("DEBUG torchlap: detail" in text) is verbose and "INFO torchlap: event" in text


def test_a_block_that_logged_nothing_leaves_no_file(logging_state, tmp_path) -> None:
    logs.setup_logging()
    with logs.log_file(tmp_path / "run.log"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_the_file_is_closed_with_the_block(logging_state, tmp_path) -> None:
    logs.setup_logging()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        with logs.log_file(tmp_path / "run.log"):
            logging.getLogger("torchlap").info("one line")
        gc.collect()
    assert [w for w in seen if issubclass(w.category, ResourceWarning)] == []


def test_a_log_file_alone_takes_lightnings_lines_too(logging_state, monkeypatch, tmp_path):
    """Without ``setup_logging`` (a library user's own log file), Lightning's lines reach the
    file once torchlap routes its loggers (as training does), and its own handler gives way."""
    logger = logging.getLogger("lightning_fabric")
    monkeypatch.setattr(logger, "handlers", [logging.StreamHandler(io.StringIO())])
    monkeypatch.setattr(logger, "propagate", False)
    with logs.log_file(tmp_path / "run.log"):
        logs.adopt_lightning_loggers()
        logger.warning("from lightning")
    assert (
        logger.handlers == []
        and "WARNING lightning_fabric: from lightning" in (tmp_path / "run.log").read_text()
    )
