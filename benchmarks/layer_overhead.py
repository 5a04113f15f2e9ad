"""The fixed cost of a LAP layer call: what remains of forward+backward when the kernels do nothing.

Run: ``.venv/bin/python benchmarks/layer_overhead.py [--shape 1,512,7,7]``

Times, on one input, (1) the global LAP layer's forward+backward with the compiled kernels,
(2) the same with every kernel replaced by a function that returns at once (so: the Python
module, the checks, the allocations, the autograd function and the gradient accumulations),
(3) an empty ``autograd.Function`` with the same six inputs and three outputs (the floor of any
Python autograd function) and (4) ``adaptive_avg_pool2d``'s forward+backward. Best of 7 runs
of 3000 calls each, in microseconds.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import torchlap._ext as ext
from torchlap.layers.lap import AdaptiveLocalAttentionPool2d


class _Idle:
    """A kernel library whose every function returns at once."""

    def __getattr__(self, name: str):
        return lambda *args: None


class _Empty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, alpha):  # type: ignore[override]
        batch, channels, height, width = x.shape
        pooled = x.new_empty((batch, channels, 1, 1))
        return (
            pooled,
            x.new_empty((batch, 1, height, width)),
            x.new_empty((batch, 1, height, width)),
        )

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        return None, None, None, None, None, None


def _best_us(fn, calls: int = 3000, runs: int = 7) -> float:
    for _ in range(100):
        fn()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main() -> None:
    """Print the four times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="1,512,7,7", help="input shape B,C,H,W")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    kernels = ext.lap_kernels()
    if kernels is None:
        raise SystemExit(f"the kernel library is not available: {ext.kernel_status()}")
    x = torch.randn(shape, requires_grad=True)
    lap = AdaptiveLocalAttentionPool2d(shape[1], 1)
    params = list(lap.parameters())

    def layer() -> None:
        lap(x).sum().backward()
        x.grad = None

    def empty() -> None:
        _Empty.apply(x, *params[:5])[0].sum().backward()
        x.grad = None

    def average() -> None:
        F.adaptive_avg_pool2d(x, 1).sum().backward()
        x.grad = None

    print(f"shape {shape}, {torch.get_num_threads()} threads; forward+backward, us per call")
    print(f"LAP layer, compiled kernels:         {_best_us(layer):8.1f}")
    try:
        ext._state["library"] = _Idle()
        print(f"LAP layer, kernels that do nothing:  {_best_us(layer):8.1f}")
    finally:
        ext._state["library"] = kernels
    print(f"empty autograd.Function, same inputs: {_best_us(empty):7.1f}")
    print(f"adaptive_avg_pool2d:                 {_best_us(average):8.1f}")


if __name__ == "__main__":
    main()
