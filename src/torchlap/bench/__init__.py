"""Shared helpers for torchlap's benchmarks: timing and peak memory measured in the same run."""

from torchlap.bench.common import measure, peak_memory_bytes, time_call

__all__ = ["measure", "peak_memory_bytes", "time_call"]
