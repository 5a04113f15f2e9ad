"""The fixed cost of a LAP layer call: what remains of forward+backward when the kernels do nothing.

Run: ``.venv/bin/python benchmarks/layer_overhead.py [--shape 1,512,7,7] [--kernel 0]``
(``--kernel 2`` for a k2 s2 layer, e.g. ``--shape 1,256,14,14 --kernel 2``: ResNet18's
layer4.0 at batch 1; 0, the default, for the global pool).

Times, on one input, forward + ``.sum().backward()`` of (1) the LAP layer with the compiled
kernels, (2) the same with every kernel replaced by a function that returns at once (so: the
Python module, the checks, the allocations, the autograd function and the gradient
accumulations), (3) an empty ``autograd.Function`` with the same six inputs and three outputs
that returns no gradient (``torchlap.bench.layer.empty_layer``), (4) the same returning the
gradients of the input and of the five parameters (the floor of any Python autograd function for
a layer with parameters: the parameters' gradient accumulation included), and (5, 6) the average
and max pooling the layer replaces. Best of 9 interleaved rounds of 1000 calls each, in
microseconds. The last line is the floor (4) plus the kernels' own time ((1) minus (2)) against
max pooling: how far a LAP layer in Python could get if everything else in it cost nothing.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import torchlap._ext as ext
from torchlap.bench.layer import empty_layer
from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d


class _Idle:
    """A kernel library whose every function returns at once."""

    def __getattr__(self, name: str):
        return lambda *args: None


def best_us(candidates: dict, calls: int = 1000, rounds: int = 9) -> dict[str, float]:
    """Each candidate's best mean time per call (us) over ``rounds`` interleaved rounds of
    ``calls`` calls: a slow spell of the machine hits every candidate alike."""
    for fn in candidates.values():
        for _ in range(100):
            fn()
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / calls * 1e6)
    return best


def layer_and_pools(shape: tuple[int, ...], k: int):
    """A random input ``x`` of ``shape`` (requiring its gradient), the LAP layer for it (window
    ``k``, stride ``k``; 0: the global pool) and the average and max pooling it replaces on
    ``x``, as ``(x, lap, average, maximum)``."""
    x = torch.randn(shape, requires_grad=True)
    if k:
        lap = LocalAttentionPool2d(shape[1], k)
        average, maximum = (lambda: F.avg_pool2d(x, k)), (lambda: F.max_pool2d(x, k))
    else:
        lap = AdaptiveLocalAttentionPool2d(shape[1], 1)
        average = lambda: F.adaptive_avg_pool2d(x, 1)  # noqa: E731
        maximum = lambda: F.adaptive_max_pool2d(x, 1)  # noqa: E731
    return x, lap, average, maximum


def main() -> None:
    """Print the six times and the floor."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="1,512,7,7", help="input shape B,C,H,W")
    parser.add_argument("--kernel", type=int, default=0, help="window (stride = kernel); 0: global")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    kernels = ext.lap_kernels()
    if kernels is None:
        raise SystemExit(f"the kernel library is not available: {ext.kernel_status()}")
    k = args.kernel
    x, lap, average, maximum = layer_and_pools(shape, k)
    params = list(lap.parameters())

    def run(forward):
        def call() -> None:
            out = forward()
            (out[0] if isinstance(out, tuple) else out).sum().backward()
            x.grad = None
            for p in params:
                p.grad = None

        return call

    def empty(gradients: bool):
        return run(lambda: empty_layer(lap, x, gradients))

    where = f"k{k} s{k}" if k else "global"
    threads = torch.get_num_threads()
    print(f"shape {shape}, {where}, {threads} threads; forward+backward, us per call")
    idle_library = _Idle()

    def idle_layer() -> None:
        ext._state["library"] = idle_library
        try:
            run(lambda: lap(x))()
        finally:
            ext._state["library"] = kernels

    times = best_us(
        {
            "LAP layer, compiled kernels": run(lambda: lap(x)),
            "LAP layer, kernels that do nothing": idle_layer,
            "empty autograd.Function, no gradients": empty(False),
            "empty autograd.Function, all six gradients": empty(True),
            "avg pooling": run(average),
            "max pooling": run(maximum),
        }
    )
    for name, us in times.items():
        print(f"{name + ':':45s}{us:8.1f}")
    layer, idle = times["LAP layer, compiled kernels"], times["LAP layer, kernels that do nothing"]
    floor = times["empty autograd.Function, all six gradients"]
    print(
        f"floor + kernels ({floor:.1f} + {layer - idle:.1f} us) / max pooling: "
        f"{(floor + layer - idle) / times['max pooling']:.2f}"
    )


if __name__ == "__main__":
    main()
