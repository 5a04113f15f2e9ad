"""``benchmarks/cpp_fused_layer.py``: the C++-operator experiment behind keeping the Python
autograd function around the fused layer's kernels."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from torchlap._ext import lap_kernels

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
pytestmark = pytest.mark.skipif(
    shutil.which("c++") is None or lap_kernels() is None, reason="needs C and C++ compilers"
)


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "cpp_fused_layer.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=BENCHMARKS,
        env={**os.environ, **env},
    )


def test_both_paths_agree_and_are_timed():
    """The script checks the operator's output and gradients against the shipped layer's (a
    windowed layer and a global pool) before timing; a row per shape."""
    done = _run("--shapes", "2,8,6,6:2", "1,8,3,3:0")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.findall(r"^\| \((\d+), 8, (\d), \d\) \| (\w+) \|(.*)$", done.stdout, re.M)
    assert [(b, h, k) for b, h, k, _ in rows] == [("2", "6", "2"), ("1", "3", "global")]
    for *_, cells in rows:
        numbers = [float(v) for v in re.findall(r"(?<![\d.])(\d+\.\d)(?![\dx])", cells)]
        assert len(numbers) == 5 and all(v > 0 for v in numbers[:4]), cells


def test_it_refuses_to_time_a_layer_the_operator_does_not_replace():
    """With the fused layer off, both paths would time the PyTorch path: the script says so."""
    done = _run("--shapes", "1,8,4,4:2", TORCHLAP_FUSED_LAYER="0")
    assert done.returncode != 0
    assert "the fused layer does not run on (1, 8, 4, 4)" in done.stderr
