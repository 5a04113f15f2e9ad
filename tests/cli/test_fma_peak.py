"""``benchmarks/fma_peak.py``: the cores' multiply-add peak that the README quotes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from torchlap._ext import _compiler

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
pytestmark = pytest.mark.skipif(_compiler() is None, reason="no C compiler")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "fma_peak.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("width", [None, "32", "64"])
def test_it_prints_one_core_and_all_cores(width):
    done = _run("--seconds", "0.05", *(["--vector-bytes", width] if width else []))
    assert done.returncode == 0, done.stderr
    if width:
        assert done.stdout.startswith(f"independent {width}-byte float32 FMAs"), done.stdout
    alone = re.search(r"one core alone: ([0-9.]+) GFMA/s", done.stdout)
    together = re.search(r"(\d+) cores at once: ([0-9.]+) GFMA/s \(([^)]*) per core\)", done.stdout)
    assert alone and together, done.stdout
    per_core = [float(v) for v in together.group(3).split(", ")]
    assert len(per_core) == int(together.group(1))
    assert float(alone.group(1)) > 0 and all(v > 0 for v in per_core)
    assert float(together.group(2)) == pytest.approx(sum(per_core), abs=0.1 * len(per_core))


def test_the_loop_keeps_ten_chains(tmp_path):
    """A compiler that merged the ten chains (they once started equal) would report about ten
    times the rate of one chain's latency-bound loop: the assembly keeps ten vector FMAs."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import fma_peak
    finally:
        sys.path.remove(str(BENCHMARKS))
    source = tmp_path / "loop.c"
    source.write_text(fma_peak.SOURCE)
    flags = [f for f in fma_peak.ext._FLAGS if f not in ("-shared", "-fPIC", "-fopenmp")]
    assembly = subprocess.run(
        [_compiler(), *flags, "-DVBYTES=32", "-S", "-o", "-", str(source)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if not re.search(r"\bvfmadd", assembly):
        pytest.skip("not an x86 FMA target")
    assert len(re.findall(r"\bvfmadd\w*ps\b", assembly)) >= 10


def test_a_duration_that_is_not_positive_is_refused():
    done = _run("--seconds", "0")
    assert done.returncode != 0
    assert "--seconds must be above 0, got 0.0" in done.stderr
