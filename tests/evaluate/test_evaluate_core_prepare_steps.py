"""What :func:`prepare_evaluation` itself does before any method runs: a grid the run's classes
cannot fill is refused before the model is loaded, a data note (data not read the run's own way)
is logged as a warning naming the run, and a sharded evaluation with idle processes says so."""

from __future__ import annotations

import logging

import pytest
import torch

import torchlap.evaluate.core as core
from torchlap.evaluate import EvaluateOptions
from torchlap.evaluate.core import prepare_evaluation
from torchlap.evaluate.provenance import DataSettings
from torchlap.evaluate.shard import ShardContext

OPTIONS = dict(
    methods=("gradcam",), ks=(50,), stability_images=1, stability_fractions=(0.2,),
    batch_size=8, max_images=4, max_val_images=4, examples=False, bootstrap_resamples=20,
)  # fmt: skip


def test_a_grid_the_run_classes_cannot_fill_is_refused_before_the_model_loads(
    lap_run, tmp_path, monkeypatch
) -> None:
    """Without the check the game was skipped with a reason in results.json, exit 0, after
    every method ran (the run has 2 classes: a 2x2 grid needs 4)."""
    monkeypatch.setattr(core, "load_run", lambda facts: pytest.fail("the model was loaded"))
    options = EvaluateOptions(**{**OPTIONS, "grid_pg": True, "grid_pg_shape": "2x2"})
    with pytest.raises(ValueError, match=r"--grid-pg-shape 2x2: a 2x2 grid needs 4 distinct"):
        prepare_evaluation(lap_run, out=tmp_path / "eval", options=options)
    assert not (tmp_path / "eval").exists()


def test_data_read_another_way_is_said_in_a_warning_naming_the_run(
    lap_run, tmp_path, caplog
) -> None:
    options = EvaluateOptions(**OPTIONS)
    with caplog.at_level(logging.WARNING, logger="torchlap.evaluate.core"):
        job = prepare_evaluation(lap_run, "lesions", tmp_path / "eval", options,
                                 data_settings=DataSettings(seed=1))  # fmt: skip
    (note,) = job.notes["data"]
    assert note.startswith("evaluated on lesions, the run's training data, with split seed 1")
    assert f"{lap_run}: {note}" in [r.getMessage() for r in caplog.records]


def test_a_sharded_evaluation_with_idle_processes_says_so(
    lap_run, tmp_path, caplog, monkeypatch
) -> None:
    """4 test images in one batch of 8 for 3 processes: 2 only wait (rank 0 says so)."""
    shard = ShardContext(rank=0, world_size=3, device=torch.device("cpu"))
    monkeypatch.setattr(core, "active", lambda: shard)  # (no process group: no collectives)
    options = EvaluateOptions(**OPTIONS)
    with caplog.at_level(logging.WARNING, logger="torchlap.evaluate.core"):
        prepare_evaluation(lap_run, out=tmp_path / "eval", options=options)
    idle = [r.getMessage() for r in caplog.records if "sharded evaluation" in r.getMessage()]
    assert idle == [
        "sharded evaluation: 4 images in batches of 8 make 1 batch(es) for 3 processes, so 2 "
        "process(es) will only wait; pass --batch-size 2 to give every process images"
    ]
