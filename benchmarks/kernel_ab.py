"""This checkout's compiled LAP kernels against another git revision's, head to head in one process.

Run: ``.venv/bin/python benchmarks/kernel_ab.py --against ecc1bb5 [--batches 32,1] [--rounds 5]``

Builds the revision's ``lap_cpu.c`` and ``lap_layer.c`` (read with ``git show``) with the same
compiler and flags as ``torchlap._ext``, then times the fused LAP layer's forward+backward at
the pooling shapes of ``torchlap bench layer`` with the two libraries taking turns (interleaved
rounds, best call of each), so that the machine's noise hits both alike; prints each library's
time and their ratio per shape. Separate runs of ``torchlap bench layer`` differ by 10-30% on a
shared machine, which hides a kernel change of that size; this comparison does not.
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import tempfile
from pathlib import Path

import torch

import torchlap._ext as ext
from torchlap.bench.common import measure
from torchlap.bench.layer import SHAPES
from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d

SOURCES = ("lap_cpu.c", "lap_layer.c")


def build_revision(revision: str, folder: Path) -> ctypes.CDLL:
    """The kernel library compiled from ``revision``'s sources (into ``folder``), declared."""
    for name in SOURCES:
        text = subprocess.run(
            ["git", "show", f"{revision}:src/torchlap/_ext/{name}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (folder / name).write_text(text)
    compiler = ext._compiler()
    if compiler is None:
        raise SystemExit("no C compiler found ($CC, cc, gcc or clang)")
    target = folder / "lap_cpu_revision.so"
    subprocess.run(
        [compiler, *ext._FLAGS, "-o", str(target), str(folder / SOURCES[0]), "-lm"],
        capture_output=True,
        text=True,
        check=True,
    )
    return ext.declare(ctypes.CDLL(str(target)), accept=(3, 4, 5))


def main() -> None:
    """Print the A/B table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--batches", default="32,1", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()
    current = ext.lap_kernels()
    if current is None:
        raise SystemExit(f"the kernel library is not available: {ext.kernel_status()}")
    with tempfile.TemporaryDirectory() as folder:
        other = build_revision(args.against, Path(folder))
        threads = torch.get_num_threads()
        print(f"# fused LAP layer forward+backward, ms (best call); {threads} threads")
        print(f"| where | input shape | pooling | {args.against} | this checkout | ratio |")
        print("|---|---|---|---|---|---|")
        for batch in (int(b) for b in args.batches.split(",")):
            for where, shape, kernel, stride, padding in SHAPES:
                shape = (batch, *shape[1:])
                x = torch.randn(shape, requires_grad=True)
                if kernel is None:
                    lap = AdaptiveLocalAttentionPool2d(shape[1], 1)
                    pooling = "adaptive 1x1"
                else:
                    lap = LocalAttentionPool2d(shape[1], kernel, stride, padding)
                    pooling = f"k{kernel} s{stride} p{padding}"

                def run(library: ctypes.CDLL, lap=lap, x=x) -> None:
                    ext._state["library"] = library
                    lap(x).sum().backward()
                    x.grad = None
                    lap.clear_maps()

                try:
                    times = measure(
                        {"other": lambda: run(other), "current": lambda: run(current)},
                        torch.device("cpu"),
                        repeats=3,
                        rounds=args.rounds,
                    )
                finally:
                    ext._state["library"] = current
                before, after = times["other"].seconds * 1e3, times["current"].seconds * 1e3
                print(
                    f"| {where} | {shape} | {pooling} | {before:.3f} | {after:.3f} | "
                    f"{after / before:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
