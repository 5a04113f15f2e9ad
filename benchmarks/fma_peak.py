"""The CPU's own multiply-add peak: independent vector FMAs in a loop, on one core and on all.

Run: ``.venv/bin/python benchmarks/fma_peak.py [--seconds 1] [--vector-bytes 32|64]`` (needs a C
compiler).

``torchlap bench layer``'s "FMA floor" puts LAP's multiply-adds at the rate of PyTorch's own
1024 x 1024 float32 matrix product, the best-tuned library code on the friendliest shape. This
script measures what the cores themselves allow, with no memory traffic at all: a loop of ten
independent chains of float32 FMAs, as wide as the LAP kernels' vectors
(``torchlap._ext.lap_kernels().lap_vector_bytes()``: 64 bytes where the compiler targets
AVX-512) or as ``--vector-bytes`` says, compiled with the kernels' flags; ten chains hide the
FMA latency on current x86 and Arm cores. Prints the rate of one process alone and of one
process per core at once, in float32 multiply-adds per second (one FMA of a 64-byte vector is
16).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import torchlap._ext as ext

SOURCE = r"""
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c11 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef float vec __attribute__((vector_size(VBYTES)));
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
int main(int argc, char **argv) {
    const double seconds = atof(argv[1]);
    /* chains that stay finite: a * 0.999999 + 1e-7 tends to 0.1 */
    const vec b = (vec){0} + 0.999999f, c = (vec){0} + 1e-7f;
    /* ten different starts known at run time only, so that the compiler keeps ten chains */
    const float s = (float)seconds * 1e-3f;
    vec a0 = (vec){0} + s, a1 = a0 + s, a2 = a1 + s, a3 = a2 + s, a4 = a3 + s, a5 = a4 + s,
        a6 = a5 + s, a7 = a6 + s, a8 = a7 + s, a9 = a8 + s;
    long rounds = 0;
    const double start = now();
    double elapsed = 0;
    while (elapsed < seconds) {
        for (int k = 0; k < 1000000; ++k) {
            a0 = a0 * b + c; a1 = a1 * b + c; a2 = a2 * b + c; a3 = a3 * b + c; a4 = a4 * b + c;
            a5 = a5 * b + c; a6 = a6 * b + c; a7 = a7 * b + c; a8 = a8 * b + c; a9 = a9 * b + c;
        }
        rounds += 1;
        elapsed = now() - start;
    }
    const vec sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9;
    /* multiply-adds per second (lanes), and a use of the sums so that they are computed */
    printf("%.6e %f\n", rounds * 1e6 * 10 * (VBYTES / 4) / elapsed, (double)sum[0]);
    return 0;
}
"""


def build(folder: Path, vector_bytes: int) -> Path:
    """The loop compiled with the kernels' compiler and flags for ``vector_bytes`` vectors."""
    compiler = ext._compiler()
    if compiler is None:
        raise SystemExit("no C compiler found ($CC, cc, gcc or clang)")
    source = folder / "fma_peak.c"
    source.write_text(SOURCE)
    target = folder / "fma_peak"
    flags = [flag for flag in ext._FLAGS if flag not in ("-shared", "-fPIC", "-fopenmp")]
    subprocess.run(
        [compiler, *flags, f"-DVBYTES={vector_bytes}", "-o", str(target), str(source)],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def rates(binary: Path, processes: int, seconds: float) -> list[float]:
    """Multiply-adds per second of each of ``processes`` copies of the loop run at once."""
    running = [
        subprocess.Popen([str(binary), str(seconds)], stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    return [float(process.communicate()[0].split()[0]) for process in running]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="how long each loop runs")
    parser.add_argument(
        "--vector-bytes",
        type=int,
        choices=ext.VECTOR_BYTES,
        help="the vectors' width (default: the LAP kernels' on this machine)",
    )
    args = parser.parse_args()
    if not args.seconds > 0:
        raise SystemExit(f"--seconds must be above 0, got {args.seconds}")
    vector_bytes = args.vector_bytes
    if vector_bytes is None:
        library = ext.lap_kernels()
        vector_bytes = library.lap_vector_bytes() if library is not None else 32
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as folder:
        binary = build(Path(folder), vector_bytes)
        alone = max(rates(binary, 1, args.seconds) for _ in range(3))[0]
        together = rates(binary, cores, args.seconds)
    print(f"independent {vector_bytes}-byte float32 FMAs, {args.seconds:g} s per loop")
    print(f"one core alone: {alone / 1e9:.1f} GFMA/s")
    print(
        f"{cores} cores at once: {sum(together) / 1e9:.1f} GFMA/s "
        f"({', '.join(f'{r / 1e9:.1f}' for r in together)} per core)"
    )


if __name__ == "__main__":
    main()
