"""``torchlap.bench.common`` on a fake clock and a fake CUDA: which calls are timed, the
statistic kept (median, fastest, best of rounds), and the peak-memory bookkeeping."""

from __future__ import annotations

import os
import types

import pytest
import torch

from torchlap.bench import common


class _Clock:
    """A fake ``time`` module: ``perf_counter`` reads ``now``, which the fake work advances."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def _work(clock: _Clock, durations: list[float]):
    """A call that takes the next of ``durations`` (seconds) on ``clock``; ``calls`` counts."""
    left = list(durations)

    def fn() -> None:
        fn.calls += 1
        clock.now += left.pop(0)

    fn.calls = 0
    return fn


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(common, "time", fake)
    return fake


CPU = torch.device("cpu")


def test_time_call_keeps_the_median_or_the_fastest_and_never_times_the_warm_up(clock):
    # the warm-up takes 100 s; the timed calls 2, 5, 4, 1 and 3 s
    fn = _work(clock, [100, 2, 5, 4, 1, 3])
    assert common.time_call(fn, CPU, repeats=5) == 3
    assert fn.calls == 6
    assert common.time_call(_work(clock, [100, 2, 5, 4, 1, 3]), CPU, 5, best=True) == 1
    # the defaults: the median of five timed calls after the warm-up
    fn = _work(clock, [100, 2, 5, 4, 1, 3])
    assert common.time_call(fn, CPU) == 3
    assert fn.calls == 6


def test_time_call_waits_for_the_gpus_queued_work(clock, monkeypatch):
    """On CUDA a call only queues its work; the time includes the wait for it to finish, and
    the warm-up's queued work is waited for before the clock starts."""
    queued = []

    def enqueue(durations):
        left = list(durations)
        return lambda: queued.append(left.pop(0))

    def synchronize(device=None):
        clock.now += sum(queued)
        queued.clear()

    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    cuda = torch.device("cuda")
    assert common.time_call(enqueue([100, 2, 6]), cuda, repeats=2) == 6
    assert common.time_call(enqueue([100, 2, 6]), cuda, repeats=2, best=True) == 2


def test_measure_keeps_each_candidates_fastest_call_over_all_rounds(clock):
    # per round: a warm-up (50 s) and three timed calls; a's fastest is in round 2, b's in 1
    a = _work(clock, [50, 4, 3, 5, 50, 6, 2, 7, 50, 9, 9, 9])
    b = _work(clock, [50, 1, 8, 8, 50, 5, 5, 5, 50, 7, 7, 7])
    results = common.measure({"a": a, "b": b}, CPU, repeats=3, rounds=3, memory=())
    assert (results["a"].seconds, results["b"].seconds) == (2, 1)
    assert results["a"].name == "a" and results["a"].peak_bytes == -1


def test_measure_with_its_defaults_gives_a_finite_time(clock):
    fn = _work(clock, [1.0] * 100)
    results = common.measure({"only": fn}, CPU, memory=())
    assert results["only"].seconds == 1.0


def test_measure_takes_the_peak_memory_of_the_named_candidates_only(monkeypatch):
    monkeypatch.setattr(common, "peak_memory_bytes", lambda fn, device: 123)
    candidates = {"a": lambda: None, "b": lambda: None}
    results = common.measure(candidates, CPU, repeats=1, rounds=1, memory=("a",))
    assert (results["a"].peak_bytes, results["b"].peak_bytes) == (123, -1)
    results = common.measure(candidates, CPU, repeats=1, rounds=1)
    assert (results["a"].peak_bytes, results["b"].peak_bytes) == (123, 123)


class _FakeCuda:
    """CUDA's allocator counters; allocations and frees land when the device is synchronised."""

    def __init__(self) -> None:
        self.allocated, self.peak, self.queued = 1000, 10_000, [300]

    def synchronize(self, device=None) -> None:
        for change in self.queued:
            self.allocated += change
            self.peak = max(self.peak, self.allocated)
        self.queued.clear()

    def reset_peak_memory_stats(self, device=None) -> None:
        self.peak = self.allocated

    def memory_allocated(self, device=None) -> int:
        return self.allocated

    def max_memory_allocated(self, device=None) -> int:
        return self.peak


def test_cuda_peak_memory_is_the_calls_own_above_what_was_allocated(monkeypatch):
    """Not the peak of before (10 000 bytes), not the caller's queued 300 bytes: the 500 bytes
    the call holds for a while."""
    fake = _FakeCuda()
    for name in ("synchronize", "reset_peak_memory_stats", "memory_allocated"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", fake.max_memory_allocated)
    peak = common.peak_memory_bytes(lambda: fake.queued.extend([500, -500]), torch.device("cuda"))
    assert peak == 500


def test_cpu_peak_memory_adds_the_kernels_work_of_the_call_only(monkeypatch):
    """The kernels' counter is read from zero (not a stale 5000 bytes of an earlier call) and
    left at zero; a call without PyTorch allocations peaks at its kernel work alone."""
    counter = {"bytes": 5000}

    def kernel_work_peak(reset: bool = False) -> int:
        seen = counter["bytes"]
        if reset:
            counter["bytes"] = 0
        return seen

    def kernel_call() -> None:
        counter["bytes"] = max(counter["bytes"], 700)

    monkeypatch.setattr(common, "kernel_work_peak", kernel_work_peak)
    assert common.peak_memory_bytes(kernel_call, CPU) == 700
    assert counter["bytes"] == 0
    assert common.peak_memory_bytes(lambda: None, CPU) == 0


@pytest.mark.parametrize("users", [None, "3"])
def test_the_profiler_runs_with_its_log_silenced_unless_the_user_set_it(monkeypatch, users):
    if users is None:
        monkeypatch.delenv("KINETO_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("KINETO_LOG_LEVEL", users)
    seen = []
    common.peak_memory_bytes(lambda: seen.append(os.environ.get("KINETO_LOG_LEVEL")), CPU)
    assert seen == [users or "6"]


def test_the_decorators_hand_back_the_functions_result():
    model = torch.nn.Linear(2, 2)

    @common.keeps_model_flags
    def flags(model: torch.nn.Module) -> types.SimpleNamespace:
        return types.SimpleNamespace(training=model.training)

    @common.keeps_rng_state
    def draw() -> float:
        torch.manual_seed(0)
        return torch.rand(()).item()

    assert flags(model).training is False and model.training is True
    torch.manual_seed(0)
    expected = torch.rand(()).item()
    assert draw() == expected
