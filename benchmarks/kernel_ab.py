"""This checkout's compiled LAP kernels against another git revision's, head to head in one process.

Run: ``.venv/bin/python benchmarks/kernel_ab.py --against ecc1bb5 [--batches 32,1] [--rounds
5]`` or ``.venv/bin/python benchmarks/kernel_ab.py --layouts`` (this checkout's two layouts of
the windowed sums, ``TORCHLAP_LAP_WINDOWS=phases`` against ``tiles``; the global pools have
neither) or ``--widths`` (this checkout built with 32-byte vectors, AVX2's width, against
64-byte ones, AVX-512's: ``-DLAP_VBYTES``). ``--raw`` times the kernel calls alone, forward and
backward apart: each shape's two calls are recorded once and replayed with the same arguments,
without the module, autograd and ctypes argument building around them (which are most of a layer
call at batch 1 and dilute a kernel change there).

Builds the revision's ``lap_cpu.c`` and ``lap_layer.c`` (read with ``git show``) with the same
compiler and flags as ``torchlap._ext``, then times the fused LAP layer's forward+backward at
the pooling shapes of ``torchlap bench layer`` with the two libraries (or layouts) taking turns
(interleaved rounds, best call of each), so that the machine's noise hits both alike; prints
each one's time and their ratio per shape. Separate runs of ``torchlap bench layer`` differ by
10-30% on a shared machine, which hides a kernel change of that size; this comparison does not.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch

import torchlap._ext as ext
from layer_overhead import best_us
from torchlap.bench.common import measure
from torchlap.bench.layer import SHAPES, kernel_replay
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
    return ext.declare(ctypes.CDLL(str(target)), accept=(3, 4, 5, 6, 7))


def raw_calls(lap, x: torch.Tensor) -> tuple[dict, list]:
    """The fused layer's forward and backward kernel calls on ``x`` (name -> ctypes arguments,
    recorded by ``torchlap.bench.layer.kernel_replay``), and what keeps the tensors their
    pointers point to alive (keep it while replaying)."""
    replay = kernel_replay(lap, x)
    if replay is None:
        raise SystemExit("the fused LAP layer did not run: no kernel library or not a CPU tensor")
    calls = {
        replay.forward.__name__: replay.forward_args,
        replay.backward.__name__: replay.backward_args,
    }
    return calls, [replay]


def selected(where: str | None) -> list:
    """The benchmark's pooling shapes whose site name contains ``where`` (all without it)."""
    shapes = [row for row in SHAPES if where is None or where.lower() in row[0].lower()]
    if not shapes:
        names = sorted({row[0] for row in SHAPES})
        raise SystemExit(f"--where {where!r} matches no site; the sites are {names}")
    return shapes


def raw_table(
    variants: dict, names: tuple[str, str], batches, rounds: int, where: str | None = None
) -> None:
    """Print each shape's forward and backward kernel times (us) with the two libraries."""
    current = ext.lap_kernels()
    print(f"# fused LAP layer kernel calls alone, us (best of {rounds} interleaved rounds)")
    print(f"| where | input shape | call | {names[0]} | {names[1]} | ratio |")
    print("|---|---|---|---|---|---|")
    for batch in batches:
        for site, shape, kernel, stride, padding in selected(where):
            shape = (batch, *shape[1:])
            x = torch.randn(shape, requires_grad=True)
            if kernel is None:
                lap = AdaptiveLocalAttentionPool2d(shape[1], 1)
            else:
                lap = LocalAttentionPool2d(shape[1], kernel, stride, padding)
            calls, keep = raw_calls(lap, x)
            for name, args in calls.items():
                function = getattr(current, name)
                start = time.perf_counter()
                function(*args)
                # about 20 ms per candidate and round
                calls_per_round = max(3, int(0.02 / (time.perf_counter() - start)))
                candidates = {
                    label: (lambda f=getattr(library, name), a=args: f(*a))
                    for label, (library, _) in variants.items()
                }
                times = best_us(candidates, calls=calls_per_round, rounds=rounds)
                before, after = (times[label] for label in names)
                call = "forward" if "forward" in name else "backward"
                print(
                    f"| {site} | {shape} | {call} | {before:.1f} | {after:.1f} | "
                    f"{after / before:.2f} |",
                    flush=True,
                )
            del keep


def main() -> None:
    """Print the A/B table."""
    parser = argparse.ArgumentParser(description=__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--against", help="git revision to compare with")
    which.add_argument(
        "--layouts", action="store_true", help="phase planes against channel tiles, this checkout"
    )
    which.add_argument(
        "--widths",
        action="store_true",
        help="this checkout built with 32-byte (AVX2) against 64-byte (AVX-512) vectors",
    )
    parser.add_argument("--batches", default="32,1", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument(
        "--raw", action="store_true", help="time the kernel calls alone (recorded, replayed)"
    )
    parser.add_argument("--where", help="only the sites whose name contains this, e.g. avgpool")
    args = parser.parse_args()
    current = ext.lap_kernels()
    if current is None:
        raise SystemExit(f"the kernel library is not available: {ext.kernel_status()}")
    with tempfile.TemporaryDirectory() as folder:
        if args.layouts:
            names = ("phases", "tiles")
            variants = {name: (current, name) for name in names}
        elif args.widths:
            names = ("32-byte vectors", "64-byte vectors")
            variants = {name: (ext.kernel_library(int(name[:2])), "") for name in names}
        else:
            names = (args.against, "this checkout")
            other = build_revision(args.against, Path(folder))
            variants = {names[0]: (other, ""), names[1]: (current, "")}
        if args.raw:
            if args.layouts:
                raise SystemExit("--raw compares revisions (--against), not layouts")
            batches = [int(b) for b in args.batches.split(",")]
            raw_table(variants, names, batches, args.rounds, args.where)
            return
        threads = torch.get_num_threads()
        print(f"# fused LAP layer forward+backward, ms (best call); {threads} threads")
        print(f"| where | input shape | pooling | {names[0]} | {names[1]} | ratio |")
        print("|---|---|---|---|---|---|")
        for batch in (int(b) for b in args.batches.split(",")):
            for where, shape, kernel, stride, padding in selected(args.where):
                shape = (batch, *shape[1:])
                x = torch.randn(shape, requires_grad=True)
                if kernel is None:
                    lap = AdaptiveLocalAttentionPool2d(shape[1], 1)
                    pooling = "adaptive 1x1"
                else:
                    lap = LocalAttentionPool2d(shape[1], kernel, stride, padding)
                    pooling = f"k{kernel} s{stride} p{padding}"

                def run(variant: tuple[ctypes.CDLL, str], lap=lap, x=x) -> None:
                    ext._state["library"], os.environ["TORCHLAP_LAP_WINDOWS"] = variant
                    lap(x).sum().backward()
                    x.grad = None
                    lap.clear_maps()

                layout = os.environ.get("TORCHLAP_LAP_WINDOWS")
                try:
                    times = measure(
                        {name: lambda v=variant: run(v) for name, variant in variants.items()},
                        torch.device("cpu"),
                        repeats=3,
                        rounds=args.rounds,
                    )
                finally:
                    ext._state["library"] = current
                    if layout is None:
                        os.environ.pop("TORCHLAP_LAP_WINDOWS", None)
                    else:
                        os.environ["TORCHLAP_LAP_WINDOWS"] = layout
                before, after = (times[name].seconds * 1e3 for name in names)
                print(
                    f"| {where} | {shape} | {pooling} | {before:.3f} | {after:.3f} | "
                    f"{after / before:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
