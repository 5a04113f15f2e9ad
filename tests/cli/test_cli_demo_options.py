"""``torchlap demo``'s options at their boundaries, with the demo itself replaced by a recorder:
every accepted value reaches the settings the demo runs with, every refused one exits 2 before
the output folder exists, and the command prints where the report went; a demo that fails
or is interrupted is reported once, by the process that failed."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import torchlap.demo_cli
from torchlap.cli import app
from torchlap.data.builtin import MAX_IMAGE_SIZE
from torchlap.demo import DemoSettings
from torchlap.train.config import MAX_EPOCHS


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The calls of ``run_demo`` the command makes (none trains anything)."""
    calls: list[dict[str, Any]] = []

    def record(out: Path, settings: Any, **kwargs: Any) -> Path:
        out.mkdir(parents=True, exist_ok=True)  # as the demo does once its folders are checked
        kwargs["on_checked"]()
        logging.getLogger("torchlap.demo").info("the demo would run now")
        calls.append({"out": out, "settings": settings, **kwargs})
        return out / "report.html"

    monkeypatch.setattr(torchlap.demo_cli, "run_demo", record)
    return calls


def _demo(tmp_path: Path, *options: str) -> Any:
    return CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), *options])


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("--image-size", 32, "image_size"),
        ("--image-size", MAX_IMAGE_SIZE, "image_size"),
        ("--epochs", 1, "epochs"),
        ("--epochs", MAX_EPOCHS, "epochs"),
        ("--lr", 1e-6, "lr"),
    ],
)
def test_the_extreme_accepted_values_reach_the_settings(
    tmp_path: Path, recorded: list, option: str, value: float, field: str
) -> None:
    result = _demo(tmp_path, option, str(value))
    assert result.exit_code == 0, result.output
    assert getattr(recorded[0]["settings"], field) == value
    assert f"report: {tmp_path / 'd' / 'report.html'}" in result.output
    assert f"tables: {tmp_path / 'd' / 'tables.md'}" in result.output
    seconds = re.search(r"^demo finished in (\d+) s$", result.output, re.MULTILINE)
    assert seconds is not None and int(seconds.group(1)) < 60, result.output  # its own time


def test_the_command_hands_its_choices_to_the_demo(tmp_path: Path, recorded: list) -> None:
    options = ("--suite", "peers", "--data", "digits", "--arch", "smallcnn", "--bcos")
    result = _demo(tmp_path, *options, "--perturbation", "--overwrite")
    assert result.exit_code == 0, result.output
    (call,) = recorded
    settings = call["settings"]
    assert (call["suite"], call["overwrite"]) == ("peers", True)
    assert (settings.data, settings.arch, settings.bcos, settings.perturbation) == (
        "digits", "smallcnn", True, True,
    )  # fmt: skip
    assert "the demo would run now" in (tmp_path / "d" / "demo.log").read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--image-size", "31"), "--image-size must be >= 32 px and <= 1024, got 31"),
        (("--image-size", str(MAX_IMAGE_SIZE + 1)), f"got {MAX_IMAGE_SIZE + 1}"),
        (("--epochs", "0"), f"--epochs must be >= 1 and <= {MAX_EPOCHS}, got 0"),
        (("--epochs", str(MAX_EPOCHS + 1)), f"got {MAX_EPOCHS + 1}"),
        (("--lr", "nan"), "--lr must be > 0 and finite, got nan"),
        (("--lr", "inf"), "--lr must be > 0 and finite, got inf"),
        (("--lr", "-1"), "--lr must be > 0 and finite, got -1.0"),
        (("--lr", "0"), "--lr must be > 0 and finite, got 0.0"),
        (
            ("--arch", "resnet1800"),
            "unknown --arch 'resnet1800'; the demo's runs take a torchvision",
        ),
        (("--scale", "0"), "scale"),
        (("--suite", "all"), "unknown --suite 'all'; expected one of main, peers"),
        (("--data", "cifar"), "unknown --data 'cifar'; the demo runs on a built-in benchmark"),
    ],
)
def test_a_refused_value_exits_2_before_the_folder_exists(
    tmp_path: Path, recorded: list, options: tuple[str, ...], message: str
) -> None:
    result = _demo(tmp_path, *options)
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert recorded == [] and not (tmp_path / "d").exists()


def test_without_options_the_demo_runs_its_documented_defaults(
    tmp_path: Path, recorded: list
) -> None:
    result = _demo(tmp_path)
    assert result.exit_code == 0, result.output
    (call,) = recorded
    assert call["settings"] == DemoSettings()  # scale 1, no B-cos, no perturbation methods
    assert (call["suite"], call["overwrite"]) == ("main", False)


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> Callable[[BaseException], None]:
    """Makes the demo raise the given error once its folder is checked."""

    def install(error: BaseException) -> None:
        def fail(out: Path, settings: Any, **kwargs: Any) -> Path:
            raise error

        monkeypatch.setattr(torchlap.demo_cli, "run_demo", fail)

    return install


def test_an_interrupted_demo_is_aborted_not_finished(tmp_path: Path, failing: Callable) -> None:
    failing(KeyboardInterrupt())
    result = _demo(tmp_path)
    assert result.exit_code == 130 and "demo finished" not in result.output


@pytest.mark.parametrize(
    ("rank", "message", "shown"),
    [
        (None, "boom", "Error: boom\n"),
        (None, "gloo: Connection closed by peer", "Error: gloo: Connection closed by peer\n"),
        ("1", "boom", "rank 1: Error: boom\n"),
        ("1", "gloo: Connection closed by peer", ""),  # the echo of a peer's failure
    ],
)
def test_a_failure_is_printed_once_by_the_rank_that_has_it(
    tmp_path: Path,
    failing: Callable,
    monkeypatch: pytest.MonkeyPatch,
    rank: str | None,
    message: str,
    shown: str,
) -> None:
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    if rank is not None:
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")
    failing(RuntimeError(message))
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert result.exit_code == 1 and result.output == shown


def test_a_failure_keeps_its_traceback_in_the_debug_log_and_an_input_error_does_not(
    tmp_path: Path, failing: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    failing(RuntimeError("while working"))
    with caplog.at_level(logging.DEBUG, logger="torchlap"):
        assert _demo(tmp_path, "-v").exit_code == 1
    (record,) = [r for r in caplog.records if r.getMessage() == "failure"]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    caplog.clear()
    failing(ValueError("bad input"))
    with caplog.at_level(logging.DEBUG, logger="torchlap"):
        assert _demo(tmp_path, "-v").exit_code == 2
    assert not [r for r in caplog.records if r.getMessage() == "failure"]


@pytest.fixture
def users_log(tmp_path: Path) -> Path:
    """The demo's --out folder holding a demo.log the user wrote."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "demo.log").write_text("my notes\n")
    return tmp_path / "d" / "demo.log"


def test_a_demo_refused_after_its_log_was_found_keeps_the_user_s_log(
    tmp_path: Path, failing: Callable, users_log: Path
) -> None:
    failing(ValueError("refused by the demo's own checks"))  # before its folders are checked
    assert _demo(tmp_path, "--overwrite").exit_code == 2
    assert users_log.read_text() == "my notes\n"


def test_with_overwrite_the_user_s_log_is_replaced_once_the_folders_are_checked(
    tmp_path: Path, recorded: list, users_log: Path
) -> None:
    assert _demo(tmp_path, "--overwrite").exit_code == 0
    log = users_log.read_text()
    assert "my notes" not in log and "the demo would run now" in log
