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

# values that say how the evaluation ran, not what it found: the wall clock, and the threads
# and processes of results["environment"] (checked on their own below)
_CLOCK_KEYS = {"seconds", "images_per_second", "threads", "processes"}


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


_LAUNCHER = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
#: what a plain process has none of, even inside a SLURM job or a torchrun worker
_LAUNCHER_VARIABLES = frozenset(
    name for name in os.environ if name in _LAUNCHER or name.startswith(("SLURM_", "TORCHELASTIC_"))
)


def _evaluate_sharded(
    run: Path,
    out: Path,
    devices: int,
    script: Path | None = None,
    methods=_METHODS,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """`torchlap evaluate --devices N` in its own process (Lightning's launcher re-runs this
    command line for the other ranks, so it must be a real command line, not pytest's);
    ``script``: a Python file running torchlap's CLI instead (its exit code is not checked);
    ``extra``: more flags."""
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in _SETTINGS.items()]
    flags += extra
    # options of the evaluated methods only (the CLI refuses those of a method not evaluated)
    chosen = {method: options for method, options in _RISE.items() if method in methods}
    if chosen:
        flags += ["--method-options", json.dumps(chosen)]
    cli = ["-m", "torchlap.cli"] if script is None else [str(script)]
    command = [
        sys.executable, *cli, "evaluate", "--run", str(run), "--out", str(out),
        "--methods", ",".join(methods), *flags, "--devices", str(devices),
    ]  # fmt: skip
    env = {  # a plain process, even inside a SLURM job or a torchrun worker
        name: value for name, value in os.environ.items() if name not in _LAUNCHER_VARIABLES
    }
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert script is not None or done.returncode == 0, done.stderr[-3000:]
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
    assert (first["environment"]["processes"], second["environment"]["processes"]) == (1, 2)
    assert first["environment"]["threads"] == torch.get_num_threads()
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


@pytest.mark.skipif((_CORES or 1) < 2, reason="two CPU processes need two cores")
def test_the_lime_options_reach_the_check_of_a_sharded_evaluation(tmp_path):
    # every rank re-runs the command line; rank 0 runs the LIME check with --lime-option's
    run = fit(TrainConfig(
        data="lesions", out=str(tmp_path / "bla"), arch="smallcnn", model="bla-t", lap="none",
        supervision="none", epochs=1, n_images=40, image_size=32, batch_size=16,
        progress_bar=False,
    ))  # fmt: skip
    chosen = {"weighting": "none", "cam_relu": False}
    flags = ("--lime-images", "2", "--lime-option", "weighting=none", "--lime-option",
             "cam_relu=false")  # fmt: skip
    _evaluate_sharded(run, tmp_path / "two", 2, methods=("bla",), extra=flags)
    sharded = json.loads((tmp_path / "two" / "results.json").read_text())
    options = EvaluateOptions(methods=("bla",), lime_images=2, lime_options=chosen, **_SETTINGS)
    alone = evaluate_run(run, None, tmp_path / "one", options)
    assert sharded["options"]["lime_options"] == chosen
    assert sharded["lime_spearman"]["options"] == {"cam_relu": False, "weighting": "none"}
    _assert_same(json.loads(json.dumps(alone["lime_spearman"])), sharded["lime_spearman"])


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


def test_every_rank_uses_rank_zeros_confident_images(tiny_run, tmp_path, monkeypatch):
    """The grid pointing game's confident images were decided by each rank on its own: a
    probability rounding below the threshold on another GPU gave that rank other grids (rank 0
    scored the gathered maps against its own cells) or too few eligible images (other
    collective calls). Rank 0 now decides (here: a stand-in rank 0 finding every image
    confident, while this rank finds image 1 below the threshold)."""
    import torchlap.data.grid as grid
    import torchlap.evaluate.checks as checks

    def this_rank(model, images, labels, min_confidence=0.9, batch_size=64):
        eligible = torch.ones(len(labels), dtype=torch.bool)
        eligible[1] = False  # one probability rounds below the threshold on this rank
        return eligible, torch.ones(len(labels))

    monkeypatch.setattr(grid, "confident_images", this_rank)
    monkeypatch.setattr(checks, "confident_images", this_rank, raising=False)
    decided: list[torch.Tensor] = []

    def rank_zero(function):
        decided.append(function())  # what this rank would have decided
        return torch.ones_like(decided[-1])  # rank 0's decision, unlike this rank's

    monkeypatch.setattr(checks, "on_rank_zero", rank_zero, raising=False)
    options = EvaluateOptions(methods=("gradcam",), lime_images=0, grid_pg=True,
                              grid_pg_confidence=0.0, grid_pg_grids=8, **_SETTINGS)  # fmt: skip
    results = evaluate_run(tiny_run, None, tmp_path / "eval", options, write_report=False)
    setup = results["grid_pointing_setup"]
    assert [int(d.sum()) for d in decided] == [4]  # this rank's own decision was not used
    assert setup["n_eligible_images"] == 5  # rank 0's
    assert 1 in {source for grid_sources in setup["cell_sources"] for source in grid_sources}


_FAIL_ON_RANK_ONE = """
import os

if os.environ.get("LOCAL_RANK") == "1":
    import torchlap.evaluate.core as core

    def fail(*args, **kwargs):
        raise RuntimeError("injected failure on rank 1")

    core._logits = fail
from torchlap.cli import main

main()
"""


@pytest.mark.skipif((_CORES or 1) < 2, reason="two CPU processes need two cores")
def test_an_error_on_another_rank_is_shown_once_naming_the_rank(tiny_run, tmp_path):
    """Only rank 0 printed its error, and rank 0 saw only gloo's 'Connection closed by peer':
    why rank 1 failed was shown nowhere."""
    script = tmp_path / "fail_on_rank_one.py"
    script.write_text(_FAIL_ON_RANK_ONE)
    done = _evaluate_sharded(tiny_run, tmp_path / "eval", 2, script, methods=("gradcam",))
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert lines.count("rank 1: Error: injected failure on rank 1") == 1, done.stderr[-3000:]
    assert not any(line.startswith("rank 0:") for line in lines)


_KILLED_ON_RANK_ONE = """
import os
import signal

if os.environ.get("LOCAL_RANK") == "1":
    import torchlap.evaluate.core as core

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer does

    core._logits = die
from torchlap.cli import main

main()
"""


@pytest.mark.skipif((_CORES or 1) < 2, reason="two CPU processes need two cores")
def test_a_rank_killed_by_a_signal_is_named(tiny_run, tmp_path):
    """A rank killed by a signal prints nothing; rank 0 printed gloo's 'Connection reset by
    peer ... GLHF!', or Lightning's watcher killed it with SIGKILL (exit 137, no line)."""
    script = tmp_path / "killed_on_rank_one.py"
    script.write_text(_KILLED_ON_RANK_ONE)
    done = _evaluate_sharded(tiny_run, tmp_path / "eval", 2, script, methods=("gradcam",))
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "Error" in line]
    assert errors == [
        "Error: a process of the sharded evaluation stopped: local rank 1 was killed by SIGKILL "
        "(the kernel's out-of-memory killer sends it when memory runs out); every process was "
        "ended. Rerun the command (results already written are reused), with fewer --devices "
        "or a smaller --batch-size if memory ran out"
    ], done.stderr[-3000:]


def test_another_ranks_error_line_names_its_rank(tmp_path, monkeypatch):
    for name in ("RANK", "NODE_RANK", "SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    missing = ["evaluate", "--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]
    monkeypatch.setenv("LOCAL_RANK", "1")
    result = CliRunner().invoke(app, missing)
    assert result.exit_code == 2
    assert result.output.startswith("rank 1: Error: run folder ")
    monkeypatch.setenv("NODE_RANK", "1")  # Lightning's launcher on a second node
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert CliRunner().invoke(app, missing).output.startswith("node 1 local rank 0: Error: ")
    monkeypatch.setenv("RANK", "3")  # torchrun's global rank, with its process count
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert CliRunner().invoke(app, missing).output.startswith("rank 3: Error: ")
    monkeypatch.setenv("RANK", "0")
    assert CliRunner().invoke(app, missing).output.startswith("Error: run folder ")


def test_another_rank_leaves_a_dropped_connection_unsaid(tmp_path, monkeypatch):
    # a rank whose peer failed sees gloo's "Connection closed by peer": the peer's own line
    # says why, so this one is not repeated (exit code kept); its own errors are printed
    import torch.distributed

    import torchlap.evaluate.cli as evaluate_cli

    for name in ("RANK", "NODE_RANK", "SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    run = tmp_path / "run"
    run.mkdir()
    args = ["evaluate", "--run", str(run), "--out", str(tmp_path / "out")]
    for error, shown in (
        (torch.distributed.DistNetworkError("[pair.cc:561] Connection closed by peer"), False),
        (RuntimeError("[gloo/pair.cc:561] Connection closed by peer [127.0.0.1]"), False),
        (RuntimeError("out of memory"), True),
    ):

        def fail(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(evaluate_cli, "_launch", fail)
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1
        assert result.output == ("rank 1: Error: out of memory\n" if shown else "")


_TWICE = """
import sys
import torch
from torchlap.evaluate.shard import active, check_sharding, gather_rows, launch_sharded

plan = check_sharding(2, 1, "cpu")


def work(call):
    context = active()
    rows = torch.full((context.rank + 1, 2), float(10 * call + context.rank))
    return gather_rows(rows, context).tolist()


for call in (1, 2):
    result = launch_sharded(plan, lambda: work(call))
    if result is not None:
        print(f"call {call}: {result}", flush=True)
"""


@pytest.mark.skipif((_CORES or 1) < 2, reason="two CPU processes need two cores")
def test_a_script_may_shard_twice(tmp_path):
    """Lightning's launcher re-runs the script for the other rank, which stays in it: the second
    launch must join that rank (the launcher's variables kept, as Lightning keeps them), not start
    a second set of processes and wait forever for the first."""
    script = tmp_path / "twice.py"
    script.write_text(_TWICE)
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines == [
        "call 1: [[10.0, 10.0], [11.0, 11.0], [11.0, 11.0]]",
        "call 2: [[20.0, 20.0], [21.0, 21.0], [21.0, 21.0]]",
    ], done.stdout
