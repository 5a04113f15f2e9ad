"""An evaluation reads a folder's ``annotations.csv`` and opens each image header once for
both the evaluated and the validation split (and once for the runs of a comparison reading it
alike), with the results of reading each split anew.

Before: each split was loaded with :func:`torchlap.data.load_dataset` on the same folder, so
the CSV was parsed and every image and mask header opened twice per run (once per split).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

import torchlap.evaluate.split_data as split_data
from folder_reads import count_folder_reads
from tiny_runs import tiny_lesions, tiny_run
from torchlap.evaluate import EvaluateOptions, compare_runs, evaluate_run

OPTIONS = dict(methods=("gradcam",), max_images=6, max_val_images=6, stability_images=1)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A 40-image `lesions` folder (32 px, masks) and a small CNN trained one epoch on it."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("reads-once")
    data = tiny_lesions(root)
    return {"data": data, "run": tiny_run(data, root / "run")}


def _files(data: Path) -> set[Path]:
    return {p for p in data.rglob("*.png")}


def test_an_evaluation_reads_the_csv_and_each_header_once(made, tmp_path, monkeypatch) -> None:
    headers, parses = count_folder_reads(monkeypatch)
    evaluate_run(made["run"], out=tmp_path / "eval", options=EvaluateOptions(**OPTIONS),
                 write_report=False)  # fmt: skip
    assert parses == Counter({made["data"] / "annotations.csv": 1})
    assert set(headers) == _files(made["data"])  # every image and mask header, once each
    assert set(headers.values()) == {1}


def test_the_results_are_those_of_reading_each_split_anew(made, tmp_path, monkeypatch) -> None:
    """The same results.json (bar its timings) with the splits read from one parse as with
    each split loaded on its own (the folder cache switched off)."""
    options = EvaluateOptions(**OPTIONS)
    shared = evaluate_run(made["run"], out=tmp_path / "one", options=options, write_report=False)
    opened = split_data._load_split
    monkeypatch.setattr(
        split_data, "_load_split", lambda run, data, split, settings, folders: opened(
            run, data, split, settings, None)
    )  # fmt: skip
    headers, parses = count_folder_reads(monkeypatch)
    anew = evaluate_run(made["run"], out=tmp_path / "two", options=options, write_report=False)
    assert sum(parses.values()) == 2 and max(headers.values()) == 2  # (read per split)
    assert _without_times(shared) == _without_times(anew)
    assert shared["methods"]["gradcam"]  # (the results compared hold scores)


def _without_times(results: dict[str, Any]) -> str:
    """``results`` as JSON with the keys that hold times (seconds, dates) left out."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not _timing(k)}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(results), sort_keys=True, default=str)


def _timing(key: str) -> bool:
    return any(word in key for word in ("second", "time", "date", "duration", "created"))


def test_a_comparison_reads_the_folder_once_for_its_runs(made, tmp_path, monkeypatch) -> None:
    second = Path(shutil.copytree(made["run"], tmp_path / "second"))
    headers, parses = count_folder_reads(monkeypatch)
    compare_runs([made["run"], second], None, tmp_path / "cmp", EvaluateOptions(**OPTIONS))
    assert parses == Counter({made["data"] / "annotations.csv": 1})
    assert set(headers) == _files(made["data"]) and set(headers.values()) == {1}
