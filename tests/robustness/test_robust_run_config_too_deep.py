"""A run's config.json nested deeper than Python's JSON parser goes (a damaged file: torchlap
writes a few levels): before, the parser's RecursionError escaped ``read_run_config`` (every
command reading a run: a message naming no file, exit 1) and ``is_run_config``. Now it is a
damaged config.json, named, like any other JSON that cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchlap.runs import CONFIG_FILE, RunError, is_run_config, read_run_config


@pytest.mark.parametrize("closed", [False, True], ids=["cut short", "balanced"])
def test_a_config_nested_too_deep_is_a_damaged_config(tmp_path: Path, closed: bool) -> None:
    depth = 200_000
    (tmp_path / CONFIG_FILE).write_text("[" * depth + ("]" * depth if closed else ""))
    with pytest.raises(RunError, match=r"config\.json is not valid JSON \(.*\); it is damaged"):
        read_run_config(tmp_path)
    assert not is_run_config(tmp_path / CONFIG_FILE)
