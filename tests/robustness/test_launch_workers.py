"""torchlap.launch: how the other local ranks' end is said (exit code, signal, the OOM hint),
waiting for it, said once, Lightning's watcher taken over, the launcher detection for several
nodes, and the CPU cores counted."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from torchlap import launch


class _Process:
    """A child process whose ``poll()`` answers ``codes`` in turn (the last one for good)."""

    def __init__(self, *codes: int | None) -> None:
        self.codes = list(codes)
        self.killed = False
        self.polls = 0

    def poll(self) -> int | None:
        self.polls += 1
        return self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]

    def kill(self) -> None:
        self.killed = True


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[_Process]:
    started: list[_Process] = []
    monkeypatch.setattr(launch, "_children", started)
    monkeypatch.setattr(launch, "_claim", threading.Lock())
    return started


def test_how_a_process_ended_is_said() -> None:
    printed = "(its error is printed above)"
    assert launch._ending(1) == f"ended with exit code 1 {printed}"
    assert launch._ending(0) == f"ended with exit code 0 {printed}"
    assert launch._ending(-9) == (
        "was killed by SIGKILL (the kernel's out-of-memory killer sends it when memory runs out)"
    )
    assert launch._ending(-15) == "was killed by SIGTERM"
    assert launch._ending(-200) == "was killed by signal 200"


def test_the_failed_ranks_are_named_from_one(children: list[_Process]) -> None:
    assert launch.ended_workers(wait=5.0) is None  # no other rank started from here
    children[:] = [_Process(0), _Process(None), _Process(-9), _Process(2)]
    assert launch.ended_workers(wait=0.0) == (
        "local rank 3 was killed by SIGKILL (the kernel's out-of-memory killer sends it when "
        "memory runs out); local rank 4 ended with exit code 2 (its error is printed above)"
    )


def test_a_failure_is_waited_for_up_to_the_time_given(children: list[_Process]) -> None:
    children[:] = [_Process(None, None, 1)]
    said = launch.ended_workers(wait=5.0)  # ends after the 3rd look
    assert said == "local rank 1 ended with exit code 1 (its error is printed above)"
    running = _Process(None)
    children[:] = [running]
    started = time.monotonic()
    assert launch.ended_workers(wait=0.3) is None
    assert 0.3 <= time.monotonic() - started < 3.0
    assert running.polls <= 10  # a look every 0.1 s, not a busy loop


def test_the_report_is_claimed_once(children: list[_Process]) -> None:
    assert launch.claim_worker_report() is True
    assert launch.claim_worker_report() is False


def _observer(name: str, processes: object) -> SimpleNamespace:
    return SimpleNamespace(name=name, _child_processes=processes, _terminate_all="lightning's")


def _take_over(monkeypatch: pytest.MonkeyPatch, threads: list[SimpleNamespace]) -> list[int]:
    exits: list[int] = []
    monkeypatch.setattr(launch, "threading", SimpleNamespace(enumerate=lambda: threads))
    monkeypatch.setattr(launch, "os", SimpleNamespace(_exit=exits.append))
    launch.say_when_a_worker_dies("evaluation")
    return exits


def test_lightnings_watcher_ends_everyone_after_one_line(children, monkeypatch, capsys) -> None:
    failed, running = _Process(-9), _Process(None)
    others = [
        _observer("another-thread", [_Process(1)]),
        _observer("child-process-observer", "not a list"),
        SimpleNamespace(name="child-process-observer", _child_processes=[_Process(1)]),
    ]
    watcher = _observer("child-process-observer", [failed, running])
    exits = _take_over(monkeypatch, [*others, watcher])
    assert [t._terminate_all for t in others[:2]] == ["lightning's", "lightning's"]
    assert not hasattr(others[2], "_terminate_all")
    assert children == [failed, running]
    watcher._terminate_all()
    assert exits == [1] and running.killed and not failed.killed
    assert capsys.readouterr().err == (
        "Error: a process of the sharded evaluation stopped: local rank 1 was killed by SIGKILL "
        "(the kernel's out-of-memory killer sends it when memory runs out); every process was "
        "ended. Rerun the command (results already written are reused), with fewer --devices "
        "or a smaller --batch-size if memory ran out\n"
    )
    watcher._terminate_all()  # the report was given: said once
    assert exits == [1, 1] and capsys.readouterr().err == ""


def test_a_watcher_ending_without_a_failure_says_nothing(children, monkeypatch, capsys) -> None:
    running = _Process(None)
    watcher = _observer("child-process-observer", [_Process(0), running])
    exits = _take_over(monkeypatch, [watcher])
    started = time.monotonic()
    watcher._terminate_all()
    assert time.monotonic() - started < 0.5  # no waiting for a failure: the end is now
    assert exits == [1] and running.killed and capsys.readouterr().err == ""
    assert launch.claim_worker_report() is True  # not taken by the silent end


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, False),
        ({"MASTER_ADDR": "host"}, False),
        ({"NODE_RANK": "1"}, False),
        ({"MASTER_ADDR": "host", "NODE_RANK": "0"}, True),
        ({"TORCHELASTIC_RUN_ID": "job"}, True),
        ({"SLURM_NTASKS": "2", "SLURM_JOB_NAME": "train"}, True),
    ],
)
def test_a_launcher_for_several_nodes(monkeypatch, variables, expected) -> None:
    names = ("MASTER_ADDR", "NODE_RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_JOB_NAME")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert launch.multi_node_launcher() is expected
    launch.require_multi_node_launcher(1, "train")  # one node needs none
    if expected:
        launch.require_multi_node_launcher(2, "train")
    else:
        with pytest.raises(ValueError, match=r"--num-nodes 2 needs a launcher"):
            launch.require_multi_node_launcher(2, "train")


def test_cpu_cores_are_the_affinity_mask_or_the_count(monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5} if pid == 0 else {0})
    assert launch.usable_cpu_cores() == 3
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert launch.usable_cpu_cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown
    assert launch.usable_cpu_cores() == 1


def test_the_line_and_pending_output_are_flushed_before_the_exit(children, monkeypatch) -> None:
    """``os._exit`` skips Python's flushing: a buffered stream must be flushed before it."""
    err, out = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, encoding="utf-8"))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding="utf-8"))
    watcher = _observer("child-process-observer", [_Process(3)])
    exits = _take_over(monkeypatch, [watcher])
    print("a result line")
    watcher._terminate_all()
    assert exits == [1] and out.getvalue() == b"a result line\n"
    assert err.getvalue().startswith(b"Error: a process of the sharded evaluation stopped: ")
