"""What a C++ autograd op would save over a Python ``autograd.Function``: the floor of each.

Run: ``.venv/bin/python benchmarks/cpp_autograd_floor.py [--shape 1,512,7,7]``
(needs a C++ compiler; compiles a minimal op against the torch headers, about 20 s).

Builds a ``TORCH_LIBRARY`` op whose autograd kernel is a ``torch::autograd::Function`` that
allocates its output in the forward and the gradients of its two inputs in the backward, and
nothing else; times its forward + ``.sum().backward()`` against a Python ``autograd.Function``
doing the same and against ``adaptive_avg_pool2d``, taking turns (``layer_overhead.best_us``:
best of 9 interleaved rounds of 1000 calls, microseconds). This is the part of a LAP layer's
fixed cost that moving its autograd function to C++ could remove
(``benchmarks/layer_overhead.py`` has the rest).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# torch.utils.cpp_extension warns on import that it found no CUDA runtime: this op is CPU-only
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils.cpp_extension import include_paths  # noqa: E402

from layer_overhead import best_us  # noqa: E402  (this folder: run as a script)

SOURCE = r"""
#include <torch/autograd.h>
#include <torch/library.h>

struct Floor : public torch::autograd::Function<Floor> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext *ctx,
                                                at::Tensor x, at::Tensor w) {
    ctx->save_for_backward({x, w});
    return {at::empty({x.size(0), x.size(1), 1, 1}, x.options())};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    return {at::empty_like(saved[0]), at::empty_like(saved[1])};
  }
};

at::Tensor floor_op(const at::Tensor &x, const at::Tensor &w) { return Floor::apply(x, w)[0]; }

TORCH_LIBRARY(torchlap_bench, m) { m.def("floor(Tensor x, Tensor w) -> Tensor"); }
TORCH_LIBRARY_IMPL(torchlap_bench, Autograd, m) { m.impl("floor", floor_op); }
TORCH_LIBRARY_IMPL(torchlap_bench, CPU, m) { m.impl("floor", floor_op); }
"""


class _PythonFloor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):  # type: ignore[override]
        ctx.save_for_backward(x, w)
        return x.new_empty((x.shape[0], x.shape[1], 1, 1))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, w = ctx.saved_tensors
        return torch.empty_like(x), torch.empty_like(w)


def compile_op(source_text: str, folder: Path, name: str) -> Path:
    """Compile a C++ source of ``TORCH_LIBRARY`` ops against the running torch, in ``folder``
    (as ``name.so``); exits with the compiler's message when it fails."""
    source, target = folder / f"{name}.cpp", folder / f"{name}.so"
    source.write_text(source_text)
    library_dir = Path(torch.__file__).parent / "lib"
    command = [
        "c++", "-O2", "-std=c++20", "-fPIC", "-shared",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        *(f"-I{path}" for path in include_paths()),
        str(source), "-o", str(target),
        f"-L{library_dir}", "-ltorch", "-ltorch_cpu", "-lc10",
    ]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"the C++ op did not compile:\n{result.stderr[-2000:]}")
    print(f"compiled in {time.perf_counter() - start:.0f} s")
    return target


def main() -> None:
    """Print the three floors."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="1,512,7,7", help="input shape B,C,H,W")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    with tempfile.TemporaryDirectory() as folder:
        torch.ops.load_library(str(compile_op(SOURCE, Path(folder), "floor")))
    x = torch.randn(shape, requires_grad=True)
    w = torch.randn(8, shape[1], requires_grad=True)

    def run(forward):
        def call() -> None:
            forward().sum().backward()
            x.grad = w.grad = None

        return call

    candidates = {
        "C++ autograd op": run(lambda: torch.ops.torchlap_bench.floor(x, w)),
        "Python autograd.Function": run(lambda: _PythonFloor.apply(x, w)),
        "adaptive_avg_pool2d": run(lambda: F.adaptive_avg_pool2d(x, 1)),
    }
    best = best_us(candidates)
    print(f"shape {shape}, {torch.get_num_threads()} threads; forward+backward, us per call")
    for name, us in best.items():
        print(f"{name + ':':28s}{us:8.1f}")


if __name__ == "__main__":
    main()
