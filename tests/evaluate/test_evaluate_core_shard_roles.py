"""Each process of a sharded evaluation says which rank it is and which backend joins them
(gloo on CPUs, nccl on GPUs), and only rank 0 checks the output folder and writes
results.json and the report; the other ranks compute and write nothing."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import torch

from torchlap.evaluate import EvaluateOptions, core, outputs
from torchlap.evaluate.core import finish_evaluation, prepare_evaluation
from torchlap.evaluate.shard import ShardContext, sharding
from torchlap.report import _common as report_common


def _shard(rank: int, device: str = "cpu") -> ShardContext:
    return ShardContext(rank=rank, world_size=2, device=torch.device(device))


@pytest.mark.parametrize(
    ("rank", "device", "backend"), [(0, "cpu", "gloo"), (1, "cpu", "gloo"), (1, "cuda", "nccl")]
)
def test_each_rank_logs_its_rank_and_backend_and_only_rank_0_guards_the_folder(
    monkeypatch, caplog, tmp_path, rank, device, backend
) -> None:
    guarded = []
    monkeypatch.setattr(
        core, "guard_output_folder", lambda folder, *_a, **_k: guarded.append(folder) or ["x"]
    )
    monkeypatch.setattr(core, "_prepare", lambda *_a, **_k: SimpleNamespace())
    monkeypatch.setattr(core, "lime_applies", lambda _job: False)
    out = tmp_path / "eval"
    with (
        caplog.at_level(logging.INFO, logger="torchlap.evaluate.core"),
        sharding(_shard(rank, device)),
    ):
        job = prepare_evaluation(tmp_path / "run", out=out)
    messages = [r.getMessage() for r in caplog.records]
    assert f"sharded evaluation: rank {rank} of 2 processes ({backend})" in messages
    assert guarded == ([out] if rank == 0 else [])
    assert job.foreign == (["x"] if rank == 0 else [])


def test_one_process_logs_no_rank(monkeypatch, caplog, tmp_path) -> None:
    monkeypatch.setattr(core, "guard_output_folder", lambda *_a, **_k: [])
    monkeypatch.setattr(core, "_prepare", lambda *_a, **_k: SimpleNamespace())
    monkeypatch.setattr(core, "lime_applies", lambda _job: False)
    with caplog.at_level(logging.DEBUG, logger="torchlap.evaluate.core"):
        prepare_evaluation(tmp_path / "run", out=tmp_path / "eval")
    assert not [r for r in caplog.records if "sharded" in r.getMessage()]


@pytest.mark.parametrize("rank", [None, 0, 1])
def test_only_the_writing_rank_writes_results_and_report(monkeypatch, tmp_path, rank) -> None:
    written = []
    monkeypatch.setattr(core, "_results_head", lambda *_a: {"run": {"name": "r"}, "skipped": {}})
    monkeypatch.setattr(core, "_evaluate_methods", lambda *_a: {})
    monkeypatch.setattr(report_common, "check_results", lambda *_a: None)
    monkeypatch.setattr(outputs, "write_run_outputs", lambda out, *_a: written.append(out))
    job = SimpleNamespace(
        lime=False, notes={}, options=EvaluateOptions(), out_dir=tmp_path, test_logits=None,
        run=SimpleNamespace(config={}), test=None, model=None,
    )  # fmt: skip
    with sharding(None if rank is None else _shard(rank)):
        results = finish_evaluation(job)
    assert results == {"run": {"name": "r"}, "skipped": {}}
    writes = rank in (None, 0)
    assert written == ([tmp_path] if writes else [])
    path = tmp_path / "results.json"
    assert path.is_file() == writes
    if writes:
        assert json.loads(path.read_text()) == results
