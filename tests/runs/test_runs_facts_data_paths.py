"""The data a run was trained on (``train.data`` of config.json): a built-in name or an
absolute path as recorded; a relative folder of an older run looked up in the current
directory, then the folder training ran in (found from the recorded ``--out``), then the run
folder's parent, in that order; refused naming every place tried. Read on hand-written run
folders: no model is built."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from torchlap.runs import RunError, RunFileNotFoundError, read_run_facts, resolve_run_data


def _config(train: Any) -> dict[str, Any]:
    config = {
        "format": "torchlap-run",
        "model": {"arch": "smallcnn"},
        "classes": ["cat", "dog"],
        "mean": [0.5],
        "std": [0.25],
        "in_channels": 1,
        "image_size": 16,
    }
    if train is not None:
        config["train"] = train
    return config


def _run(run_dir: Path, train: Any) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(_config(train)))
    (run_dir / "model.safetensors").write_bytes(b"not read here")
    return run_dir


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """``work/`` (the current directory), ``base/runs/r`` (the run, trained from ``base``)."""
    places = {"cwd": tmp_path / "work", "base": tmp_path / "base", "run": tmp_path / "base/runs/r"}
    places["cwd"].mkdir()
    places["run"].mkdir(parents=True)
    monkeypatch.chdir(places["cwd"])
    return places


@pytest.mark.parametrize("train", [None, {}, {"data": ""}, {"data": 3}, {"data": None}])
def test_a_record_without_a_data_name_is_refused_with_the_advice(
    tmp_path: Path, train: Any
) -> None:
    config = _config(train)
    with pytest.raises(RunError, match=r"'train\.data' names no dataset: pass the data with --"):
        resolve_run_data(tmp_path, config)
    with pytest.raises(RunError, match=r"config\.json: 'train\.data' names no dataset: use X$"):
        resolve_run_data(tmp_path, config, "use X")


def test_a_builtin_name_and_an_absolute_path_are_returned_as_recorded(
    layout: dict[str, Path],
) -> None:
    (layout["cwd"] / "digits").mkdir()  # a folder of a built-in's name: the name still wins
    assert resolve_run_data(layout["run"], _config({"data": "digits"})) == "digits"
    absent = str(layout["base"] / "gone")  # absolute: as recorded, even when absent
    assert resolve_run_data(layout["run"], _config({"data": absent})) == absent


def test_a_relative_folder_is_looked_up_in_order(layout: dict[str, Path]) -> None:
    """The current directory, then the folder training ran in, then the run's parent."""
    config = _config({"data": "d", "out": "runs/r"})
    places = [layout["cwd"] / "d", layout["base"] / "d", layout["run"].parent / "d"]
    for place in places:
        place.mkdir()
    for place in places:
        assert resolve_run_data(layout["run"], config) == str(place)
        place.rmdir()
    with pytest.raises(RunFileNotFoundError, match=r"records the data folder 'd' as a relative"):
        resolve_run_data(layout["run"], config)


def _tried(run_dir: Path, train: dict[str, Any]) -> str:
    with pytest.raises(RunFileNotFoundError) as error:
        resolve_run_data(run_dir, _config(train), "ADVICE")
    message = str(error.value)
    assert message.endswith(": ADVICE")
    return message


def test_the_refusal_names_every_place_tried(layout: dict[str, Path]) -> None:
    message = _tried(layout["run"], {"data": "d", "out": "runs/r"})
    assert message.startswith(f"{layout['run'] / 'config.json'} records the data folder 'd'")
    tried = message.split("no folder of that name exists at ")[1].removesuffix(": ADVICE")
    assert tried.split("; ") == [
        f"{layout['cwd'] / 'd'} (the current directory)",
        f"{layout['base'] / 'd'} (the folder training ran in)",
        f"{layout['run'].parent / 'd'} (the run folder's parent)",
    ]


@pytest.mark.parametrize(
    ("out", "trained_in"),
    [
        ("r", "base/runs"),
        ("runs/r", "base"),
        ("base/runs/r", "."),
        ("runs/r/", "base"),  # the same path
        ("other/r", None),  # not the end of the run's path
        ("r/runs", None),
        ("../runs/r", None),
        ("", None),
        (".", None),
        (None, None),
        (7, None),
    ],
)
def test_the_folder_training_ran_in_is_where_the_recorded_out_ends(
    layout: dict[str, Path], out: Any, trained_in: str | None
) -> None:
    train = {"data": "d"} if out is None else {"data": "d", "out": out}
    message = _tried(layout["run"], train)
    tmp_path = layout["base"].parent
    if trained_in is None:
        assert "the folder training ran in" not in message
    else:
        place = (tmp_path / trained_in).resolve() / "d"
        assert f"{place} (the folder training ran in)" in message


def test_an_absolute_out_is_not_a_training_folder(layout: dict[str, Path]) -> None:
    """Even the run folder's own absolute path (its end is the whole path)."""
    for out in (str(layout["run"]), str(layout["run"].parent)):
        assert "training ran in" not in _tried(layout["run"], {"data": "d", "out": out})


def test_the_data_folder_is_found_without_a_recorded_out(layout: dict[str, Path]) -> None:
    (layout["run"].parent / "d").mkdir()
    assert resolve_run_data(layout["run"], _config({"data": "d"})) == str(
        layout["run"].parent / "d"
    )


def test_read_run_facts_resolves_an_older_relative_data_path(
    layout: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = layout["base"] / "runs" / "s"
    (layout["base"] / "d").mkdir()
    _run(run_dir, {"data": "d", "out": "runs/s"})
    with caplog.at_level(logging.INFO, logger="torchlap.runs"):
        facts = read_run_facts(run_dir)
    assert facts.config["train"]["data"] == str(layout["base"] / "d")
    assert f"the run's data 'd' is {layout['base'] / 'd'}" in caplog.text


@pytest.mark.parametrize("train", [None, {"epochs": 1}, {"data": "digits"}])
def test_nothing_to_resolve_is_read_silently(
    tmp_path: Path, train: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """No train record, no data name, or a built-in: read as written, nothing logged."""
    with caplog.at_level(logging.INFO, logger="torchlap.runs"):
        facts = read_run_facts(_run(tmp_path / "r", train))
    assert facts.config.get("train") == train
    assert caplog.records == []


def test_a_missing_relative_data_folder_is_a_warning_when_reading(
    layout: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = layout["base"] / "runs" / "s"
    _run(run_dir, {"data": "d", "out": "runs/s"})
    with caplog.at_level(logging.INFO, logger="torchlap.runs"):
        facts = read_run_facts(run_dir)
    assert facts.config["train"]["data"] == "d"
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "the commands that read the run's data will name what to do" in caplog.text
