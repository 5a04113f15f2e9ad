"""Timing and peak-memory measurement used by every ``torchlap bench`` command.

Machines are noisy, so benchmarks print ratios against a reference measured in the same run,
interleaving the candidates' repetitions so that a slow spell hurts all of them alike.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
import warnings
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from torchlap._ext import kernel_work_peak
from torchlap.metrics._common import eval_mode

logger = logging.getLogger(__name__)


#: the largest batch a benchmark option takes (the default shapes' batches are 16 to 32; a
#: larger one asks torch for more memory than any machine has and fails with a C++ stack)
MAX_BATCH = 4096
#: the largest input side a benchmark option takes (training's limit, MAX_IMAGE_SIDE)
MAX_SIDE = 8192


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], object], device: torch.device, repeats: int = 5, best: bool = False
) -> float:
    """Median (``best=True``: minimum) wall time in seconds of ``fn()`` after one warm-up call.

    The minimum is the robust statistic on a shared machine: other jobs only ever add time.
    """
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[0] if best else times[len(times) // 2]


@contextmanager
def _quiet_kineto() -> Iterator[None]:
    """The profiler's C++ library (kineto) prints every start and stop, and a failed GPU probe,
    to stderr; ``KINETO_LOG_LEVEL=6`` silences it. Kineto reads the variable at its first use
    in the process, so it is set for the block only (a user's own value wins) and the
    environment is the caller's again afterwards, also on error: later profiles stay quiet."""
    key = "KINETO_LOG_LEVEL"
    had = key in os.environ
    os.environ.setdefault(key, "6")
    try:
        yield
    finally:
        if not had:
            os.environ.pop(key, None)


def peak_memory_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated while ``fn()`` runs, above what was allocated before it.

    On CUDA: the caching allocator's peak counter. On the CPU there is no such counter, so this
    reads the PyTorch profiler's memory timeline (every allocation and free, in order), and adds
    the largest work-buffer bytes of one compiled LAP kernel call (``kernel_work_peak``: the
    kernels allocate with the C allocator, which the profiler does not see; added in full, so
    the figure is an upper bound).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    kernel_work_peak(reset=True)
    with warnings.catch_warnings(), _quiet_kineto():
        warnings.simplefilter("ignore")
        with profile(
            activities=[ProfilerActivity.CPU],
            profile_memory=True,
            record_shapes=True,
            with_stack=True,
        ) as prof:
            fn()
        timeline = MemoryProfileTimeline(prof._memory_profile())
        _, sizes = timeline._coalesce_timeline(torch.device("cpu"))
    return int(max((sum(row) for row in sizes), default=0)) + kernel_work_peak(reset=True)


@dataclass
class Measurement:
    """One candidate's median time (s) and peak memory (bytes)."""

    name: str
    seconds: float
    peak_bytes: int


def measure(
    candidates: dict[str, Callable[[], object]],
    device: torch.device,
    repeats: int = 5,
    rounds: int = 3,
    memory: Collection[str] | None = None,
) -> dict[str, Measurement]:
    """Time every candidate ``repeats`` times in each of ``rounds`` interleaved rounds; keep
    each one's fastest call (other jobs on the machine only ever add time). The peak memory of
    the candidates named in ``memory`` (None: all; -1 bytes for the others)."""
    best: dict[str, float] = {name: float("inf") for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            best[name] = min(best[name], time_call(fn, device, repeats, best=True))
    return {
        name: Measurement(
            name,
            best[name],
            peak_memory_bytes(fn, device) if memory is None or name in memory else -1,
        )
        for name, fn in candidates.items()
    }


def keeps_model_flags(function: Callable) -> Callable:
    """Run ``function`` with its ``model`` argument in eval mode and restore every submodule's
    train/eval flag afterwards, also on error (a benchmark must not leave a caller's model in
    another mode). A ``model`` that is None or not an ``nn.Module`` is left alone."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        model = signature.bind_partial(*args, **kwargs).arguments.get("model")
        with eval_mode(model):
            return function(*args, **kwargs)

    return wrapper


def keeps_rng_state(function: Callable) -> Callable:
    """Run ``function`` with the caller's random state kept: a benchmark seeds torch's global
    generators (CPU, and every CUDA device) for its own models and inputs, and hands them back
    as they were afterwards, also on error."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            return function(*args, **kwargs)

    return wrapper
