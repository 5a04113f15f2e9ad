"""torchlap.logs in-process: one line per event, -q, rank 0 only, the log file, plain progress."""

from __future__ import annotations

import logging

import pytest

from torchlap import logs


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "PMI_RANK"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    before = list(root.handlers), root.level, logging.getLogger("torchlap").level
    yield
    for handler in list(root.handlers):
        if handler not in before[0]:
            root.removeHandler(handler)
    root.setLevel(before[1])
    logging.getLogger("torchlap").setLevel(before[2])
    logging.captureWarnings(False)
    logs.set_progress_mode("auto")


def test_one_line_per_event_and_third_party_info_hidden(configured, capsys) -> None:
    logs.setup_logging()
    log = logging.getLogger("torchlap.metrics.x")
    log.info("only 2 classes: reporting top-2 instead of top-5")
    log.info("only 2 classes: reporting top-2 instead of top-5")
    log.info("epoch %d", 1)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
    logging.getLogger("lightning.pytorch").warning("a warning the user needs")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "only 2 classes: reporting top-2 instead of top-5",
        "epoch 1",
        "warning: a warning the user needs",
    ]


def test_quiet_keeps_warnings_verbose_shows_lightning(configured, capsys) -> None:
    logs.setup_logging(quiet=True)
    logging.getLogger("torchlap").info("hidden")
    logging.getLogger("torchlap").warning("shown")
    assert capsys.readouterr().err.splitlines() == ["warning: shown"]
    assert logs.progress_mode() == "off"
    logs.setup_logging(verbose=True)
    logging.getLogger("torchlap").debug("debug line")
    logging.getLogger("lightning.pytorch").info("device line")
    assert capsys.readouterr().err.splitlines() == ["debug line", "device line"]


def test_other_ranks_write_nothing(configured, capsys, monkeypatch, tmp_path) -> None:
    logs.setup_logging()
    with logs.log_file(tmp_path / "run.log"):
        monkeypatch.setenv("LOCAL_RANK", "1")
        logging.getLogger("torchlap").warning("from rank 1")
        assert logs.progress_mode() == "off"
        monkeypatch.setenv("LOCAL_RANK", "0")
        logging.getLogger("torchlap").info("from rank 0")
    assert capsys.readouterr().err.splitlines() == ["from rank 0"]
    text = (tmp_path / "run.log").read_text()
    assert "from rank 0" in text and "rank 1" not in text


def test_log_file_waits_for_the_folder_and_keeps_everything(configured, tmp_path) -> None:
    logs.setup_logging()
    folder = tmp_path / "run"
    claimed = folder / "config.json"
    with logs.log_file(folder / "train.log", ready=claimed.is_file):
        logging.getLogger("torchlap").info("before the folder")
        assert not folder.exists()  # nothing written into a folder torchlap does not own
        folder.mkdir()
        claimed.write_text("{}")
        logging.getLogger("lightning.pytorch").info("GPU available: False")
        logging.getLogger("torchlap").info("before the folder")  # hidden on stderr, not here
    lines = (folder / "train.log").read_text().splitlines()
    assert len(lines) == 3
    assert "before the folder" in lines[0] and "GPU available" in lines[1]
    assert not logging.getLogger().handlers or all(
        not isinstance(h, logs._RunLogHandler) for h in logging.getLogger().handlers
    )


def test_refused_run_leaves_no_log_file(configured, tmp_path) -> None:
    logs.setup_logging()
    folder = tmp_path / "someone-elses"
    folder.mkdir()
    with logs.log_file(folder / "train.log", ready=(folder / "config.json").is_file):
        logging.getLogger("torchlap").info("refused")
    assert list(folder.iterdir()) == []


def test_plain_progress_lines_name_the_outer_steps(configured, capsys, monkeypatch) -> None:
    logs.setup_logging()
    logs.set_progress_mode("plain")
    monkeypatch.setattr(logs, "PLAIN_INTERVAL_SECONDS", 0.0)
    seen = []
    for method in logs.track(["rise"], description="evaluating", unit="methods", describe=str):
        for batch in logs.track(range(2), description=method, unit="image batches"):
            seen.append((method, batch))
    assert seen == [("rise", 0), ("rise", 1)]
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("rise: 1/2 image batches, 0 s, ETA 0 s (evaluating rise: 0/1 methods")
    assert err[-1].startswith("evaluating rise: 1/1 methods")


def test_track_off_and_bad_mode(configured) -> None:
    logs.set_progress_mode("off")
    assert list(logs.track(iter([1, 2]), description="x")) == [1, 2]
    with pytest.raises(ValueError, match="unknown progress mode 'loud'"):
        logs.set_progress_mode("loud")
