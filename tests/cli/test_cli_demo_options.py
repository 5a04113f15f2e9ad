"""``torchlap demo``'s options at their boundaries, with the demo itself replaced by a recorder:
every accepted value reaches the settings the demo runs with, every refused one exits 2 before
the output folder exists, and the command prints where the report went."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import torchlap.cli
from torchlap.cli import app
from torchlap.data.builtin import MAX_IMAGE_SIZE
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

    monkeypatch.setattr(torchlap.cli, "run_demo", record)
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
