"""The per-method cache of an evaluation (torchlap.evaluate.common): its key does not depend
on how the parts are ordered, a miss says what changed (by the names of the parts), each kind
of unusable cache is recomputed with its own reason in the log, and a run's weights are
stamped by their size and modification time."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from torchlap.evaluate.common import (
    atomic_write_json,
    fingerprint,
    fingerprint_parts,
    read_cache,
    section_check,
    weights_stamp,
    write_cache,
)
from torchlap.runs import WEIGHTS_FILE

PARTS = {"options": {"ks": [50], "seed": 0}, "weights": {"size": 10}}


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_the_key_does_not_depend_on_the_order_of_the_parts() -> None:
    reordered = {"weights": {"size": 10}, "options": {"seed": 0, "ks": [50]}}
    assert fingerprint(PARTS) == fingerprint(reordered)
    assert fingerprint_parts(PARTS) == fingerprint_parts(reordered)
    assert fingerprint(PARTS) != fingerprint({**PARTS, "weights": {"size": 11}})
    assert set(fingerprint_parts(PARTS)) == {"options", "weights", "metrics_revision"}


def read(cache: Path, parts: dict, caplog: pytest.LogCaptureFixture, **kwargs) -> object:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="torchlap"):
        return read_cache(cache, fingerprint(parts), "gradcam", parts, **kwargs)


def test_a_miss_names_the_parts_that_changed(tmp_path: Path, caplog) -> None:
    cache = tmp_path / "gradcam.json"
    write_cache(cache, fingerprint(PARTS), PARTS, {"iou": 0.5})
    assert read(cache, PARTS, caplog) == {"iou": 0.5}
    assert messages(caplog) == [f"gradcam: reusing {cache} (pass --force to recompute)"]
    changed = {**PARTS, "weights": {"size": 11}}
    assert read(cache, changed, caplog) is None
    assert messages(caplog) == [
        f"gradcam: recomputing, the run's model (its weights or config.json) changed since {cache}"
    ]
    both = {"options": {"seed": 1}, "weights": {"size": 11}, "mine": 1}
    assert read(cache, both, caplog) is None
    assert messages(caplog) == [
        "gradcam: recomputing, the evaluation options, the run's model (its weights or "
        f"config.json), mine changed since {cache}"
    ]
    fewer = {"options": PARTS["options"]}  # a part the cache has, gone now
    assert read(cache, fewer, caplog) is None
    assert messages(caplog) == [
        f"gradcam: recomputing, the run's model (its weights or config.json) changed since {cache}"
    ]


def test_a_miss_without_the_parts_says_the_settings_differ(tmp_path: Path, caplog) -> None:
    cache = tmp_path / "gradcam.json"
    write_cache(cache, "old key", PARTS, {"iou": 0.5})  # every part the same, not the key
    assert read(cache, PARTS, caplog) is None
    assert messages(caplog) == [f"gradcam: recomputing, {cache} was computed with other settings"]
    write_cache(cache, "old key", None, {"iou": 0.5})  # no parts stored
    assert read(cache, PARTS, caplog) is None
    said = f"gradcam: recomputing, {cache} was computed with other settings or by an earlier"
    assert messages(caplog) == [said + " torchlap"]


def test_each_unusable_cache_gives_its_reason(tmp_path: Path, caplog) -> None:
    cache = tmp_path / "gradcam.json"
    key = fingerprint(PARTS)
    write_cache(cache, key, PARTS, {"iou": 0.5})
    entry = json.loads(cache.read_text())
    cache.write_text(json.dumps({**entry, "results": {"iou": 0.75}}))
    assert read(cache, PARTS, caplog) is None
    assert "holds results that are not the ones torchlap wrote" in messages(caplog)[0]
    cache.write_text(json.dumps({k: v for k, v in entry.items() if k != "results_sha256"}))
    assert read(cache, PARTS, caplog) is None
    assert messages(caplog) == [f"gradcam: recomputing, {cache} was written by an earlier torchlap"]
    cache.write_text(cache.read_text().replace("0.5", "NaN"))
    assert read(cache, PARTS, caplog) is None
    assert messages(caplog) == [
        f"gradcam: {cache} is unreadable (NaN is not a JSON number (torchlap writes None for "
        "undefined values)); recomputing"
    ]
    cache.write_text(json.dumps({"fingerprint": key}))
    assert read(cache, PARTS, caplog) is None
    assert messages(caplog) == [
        f"gradcam: {cache} is unreadable (not a torchlap cache (a dict with 'fingerprint' and "
        "'results')); recomputing"
    ]
    cache.unlink()
    cache.mkdir()
    assert read(cache, PARTS, caplog) is None
    assert messages(caplog) == [f"gradcam: {cache} is a folder, not a cache; recomputing"]
    cache.rmdir()
    assert read(cache, PARTS, caplog) is None  # no cache yet: nothing to say
    assert messages(caplog) == []


def test_a_cached_entry_the_report_would_refuse_is_recomputed(tmp_path: Path, caplog) -> None:
    cache = tmp_path / "gradcam.json"
    check = section_check("grid_pointing_game", "gradcam")
    good = {"mean": 0.5, "chance": 0.25, "n": 2, "scores": [0.5, 0.5]}
    write_cache(cache, fingerprint(PARTS), PARTS, good)
    assert read(cache, PARTS, caplog, check=check) == good
    write_cache(cache, fingerprint(PARTS), PARTS, {**good, "mean": "high"})
    assert read(cache, PARTS, caplog, check=check) is None
    said = messages(caplog)
    assert len(said) == 1 and said[0].startswith(f"gradcam: {cache} is invalid (")
    assert "['grid_pointing_game']['gradcam']" in said[0] and said[0].endswith("; recomputing")


def test_the_weights_stamp_is_their_size_and_modification_time(tmp_path: Path) -> None:
    weights = tmp_path / WEIGHTS_FILE
    weights.write_bytes(b"123456789")
    os.utime(weights, ns=(1_000_000_000, 2_000_000_123))
    assert weights_stamp(tmp_path) == {"size": 9, "mtime_ns": 2_000_000_123}


def test_results_rewritten_in_another_key_order_are_still_reused(tmp_path: Path, caplog) -> None:
    # the checksum is of the results' content: a JSON tool that re-sorts the keys edits nothing
    cache = tmp_path / "gradcam.json"
    results = {"iou": 0.5, "ebpg": {"value": 0.25, "n": 3}, "auc": [1, 2]}
    write_cache(cache, fingerprint(PARTS), PARTS, results)
    entry = json.loads(cache.read_text())
    entry["results"] = {"auc": [1, 2], "ebpg": {"n": 3, "value": 0.25}, "iou": 0.5}
    cache.write_text(json.dumps(entry))
    assert read(cache, PARTS, caplog) == results


def test_results_are_written_in_the_order_built_and_never_with_nan(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    atomic_write_json(path, {"methods": ["lap", "gradcam"], "lap": {"b": 1, "a": 2}})
    assert path.read_text() == (
        '{\n  "methods": [\n    "lap",\n    "gradcam"\n  ],\n  "lap": {\n    "b": 1,\n'
        '    "a": 2\n  }\n}\n'
    )
    with pytest.raises(ValueError, match="not JSON compliant"):
        atomic_write_json(path, {"value": float("nan")})  # NaN is not JSON: None is written
    assert json.loads(path.read_text())["lap"] == {"b": 1, "a": 2}  # the earlier file stays
