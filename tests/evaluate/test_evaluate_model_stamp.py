"""The cached per-method results of an evaluation are keyed by the run's model, not its
weights file alone.

Before: the key held the weights' size and modification time only, so a ``config.json`` edit
that changes the model without touching a tensor (``model.lapify``'s ``aggregation`` or
``eps``) was evaluated with the cached maps of the old model: ``results.json`` mixed the new
model's accuracy with the old model's explanations. Now the key holds a hash of the
``config.json`` keys that define the model, and the SHA-256 of the weights that
``config.json`` records (checked when the run loads) where the run has one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tiny_runs import tiny_lesions, tiny_run
from torchlap.evaluate import EvaluateOptions, evaluate_run
from torchlap.evaluate.common import MODEL_KEYS, model_stamp
from torchlap.runs import load_run

CONFIG = {"model": {"arch": "smallcnn", "lapify": [{"aggregation": "mean", "eps": 1e-6}]},
          "mean": [0.5], "std": [0.25], "train": {"epochs": 1}}  # fmt: skip


def _run(tmp_path: Path, digest: str | None, config: dict | None = None) -> SimpleNamespace:
    (tmp_path / "model.safetensors").write_bytes(b"123456789")
    return SimpleNamespace(run_dir=tmp_path, config=config or CONFIG, weights_sha256=digest)


def test_the_recorded_digest_stands_for_the_weights(tmp_path: Path) -> None:
    stamp = model_stamp(_run(tmp_path, "ab" * 32))
    assert stamp["weights"] == {"sha256": "ab" * 32}
    os.utime(tmp_path / "model.safetensors", ns=(1, 2_000_000_123))  # touched, same bytes
    assert model_stamp(_run(tmp_path, "ab" * 32)) == stamp


def test_a_run_without_a_digest_record_keeps_size_and_modification_time(tmp_path: Path) -> None:
    run = _run(tmp_path, None)
    os.utime(tmp_path / "model.safetensors", ns=(1, 2_000_000_123))
    assert model_stamp(run)["weights"] == {"size": 9, "mtime_ns": 2_000_000_123}


def test_an_edit_of_what_defines_the_model_changes_the_stamp(tmp_path: Path) -> None:
    before = model_stamp(_run(tmp_path, "ab" * 32))
    edited = json.loads(json.dumps(CONFIG))
    edited["model"]["lapify"][0].update(aggregation="sum", eps=5.0)
    assert model_stamp(_run(tmp_path, "ab" * 32, edited)) != before
    for key in ("mean", "std"):
        assert model_stamp(_run(tmp_path, "ab" * 32, {**CONFIG, key: [0.4]})) != before
    # what does not define the model (the training record) leaves the cache as it is
    assert model_stamp(_run(tmp_path, "ab" * 32, {**CONFIG, "train": {"epochs": 9}})) == before
    assert {"model", "concept_sets", "lap_layers", "mean", "std"} <= set(MODEL_KEYS)


def test_a_loaded_run_carries_the_digest_it_checked(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run_dir = tiny_run(tiny_lesions(tmp_path), tmp_path / "run", lap="auto")
    config = json.loads((run_dir / "config.json").read_text())
    recorded = config["integrity"]["model.safetensors"]["sha256"]
    assert load_run(run_dir).weights_sha256 == recorded
    assert load_run(load_run(run_dir)).weights_sha256 == recorded  # (a loaded run reloaded)


@pytest.mark.filterwarnings("ignore")
def test_a_lapify_option_edited_by_hand_misses_the_cache(tmp_path: Path, caplog) -> None:
    torch.set_num_threads(1)
    run_dir = tiny_run(tiny_lesions(tmp_path), tmp_path / "run", lap="auto")
    options = EvaluateOptions(methods=("lap",), max_images=4, max_val_images=4,
                              stability_images=2, bootstrap_resamples=0)  # fmt: skip
    out = tmp_path / "eval"
    evaluate_run(run_dir, None, out, options, write_report=False)
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text())
    assert config["model"]["lapify"], "the tiny run should have LAP layers"
    config["model"]["lapify"][0].update(aggregation="sum", eps=5.0)
    config_path.write_text(json.dumps(config))
    with caplog.at_level(logging.INFO, logger="torchlap"):
        evaluate_run(run_dir, None, out, options, write_report=False)
    text = caplog.text
    assert "lap: reusing" not in text
    assert "lap: recomputing, the run's model (its weights or config.json) changed" in text
