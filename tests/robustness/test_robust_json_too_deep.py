"""JSON nested deeper than Python's parser goes (it raises RecursionError, which no "not JSON"
handler caught) is read as what it is, damaged or not JSON, wherever torchlap reads JSON: an
option value, a method cache, a file in an output folder, explain's manifest."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import typer

from torchlap.cli_style import key_values
from torchlap.evaluate.cli import _parse_method_options
from torchlap.evaluate.common import _read_own_cache, guard_output_folder
from torchlap.evaluate.explain import MANIFEST, _read_manifest
from torchlap.io import loads_strict
from torchlap.train.data_options import _parse_value

DEEP = "[" * 100_000 + "]" * 100_000  # far deeper than the interpreter's recursion limit


def test_deep_user_json_is_a_json_error_naming_the_option() -> None:
    with pytest.raises(json.JSONDecodeError, match="--ratios is nested deeper than JSON can"):
        loads_strict(DEEP, "--ratios")
    with pytest.raises(typer.BadParameter, match="--method-options is not valid JSON"):
        _parse_method_options(DEEP)


def test_a_deep_key_value_stays_the_text_it_was() -> None:
    assert key_values([f"a={DEEP}"], "--lime-option") == {"a": DEEP}
    assert _parse_value("size", DEEP, "str", nullable=False) == DEEP
    with pytest.raises(TypeError, match="--data-option size: size takes an int, got '"):
        _parse_value("size", DEEP, "int", nullable=False)


def test_a_deep_method_cache_is_recomputed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "gradcam.json"
    cache.write_text(DEEP)
    with caplog.at_level(logging.WARNING, logger="torchlap.evaluate.common"):
        assert _read_own_cache(cache, "key", "gradcam", None, None) is None
    assert "is unreadable" in caplog.text and "recomputing" in caplog.text


def test_a_deep_results_json_is_not_torchlap_s_and_is_refused(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(DEEP)
    with pytest.raises(FileExistsError, match=r"results\.json"):
        guard_output_folder(tmp_path, force=False)
    assert (tmp_path / "results.json").read_text() == DEEP


def test_a_deep_manifest_is_damaged(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(DEEP)
    with pytest.raises(ValueError, match=re.escape(f"{MANIFEST} is damaged (not JSON")):
        _read_manifest(tmp_path)
