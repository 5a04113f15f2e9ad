"""Who started this process, and how many: the one owner of torchlap's launcher detection and
of ``--devices``.

``torchlap train`` and ``torchlap evaluate``/``compare`` both refuse ``--num-nodes M > 1``
without a launcher (the other nodes' processes would never come, and the run would wait
forever), sharded evaluation starts its own processes only when no launcher did, and both read
``--devices`` with :func:`parse_devices` and count the CPU cores with :func:`usable_cpu_cores`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

__all__ = [
    "claim_worker_report",
    "ended_workers",
    "external_launcher",
    "multi_node_launcher",
    "parse_devices",
    "require_multi_node_launcher",
    "say_when_a_worker_dies",
    "usable_cpu_cores",
    "worker_failure",
]


def parse_devices(devices: str | int, allow_auto: bool = False) -> str | int | list[int]:
    """``--devices`` as Lightning takes it: a count of processes >= 1 (``2``), a comma list of
    distinct device ids >= 0 (``0,1``), or, with ``allow_auto`` (``torchlap train``),
    ``"auto"``. Raises ``ValueError`` naming what is accepted for anything else: an empty id
    (``"0,,1"``, ``""``: refused, not skipped), a count of 0, a repeated or negative id, where
    Lightning would fail only after the run folder exists; ``TypeError`` for a bool."""
    accepted = (
        "'auto', " if allow_auto else ""
    ) + "a count (2) or a comma list of device ids (0,1)"
    if isinstance(devices, bool) or not isinstance(devices, (str, int)):
        raise TypeError(f"--devices must be {accepted}, got {devices!r}")
    text = str(devices).strip()
    if allow_auto and text == "auto":
        return "auto"
    try:
        parsed: int | list[int] = int(text) if text.isdigit() else [int(p) for p in text.split(",")]
    except ValueError:
        raise ValueError(f"--devices must be {accepted}, got {devices!r}") from None
    if parsed == 0:
        raise ValueError(f"--devices {devices!r} selects no process; pass {accepted}")
    if isinstance(parsed, list) and (len(set(parsed)) != len(parsed) or min(parsed) < 0):
        raise ValueError(
            f"--devices {devices!r} names a device twice or a negative id; pass {accepted}"
        )
    return parsed


def usable_cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def external_launcher() -> bool:
    """Whether torchrun or SLURM started the processes (Lightning's detection)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    return TorchElasticEnvironment.detect() or SLURMEnvironment.detect()


def multi_node_launcher() -> bool:
    """Whether the other nodes' processes are started by someone else: torchrun, SLURM, or the
    manual launch Lightning documents (the same command on each node with ``MASTER_ADDR``,
    ``MASTER_PORT`` and ``NODE_RANK`` set). Without one, ``--num-nodes M > 1`` waits forever
    for nodes that never come."""
    manual = bool(os.environ.get("MASTER_ADDR")) and bool(os.environ.get("NODE_RANK"))
    return manual or external_launcher()


def require_multi_node_launcher(num_nodes: int, command: str) -> None:
    """Raise ``ValueError`` when ``num_nodes > 1`` and :func:`multi_node_launcher` finds none;
    the message gives the torchrun and srun forms of ``torchlap COMMAND``."""
    if num_nodes > 1 and not multi_node_launcher():
        raise ValueError(
            f"--num-nodes {num_nodes} needs a launcher that starts the processes of every node, "
            "and none was detected (torchrun, SLURM, or MASTER_ADDR/NODE_RANK set on each node): "
            f"run `torchrun --nnodes {num_nodes} --nproc-per-node N --rdzv-backend c10d "
            f"--rdzv-endpoint HOST:PORT -m torchlap.cli {command} ...` on every node, or `srun "
            f"torchlap {command} ...` in a SLURM job of {num_nodes} nodes; on one machine pass "
            "--num-nodes 1"
        )


#: the other local ranks Lightning's launcher started from this process; their end is said
#: once, by whoever claims it first (the watcher thread or the main thread's error)
_children: list[subprocess.Popen] = []
_claim = threading.Lock()


def claim_worker_report() -> bool:
    """``True`` once: the caller says how the other ranks ended (later callers must not)."""
    return _claim.acquire(blocking=False)


def _ending(code: int) -> str:
    """How a process ended, from its ``returncode`` (negative: the signal that killed it)."""
    if code >= 0:
        return f"ended with exit code {code} (its error is printed above)"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    text = f"was killed by {name}"
    if -code == signal.SIGKILL:
        text += " (the kernel's out-of-memory killer sends it when memory runs out)"
    return text


def ended_workers(wait: float = 3.0) -> str | None:
    """The other local ranks started from this process that ended with a non-zero code, said
    in words (``local rank 1 was killed by SIGKILL ...``), waiting up to ``wait`` seconds for
    one to end; ``None`` when none did (or this process started none)."""
    deadline = time.monotonic() + wait
    while _children:
        ended = [(rank, process.poll()) for rank, process in enumerate(_children, 1)]
        failed = [(rank, code) for rank, code in ended if code]
        if failed:
            return "; ".join(f"local rank {rank} {_ending(code)}" for rank, code in failed)
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return None


def say_when_a_worker_dies(command: str) -> None:
    """In the process that Lightning's launcher started the other local ranks from: when one of
    them ends with a non-zero code, end the others and this process with exit code 1 after one
    line ``Error: a process of the sharded COMMAND stopped: local rank N ...`` (a process killed
    by a signal says nothing itself; one that failed with an error printed its own line).

    Lightning's watcher (its ``child-process-observer`` thread) killed every process, this one
    included, with SIGKILL and without a word: the shell's "Killed" and exit code 137. Without
    that watcher (torchrun, SLURM, one process), nothing changes.
    """
    for thread in threading.enumerate():
        children = getattr(thread, "_child_processes", None)
        if thread.name != "child-process-observer" or not hasattr(thread, "_terminate_all"):
            continue
        if not isinstance(children, list):
            continue
        _children[:] = children

        def end_all() -> None:
            named = ended_workers(wait=0.0)
            for process in _children:
                if process.poll() is None:
                    process.kill()  # SIGKILL, as Lightning: SIGTERM is lost in a collective
            if named and claim_worker_report():
                sys.stderr.write(f"Error: {worker_failure(command, named)}\n")
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(1)  # the others may be blocked in a collective: no clean unwinding

        thread._terminate_all = end_all  # type: ignore[attr-defined]


def worker_failure(command: str, named: str) -> str:
    """The message for the other ranks' end ``named`` by :func:`ended_workers`."""
    return (
        f"a process of the sharded {command} stopped: {named}; every process was ended. Rerun "
        "the command (results already written are reused), with fewer --devices or a smaller "
        "--batch-size if memory ran out"
    )
