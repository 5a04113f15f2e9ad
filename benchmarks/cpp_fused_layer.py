"""The fused LAP layer with its autograd in C++, against the layer as torchlap ships it.

Run: ``.venv/bin/python benchmarks/cpp_fused_layer.py [--shapes 1,512,7,7:0 1,256,14,14:2]``
(needs a C++ compiler; compiles ``cpp_fused_layer.cpp`` against the torch headers, about 15 s).
Each shape is ``B,C,H,W:k``, k the window (stride k) and 0 the global pool; the default is every
batch-1 LAP site of ``torchlap bench layer`` where the layer missed its targets.

torchlap runs a LAP layer on the CPU as two compiled kernel calls (forward, backward) inside a
Python ``torch.autograd.Function`` (``torchlap/layers/fused.py``). ``cpp_fused_layer.cpp`` is the
same layer as a ``TORCH_LIBRARY`` operator whose autograd is a ``torch::autograd::Function``:
same kernels (bound by address from the library ``torchlap._ext`` loaded), same saved tensors,
same outputs, with the Python function's bookkeeping (saving, ``needs_input_grad``, ``ctypes``
argument conversion, splitting the parameter gradients) in C++. Here it stands in for the
Python function inside the unchanged module, so the module's own Python (checks, the scorer's
fusability test, keeping the maps) runs on both paths.

Prints, per shape, forward + ``.sum().backward()`` of the module on both paths and of
``avg_pool2d``/``max_pool2d`` (adaptive at the global pool), best of 9 interleaved rounds of 1000
calls (``layer_overhead.best_us``, microseconds), after checking that the two paths give the
same output and gradients. This is the measurement behind keeping the Python function (README,
"The LAP layer against avg/max pooling").
"""

from __future__ import annotations

import argparse
import ctypes
import tempfile
from pathlib import Path

import torch

import torchlap._ext as ext
import torchlap.layers.fused as fused
from cpp_autograd_floor import compile_op  # this folder: run as a script
from layer_overhead import best_us, layer_and_pools

SOURCE = Path(__file__).with_name("cpp_fused_layer.cpp")
DEFAULT_SHAPES = ["1,512,7,7:0", "1,2048,7,7:0", "1,2048,5,5:0", "1,256,14,14:2", "1,128,28,28:2"]


def load_operator(library: ctypes.CDLL):
    """Compile and load the operator, bind it to ``library``'s kernels; returns the op."""
    with tempfile.TemporaryDirectory() as folder:
        torch.ops.load_library(str(compile_op(SOURCE.read_text(), Path(folder), "fused")))

    def address(name: str) -> int:
        return ctypes.cast(getattr(library, name), ctypes.c_void_p).value

    torch.ops.torchlap_bench_fused.bind_kernels(
        *(address(f"lap_layer_{way}_{suffix}") for suffix in ("f32", "f64")
          for way in ("forward", "backward"))
    )  # fmt: skip
    return torch.ops.torchlap_bench_fused.fused_layer.default


class OperatorApply:
    """A stand-in for ``_FusedLapLayer.apply`` that calls the C++ operator instead."""

    def __init__(self, op) -> None:
        self.op, self.numbers, self.calls = op, {}, 0

    def __call__(self, x, w1, b1, w2, b2, wa, ba, alpha, eps, setup, library):
        self.calls += 1
        numbers = self.numbers.get(id(setup))
        if numbers is None:  # the 17 numbers of the geometry and spec structs, once per setup
            geometry, spec = setup
            numbers = tuple(getattr(geometry, n) for n, _ in geometry._fields_)
            numbers += tuple(getattr(spec, n) for n, _ in spec._fields_)
            self.numbers[id(setup)] = numbers
        return self.op(x, w1, b1, w2, b2, wa, ba, alpha, eps, numbers, fused._threads())


def parse_shape(text: str) -> tuple[tuple[int, ...], int]:
    """``B,C,H,W:k`` -> ((B, C, H, W), k)."""
    shape, _, kernel = text.partition(":")
    return tuple(int(v) for v in shape.split(",")), int(kernel or 0)


def candidate(text: str):
    """``(shape, k, x, lap, average, maximum)`` of one ``B,C,H,W:k`` entry; exits where the
    fused layer (which the operator replaces) does not run on it."""
    shape, k = parse_shape(text)
    torch.manual_seed(0)
    x, lap, average, maximum = layer_and_pools(shape, k)
    before = sum(fused.fused_layer_calls.values())
    with torch.no_grad():
        lap(x)
    if sum(fused.fused_layer_calls.values()) == before:
        raise SystemExit(f"the fused layer does not run on {shape} (TORCHLAP_FUSED_LAYER=0?)")
    return shape, k, x, lap, average, maximum


def main() -> None:
    """Print both paths' times per shape."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="B,C,H,W:k ...")
    args = parser.parse_args()
    library = ext.lap_kernels()
    if library is None:
        raise SystemExit(f"the kernel library is not available: {ext.kernel_status()}")
    candidates = [candidate(text) for text in args.shapes]  # before the 15 s build
    shipped = fused._FusedLapLayer.apply
    operator = OperatorApply(load_operator(library))
    print(f"{torch.get_num_threads()} threads; forward+backward, us per call")
    print("| shape | k | avg | max | LAP (Python function) | LAP (C++ operator) | saved |")
    print("|---|---|---|---|---|---|---|")
    for entry in candidates:
        print(row(shipped, operator, *entry))


def row(shipped, operator: OperatorApply, shape, k, x, lap, average, maximum) -> str:
    """Check that both paths agree on one shape, time them, and return the table row."""

    def with_apply(apply, forward):
        def call() -> None:
            fused._FusedLapLayer.apply = apply
            try:
                forward().sum().backward()
            finally:
                fused._FusedLapLayer.apply = shipped
            x.grad = None
            lap.clear_maps()

        return call

    def values(apply) -> list[torch.Tensor]:
        """The output, x's and the parameters' gradients of one pass on a path."""
        x.grad = None
        lap.zero_grad(set_to_none=True)
        fused._FusedLapLayer.apply = apply
        try:
            out = lap(x)
            out.square().sum().backward()
        finally:
            fused._FusedLapLayer.apply = shipped
        grads = [x.grad, *(p.grad for p in lap.parameters())]
        x.grad = None
        lap.zero_grad(set_to_none=True)
        return [out.detach(), *grads]

    calls = operator.calls
    for a, b in zip(values(shipped), values(operator), strict=True):
        torch.testing.assert_close(a, b)
    if operator.calls == calls:
        raise SystemExit(f"the operator did not run on {shape}")
    best = best_us(
        {
            "avg": with_apply(shipped, average),
            "max": with_apply(shipped, maximum),
            "python": with_apply(shipped, lambda: lap(x)),
            "cpp": with_apply(operator, lambda: lap(x)),
        }
    )
    return (
        f"| {shape} | {k or 'global'} | {best['avg']:.1f} | {best['max']:.1f} | "
        f"{best['python']:.1f} ({best['python'] / best['avg']:.2f}x avg) | "
        f"{best['cpp']:.1f} ({best['cpp'] / best['avg']:.2f}x avg) | "
        f"{best['python'] - best['cpp']:.1f} |"
    )


if __name__ == "__main__":
    main()
