"""Does a LAP layer at batch 1 run faster on one kernel thread than on all of them?

Run: ``.venv/bin/python benchmarks/layer_threads.py [--rounds 9]``.

At batch 1 the fused CPU layer splits each sample between the threads (pixel blocks, channels,
with barriers between the steps), and on small maps the split could cost more than it saves:
PyTorch's own ``parallel_for`` runs work below a grain size on one thread. This times forward +
``.sum().backward()`` of the LAP layer at the batch-1 pooling sites of ``torchlap bench layer``
with the kernels on all of torch's threads and on one (the autograd and the rest of the call on
the same threads either way), next to ``avg_pool2d`` and ``max_pool2d`` (all threads), best of
``--rounds`` interleaved rounds of 150 calls (``layer_overhead.best_us``), in microseconds, and
prints each site's one-thread / all-threads ratio: below 1 where a grain-size rule would help.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import torchlap.layers.fused as fused
from layer_overhead import best_us
from torchlap.allocator import keep_freed_memory
from torchlap.bench.layer import SHAPES
from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d


def site_times(shape: tuple[int, ...], kernel, stride, padding, rounds: int) -> dict[str, float]:
    """Best us per forward+backward of each candidate at one batch-1 site."""
    x = torch.randn(shape, requires_grad=True)
    if kernel is None:
        lap = AdaptiveLocalAttentionPool2d(shape[1], 1)
        avg, mx = (lambda: F.adaptive_avg_pool2d(x, 1)), (lambda: F.adaptive_max_pool2d(x, 1))
    else:
        lap = LocalAttentionPool2d(shape[1], kernel, stride, padding)
        avg = lambda: F.avg_pool2d(x, kernel, stride, padding)  # noqa: E731
        mx = lambda: F.max_pool2d(x, kernel, stride, padding)  # noqa: E731

    def pass_of(forward):
        def run() -> None:
            forward().sum().backward()
            x.grad = None
            for parameter in lap.parameters():
                parameter.grad = None

        return run

    all_threads = fused._threads

    def one_thread(run):
        def call() -> None:
            fused._threads = lambda: 1  # the thread count the fused layer's kernels get
            try:
                run()
            finally:
                fused._threads = all_threads

        return call

    lap_pass = pass_of(lambda: lap(x))
    candidates = {
        "avg": pass_of(avg),
        "max": pass_of(mx),
        "LAP, all threads": lap_pass,
        "LAP, one thread": one_thread(lap_pass),
    }
    return best_us(candidates, calls=150, rounds=rounds)


def main() -> None:
    """Print one line per batch-1 site."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    keep_freed_memory()  # as the torchlap command does
    print(f"threads: {torch.get_num_threads()}; forward+backward, us, best of {args.rounds} rounds")
    for where, shape, kernel, stride, padding in SHAPES:
        times = site_times((1, *shape[1:]), kernel, stride, padding, args.rounds)
        one, every = times["LAP, one thread"], times["LAP, all threads"]
        cells = ", ".join(f"{name} {value:.0f}" for name, value in times.items())
        print(f"{where} {(1, *shape[1:])}: {cells}; one thread / all threads {one / every:.2f}")


if __name__ == "__main__":
    main()
