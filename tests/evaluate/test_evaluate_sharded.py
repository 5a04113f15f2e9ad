"""Sharded evaluation (`torchlap evaluate --devices 2` on the CPU): the same files and numbers
as one process, rank 0 alone writing; arguments refused before any process starts."""

import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.evaluate import EvaluateOptions, evaluate_run
from torchlap.evaluate.core import _warn_idle_ranks
from torchlap.evaluate.shard import ShardContext, check_sharding, shard_bounds, sharding
from torchlap.train import TrainConfig, fit

# values that measure the wall clock, not the evaluation
_CLOCK_KEYS = {"seconds", "images_per_second"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    config = TrainConfig(
        data="lesions",
        out=str(tmp_path_factory.mktemp("shard") / "run"),
        arch="smallcnn",
        lap="auto",
        supervision="weak",
        epochs=1,
        n_images=48,
        image_size=32,
        batch_size=16,
        progress_bar=False,
    )
    return fit(config)


_METHODS = ("lap", "gradcam", "rise")
_RISE = {"rise": {"n_masks": 24, "mask_batch_size": 24}}
# 5 test images in batches of 2, 2, 1: rank 0 explains one batch, rank 1 two; the 2 stability
# images are one batch (rank 1 explains none of them); 5 validation images fit the threshold
_SETTINGS = dict(max_images=5, max_val_images=5, batch_size=2, stability_images=2, tie_draws=2)


def _evaluate_sharded(run: Path, out: Path, devices: int) -> subprocess.CompletedProcess:
    """`torchlap evaluate --devices N` in its own process (Lightning's launcher re-runs this
    command line for the other ranks, so it must be a real command line, not pytest's)."""
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in _SETTINGS.items()]
    command = [
        sys.executable, "-m", "torchlap.cli", "evaluate", "--run", str(run), "--out", str(out),
        "--methods", ",".join(_METHODS), *flags, "--method-options", json.dumps(_RISE),
        "--devices", str(devices),
    ]  # fmt: skip
    launcher = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {  # a plain process, even inside a SLURM job or a torchrun worker
        name: value
        for name, value in os.environ.items()
        if name not in launcher and not name.startswith(("SLURM_", "TORCHELASTIC_"))
    }
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _assert_same(a, b, path: str = "") -> None:
    """Same keys and values; floats to 1e-6 (wall-clock values excepted)."""
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, path
    if isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for key in a:
            if key not in _CLOCK_KEYS:
                _assert_same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@pytest.mark.skipif((_CORES or 1) < 2, reason="two CPU processes need two cores")
def test_two_processes_write_what_one_process_writes(tiny_run, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    options = EvaluateOptions(methods=_METHODS, method_options=_RISE, **_SETTINGS)
    first = evaluate_run(tiny_run, None, one, options)  # one process (this one)
    # resume under sharding: gradcam's cached results are there, lap and rise are not
    (two / "methods").mkdir(parents=True)
    shutil.copy(one / "methods" / "gradcam.json", two / "methods" / "gradcam.json")
    done = _evaluate_sharded(tiny_run, two, 2)
    second = json.loads((two / "results.json").read_text())
    _assert_same(json.loads(json.dumps(first)), second)
    assert second["data"]["n_images"] == second["maps"]["rise"]["n"] == 5  # not one shard's
    assert second["data"]["n_val_images"] == 5
    # the same files, written once: rank 1 writes nothing and prints nothing
    files = {p.relative_to(one) for p in one.rglob("*")}
    assert files | {Path("evaluate.log")} == {p.relative_to(two) for p in two.rglob("*")}
    for name in _METHODS:
        cached = json.loads((two / "methods" / f"{name}.json").read_text())
        reference = json.loads((one / "methods" / f"{name}.json").read_text())
        assert cached["fingerprint"] == reference["fingerprint"]
        _assert_same(reference["results"], cached["results"])
    log = (two / "evaluate.log").read_text()
    assert "sharded evaluation: rank 0 of 2 processes (gloo)" in log
    assert "rank 1" not in log and "rank 1" not in done.stderr
    assert log.count("gradcam: reusing") == 1 and "rise: reusing" not in log
    assert done.stdout.count("results:") == 1


def _dealt_by_loop(n: int, batch_size: int, world: int) -> list[list[int]]:
    """The images of each rank, dealing whole batches one by one (the slow reference)."""
    batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    ranks: list[list[int]] = [[] for _ in range(world)]
    for r in range(world):
        lo = len(batches) * r // world
        hi = len(batches) * (r + 1) // world
        for b in range(lo, hi):
            ranks[r].extend(batches[b])
    return ranks


@pytest.mark.parametrize("n,batch_size,world", [(12, 4, 2), (13, 4, 3), (3, 4, 2), (0, 2, 2),
                                                (50, 7, 4), (5, 1, 5)])  # fmt: skip
def test_shard_bounds_cover_every_image_once_in_whole_batches(n, batch_size, world):
    expected = _dealt_by_loop(n, batch_size, world)
    got = [list(range(*shard_bounds(n, batch_size, r, world))) for r in range(world)]
    assert got == expected
    assert [i for images in got for i in images] == list(range(n))
    for images in got:  # every shard starts at a batch boundary of the single-process run
        assert not images or images[0] % batch_size == 0


_LAUNCHER_VARS = (
    "TORCHELASTIC_RUN_ID",
    "SLURM_NTASKS",
    "SLURM_JOB_NAME",
    "MASTER_ADDR",
    "NODE_RANK",
)


def test_several_nodes_need_a_launcher(monkeypatch):
    """--num-nodes 2 without torchrun/SLURM waited forever for the other node (and Ctrl-C)."""
    for name in _LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match=r"--num-nodes 2 needs a launcher.*torchrun.*srun"):
        check_sharding("1", 2, "cpu")
    assert check_sharding("1", 1, "cpu").world_size == 1
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")  # torchrun sets it
    assert check_sharding("1", 2, "cpu").world_size == 2
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.setenv("SLURM_NTASKS", "4")  # srun
    assert check_sharding("2", 2, "cpu").world_size == 4
    monkeypatch.delenv("SLURM_NTASKS")
    monkeypatch.setenv("MASTER_ADDR", "host")  # Lightning's manual launch, on each node
    monkeypatch.setenv("NODE_RANK", "1")
    assert check_sharding("1", 3, "cpu").world_size == 3


def test_bad_sharding_arguments_are_refused_before_any_process(tiny_run, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="selects no process"):
        check_sharding("0", 1, "cpu")
    with pytest.raises(ValueError, match="only CUDA"):
        check_sharding("0,1", 1, "cpu")
    with pytest.raises(ValueError, match="num-nodes"):
        check_sharding("2", 0, "cpu")
    with pytest.raises(ValueError, match="count"):
        check_sharding("two", 1, "cpu")
    with pytest.raises(ValueError, match="CPU cores"):
        check_sharding(str((_CORES or 1) + 1), 1, "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA devices"):
            check_sharding("2", 1, "cuda")
    assert check_sharding("1", 1, "cpu").world_size == 1
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")  # several nodes need a launcher
    assert check_sharding("2", 3, "cpu").world_size == 6
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    out = tmp_path / "refused"
    result = CliRunner().invoke(
        app, ["evaluate", "--run", str(tiny_run), "--out", str(out), "--devices", "0"]
    )
    assert result.exit_code == 2
    assert result.output.count("selects no process") == 1
    assert not out.exists()  # refused before anything was written


def test_fewer_batches_than_processes_are_announced(caplog):
    cpu = torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger="torchlap.evaluate.core"):
        _warn_idle_ranks(16, 32)  # one process: nothing to say
        with sharding(ShardContext(rank=0, world_size=2, device=cpu)):
            _warn_idle_ranks(16, 8)  # two batches for two processes
        with sharding(ShardContext(rank=1, world_size=2, device=cpu)):
            _warn_idle_ranks(16, 32)  # rank 0 alone speaks
        assert caplog.records == []
        with sharding(ShardContext(rank=0, world_size=2, device=cpu)):
            _warn_idle_ranks(16, 32)
    (record,) = caplog.records
    assert "1 batch(es) for 2 processes" in record.getMessage()
    assert "--batch-size 8" in record.getMessage()


def test_every_rank_uses_rank_zeros_predictions(tiny_run, tmp_path, monkeypatch):
    """Which images are explained again for another class decides how many (collective)
    explanation calls a rank makes; each rank used its own argmax, so a near tie rounding
    differently on another GPU would leave the ranks waiting for each other. The predictions
    now come from rank 0 (here: a stand-in rank 0 that predicts class 1 everywhere)."""
    import torchlap.evaluate.core as core

    broadcast: list[torch.Tensor] = []

    def rank_zero(value):
        broadcast.append(value)
        return torch.ones_like(value)  # rank 0's predictions, unlike this rank's

    monkeypatch.setattr(core, "broadcast_from_zero", rank_zero)
    options = EvaluateOptions(methods=("gradcam",), lime_images=0, **_SETTINGS)
    results = evaluate_run(tiny_run, None, tmp_path / "eval", options, write_report=False)
    assert [len(v) for v in broadcast] == [5, 5]  # the test and validation predictions
    # the model metrics read the logits; the explained class is rank 0's prediction
    assert results["protocol"]["drop_increase_class"] == "the explained class (target: prediction)"
