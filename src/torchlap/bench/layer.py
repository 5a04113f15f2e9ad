"""``torchlap bench layer``: LAP forward+backward against avg/max pooling on the same tensors.

Next to the ratios stand two floors, measured in the same interleaved rounds, that say how far a
missed target is from what the machine allows:

- the FMA floor: LAP's multiply-adds forward+backward (:func:`lap_multiply_adds`, counted from
  the layer's shapes) at the rate of PyTorch's own float32 matrix product of two 1024 x 1024
  matrices on the same device: what the best-tuned library code of the machine reaches on the
  friendliest shape. Not a hard bound (on the README's CPU that product runs at about 85 GFMA/s,
  73% of its two cores' peak of 116 GFMA/s, ``benchmarks/fma_peak.py``), but LAP's thin products
  (8 hidden units) are far from that shape;
- the autograd floor: an autograd function with the layer's inputs (the input and the
  parameters) and outputs that does no work and returns every gradient, the fixed cost of any
  layer with parameters outside the kernels (it dominates at batch 1).

and the fused layer's two kernel calls alone (:func:`kernel_replay`), which split LAP's time
into what the compiled kernels take and the layer's fixed cost around them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import typer
from torch import nn

from torchlap._checks import check_device, check_distinct
from torchlap._ext import lap_kernels, pooling_path, recorded_calls
from torchlap.bench.common import MAX_BATCH, measure
from torchlap.cli_style import listed_names
from torchlap.layers.fused import BACKWARD_OUTPUT_ARGS, fused_layer_calls
from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, LapBase, LocalAttentionPool2d

# side of the square float32 matrix product whose rate is the FMA floor's (85 GFMA/s on the
# 2-core CPU of the README at 512, 768, 1024 and 2048 alike; 13 ms a call at 1024)
GEMM_SIZE = 1024

# The pooling sites of the paper's models at 224 px, batch 32: (where, shape, kernel, stride,
# padding); kernel None = the global (adaptive 1x1) pool. The LAP sites of the presets (block
# inputs of ResNet18/34 layer2-4.0 and ResNet50 layer4.0, Inception's maxpool2, Mixed_6a,
# Mixed_7a, every global pool) plus the max-pools the paper's models keep (ResNet stem,
# Inception maxpool1), which a user may lapify as well.
SHAPES = [
    ("ResNet stem maxpool", (32, 64, 112, 112), 3, 2, 1),
    ("ResNet18/34 layer2.0", (32, 64, 56, 56), 2, 2, 0),
    ("ResNet18/34 layer3.0", (32, 128, 28, 28), 2, 2, 0),
    ("ResNet18/34 layer4.0", (32, 256, 14, 14), 2, 2, 0),
    ("ResNet50 layer4.0", (32, 1024, 14, 14), 2, 2, 0),
    ("ResNet18/34 avgpool", (32, 512, 7, 7), None, None, 0),
    ("ResNet50 avgpool", (32, 2048, 7, 7), None, None, 0),
    ("Inception-v3 maxpool1", (32, 64, 109, 109), 3, 2, 0),
    ("Inception-v3 maxpool2", (32, 192, 52, 52), 3, 2, 0),
    ("Inception-v3 Mixed_6a", (32, 288, 25, 25), 3, 2, 0),
    ("Inception-v3 Mixed_7a", (32, 768, 12, 12), 3, 2, 0),
    ("Inception-v3 avgpool", (32, 2048, 5, 5), None, None, 0),
]


@dataclass
class LayerBenchRow:
    """Ratios of one shape: LAP over avg_pool2d (time), and LAP's extra peak memory."""

    shape: tuple[int, ...]
    op: str
    where: str
    avg_ms: float
    max_ms: float
    lap_ms: float
    time_ratio_avg: float
    time_ratio_max: float
    extra_peak_input_copies: float
    scorer_ms: float = float("nan")
    multiply_adds: int = 0
    gemm_ms_per_gmac: float = float("nan")
    autograd_floor_ms: float = float("nan")
    kernels_ms: float = float("nan")

    @property
    def kernels_ratio_avg(self) -> float:
        """The fused layer's two kernel calls alone over ``avg_pool2d`` (NaN where no fused
        layer ran): LAP/avg without the layer's fixed cost."""
        return self.kernels_ms / self.avg_ms

    @property
    def scorer_ratio_avg(self) -> float:
        """The concept scorer alone (PyTorch's ops, forward+backward) over ``avg_pool2d``."""
        return self.scorer_ms / self.avg_ms

    @property
    def fma_floor_ms(self) -> float:
        """LAP's multiply-adds at the rate of the large matrix product measured in the run."""
        return self.multiply_adds * 1e-9 * self.gemm_ms_per_gmac

    @property
    def fma_floor_ratio_avg(self) -> float:
        """The FMA floor over ``avg_pool2d``: where LAP/avg would be if LAP's arithmetic ran at
        PyTorch's best matrix-product rate (a practical floor, not the CPU's hard bound)."""
        return self.fma_floor_ms / self.avg_ms

    @property
    def autograd_floor_ratio_max(self) -> float:
        """The autograd floor over ``max_pool2d``: no layer with LAP's inputs, parameters and
        outputs, written as an autograd function, gets LAP/max lower."""
        return self.autograd_floor_ms / self.max_ms


def _window_taps(size: int, kernel: int, stride: int, padding: int, out: int) -> int:
    """Window positions inside the input along one axis, summed over the ``out`` windows."""
    return sum(
        min(i * stride - padding + kernel, size) - max(i * stride - padding, 0) for i in range(out)
    )


def lap_multiply_adds(lap: LapBase, shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward+backward of ``lap`` on an input of ``shape`` (B, C, H, W).

    The scorer's 1x1 convolutions (and the "conv" aggregation's) and Eq. 1's window sums over
    the taps inside the input, each three times: the forward product, and the backward's
    gradients of both factors. The one-channel steps between them (ReLU, sigmoid, Eq. 4) are
    per pixel, not per value, and left out, so this is a lower bound of the arithmetic.
    """
    batch, channels, height, width = shape
    per_pixel = sum(
        module.weight.numel() for module in lap.scorer.modules() if isinstance(module, nn.Conv2d)
    )
    if isinstance(lap, LocalAttentionPool2d):
        rows, cols = lap.output_size(height, width)
        (kh, kw), (sh, sw), (ph, pw) = lap.kernel_size, lap.stride, lap.padding
        taps = _window_taps(height, kh, sh, ph, rows) * _window_taps(width, kw, sw, pw, cols)
    else:  # the global pool: one window over the whole map
        taps = height * width
    return 3 * batch * (height * width * per_pixel + channels * taps)


class _EmptyLayer(torch.autograd.Function):
    """A layer's inputs and output shapes, no work; the gradients of every input, or of none.

    The fixed cost of any autograd function for a layer with parameters: the function call,
    the saved tensors, the engine's backward call and the gradients' accumulation into
    ``.grad``.
    """

    @staticmethod
    def forward(ctx, x, shapes, gradients, *params):  # type: ignore[override]
        ctx.gradients = gradients
        ctx.save_for_backward(x, *params)
        return tuple(x.new_empty(shape) for shape in shapes)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        if not ctx.gradients:
            return (None,) * (len(ctx.saved_tensors) + 2)
        x, *params = (torch.empty_like(t) for t in ctx.saved_tensors)
        return (x, None, None, *params)


def empty_layer(lap: LapBase, x: torch.Tensor, gradients: bool = True) -> torch.Tensor:
    """The autograd floor of ``lap`` on ``x``: :class:`_EmptyLayer` with the layer's input,
    parameters and three outputs (pooled, concepts, score); returns the pooled output."""
    batch, channels, height, width = x.shape
    if isinstance(lap, LocalAttentionPool2d):
        size = lap.output_size(height, width)
    else:
        size = tuple(o or s for o, s in zip(lap.output_size, (height, width), strict=True))
    shapes = (
        (batch, channels, *size),
        (batch, lap.n_concepts, height, width),
        (batch, 1, height, width),
    )
    return _EmptyLayer.apply(x, shapes, gradients, *lap.parameters())[0]


@dataclass
class KernelReplay:
    """A fused LAP layer's recorded forward and backward kernel calls; calling it makes both
    again with the same arguments, the backward writing into ``grad_x`` and ``grad_params``
    (the parameter gradients one after the other, as the kernel lays them out). ``kept`` holds
    the other tensors whose addresses the recorded arguments point to."""

    forward: Callable[..., object]
    forward_args: tuple
    backward: Callable[..., object]
    backward_args: tuple
    grad_x: torch.Tensor
    grad_params: torch.Tensor
    kept: tuple

    def __call__(self) -> None:
        self.forward(*self.forward_args)
        self.backward(*self.backward_args)


def kernel_replay(lap: LapBase, x: torch.Tensor) -> KernelReplay | None:
    """The fused layer's two kernel calls of ``lap(x).sum()``'s forward and backward, recorded
    once, to be made again alone: the kernels' own time, without the module, its checks,
    autograd and the ``ctypes`` argument building around them (the layer's fixed cost). None
    where the fused layer does not run (a GPU, no compiler, a scorer or input it does not
    take). Leaves ``x.grad``, the parameters' gradients and the layer's maps cleared.
    """
    library = lap_kernels()
    if library is None or not x.is_cpu:
        return None
    with recorded_calls() as calls:
        pooled = lap(x)
        upstream = torch.ones_like(pooled)
        # the graph keeps the saved tensors whose addresses the recorded calls hold
        pooled.backward(upstream, retain_graph=True)
    x.grad = None
    lap.zero_grad(set_to_none=True)
    lap.clear_maps()
    names = [name for name in calls if name.startswith("lap_layer_")]
    if len(names) != 2:
        return None
    forward_name, backward_name = sorted(names, key=lambda name: "backward" in name)
    grad_x = torch.empty_like(x)
    grad_params = x.new_empty(sum(p.numel() for p in lap.parameters()))
    backward_args = list(calls[backward_name])
    for index, buffer in zip(BACKWARD_OUTPUT_ARGS, (grad_x, grad_params), strict=True):
        if backward_args[index] is not None:  # an input without gradient keeps its None
            backward_args[index] = buffer.data_ptr()
    return KernelReplay(
        getattr(library, forward_name),
        calls[forward_name],
        getattr(library, backward_name),
        tuple(backward_args),
        grad_x,
        grad_params,
        (x, pooled, upstream),
    )


def _candidates(x: torch.Tensor, kernel, stride, padding) -> tuple[str, LapBase, dict]:
    """The passes to compare on the same input ``x``; each allocates its own x.grad.

    Besides the two poolings and LAP: LAP's concept scorer alone (Eq. 3, forward+backward with
    PyTorch's own ops: for the default scorer two 1x1 convolutions on oneDNN), the autograd
    floor (:func:`empty_layer`), and the reference matrix product of the FMA floor.
    """
    channels, device = x.shape[1], x.device
    if kernel is None:
        lap = AdaptiveLocalAttentionPool2d(channels, 1, device=device)
        avg = lambda: F.adaptive_avg_pool2d(x, 1)  # noqa: E731
        mx = lambda: F.adaptive_max_pool2d(x, 1)  # noqa: E731
        op = "adaptive 1x1"
    else:
        lap = LocalAttentionPool2d(channels, kernel, stride, padding, device=device)
        avg = lambda: F.avg_pool2d(x, kernel, stride, padding)  # noqa: E731
        mx = lambda: F.max_pool2d(x, kernel, stride, padding)  # noqa: E731
        op = f"k{kernel} s{stride} p{padding}"

    def forward_backward(forward):
        def run():
            # free what the pass allocated before returning: a block allocated before the memory
            # profiler starts and freed under it makes the allocator warn on stderr
            forward().sum().backward()
            x.grad = None
            lap.clear_maps()

        return run

    a, b = (torch.randn(GEMM_SIZE, GEMM_SIZE, device=device) for _ in range(2))
    candidates = {
        "avg": forward_backward(avg),
        "max": forward_backward(mx),
        "lap": forward_backward(lambda: lap(x)),
        "scorer": forward_backward(lambda: lap.scorer(x)[1]),
        "autograd floor": forward_backward(lambda: empty_layer(lap, x)),
        "gemm": lambda: torch.mm(a, b),
    }
    kernels = kernel_replay(lap, x)
    if kernels is not None:
        candidates["kernels"] = kernels
    return op, lap, candidates


def run_layer_benchmark(
    shapes: Sequence[tuple] = SHAPES,
    device: str | torch.device = "cpu",
    repeats: int = 3,
    scale: float = 1.0,
    batches: tuple[int, ...] | None = None,
    rounds: int = 3,
) -> list[LayerBenchRow]:
    """Measure every shape (entries ``(where, shape, kernel, stride, padding)``, or without
    ``where``); ``scale`` < 1 shrinks the batch for a quick look; ``batches`` (e.g. ``(32, 1)``)
    replaces each shape's batch by every one of these sizes (``scale`` then applies to each)."""
    device = torch.device(device)
    rows = []
    for entry in shapes:
        where, (shape, kernel, stride, padding) = (
            (entry[0], entry[1:]) if isinstance(entry[0], str) else ("", entry)
        )
        for batch_size in batches or (shape[0],):
            batch = max(1, round(batch_size * scale))
            full = (batch, *shape[1:])
            x = torch.randn(full, device=device, requires_grad=True)
            op, lap, candidates = _candidates(x, kernel, stride, padding)
            results = measure(
                candidates, device, repeats=repeats, rounds=rounds, memory=("avg", "lap")
            )
            input_bytes = x.numel() * x.element_size()
            rows.append(
                LayerBenchRow(
                    shape=full,
                    op=op,
                    where=where,
                    avg_ms=results["avg"].seconds * 1e3,
                    max_ms=results["max"].seconds * 1e3,
                    lap_ms=results["lap"].seconds * 1e3,
                    time_ratio_avg=results["lap"].seconds / results["avg"].seconds,
                    time_ratio_max=results["lap"].seconds / results["max"].seconds,
                    extra_peak_input_copies=(results["lap"].peak_bytes - results["avg"].peak_bytes)
                    / input_bytes,
                    scorer_ms=results["scorer"].seconds * 1e3,
                    multiply_adds=lap_multiply_adds(lap, full),
                    gemm_ms_per_gmac=results["gemm"].seconds * 1e3 / GEMM_SIZE**3 * 1e9,
                    autograd_floor_ms=results["autograd floor"].seconds * 1e3,
                    kernels_ms=(
                        results["kernels"].seconds * 1e3 if "kernels" in results else float("nan")
                    ),
                )
            )
            del x, lap, candidates
    return rows


def format_rows(rows: list[LayerBenchRow]) -> str:
    """A Markdown table of the benchmark rows."""
    lines = [
        "| where | input shape | pooling | avg_pool2d ms | max_pool2d ms | LAP ms | LAP/avg "
        "| LAP/max | LAP extra peak (input copies) | kernels alone ms | kernels alone/avg "
        "| scorer alone ms | scorer alone/avg | FMA floor/avg | autograd floor/max |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def kernels(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.2f}"

    for r in rows:
        lines.append(
            f"| {r.where} | {tuple(r.shape)} | {r.op} | {r.avg_ms:.2f} | {r.max_ms:.2f} "
            f"| {r.lap_ms:.2f} | {r.time_ratio_avg:.2f} | {r.time_ratio_max:.2f} "
            f"| {r.extra_peak_input_copies:.2f} | {kernels(r.kernels_ms)} "
            f"| {kernels(r.kernels_ratio_avg)} | {r.scorer_ms:.2f} | {r.scorer_ratio_avg:.2f} "
            f"| {r.fma_floor_ratio_avg:.2f} | {r.autograd_floor_ratio_max:.2f} |"
        )
    return "\n".join(lines)


def _span(values: list[float], digits: int = 2) -> str:
    """``low-high`` of ``values`` at ``digits`` decimals (one number when they round alike)."""
    low, high = (f"{v:.{digits}f}" for v in (min(values), max(values)))
    return low if low == high else f"{low}-{high}"


def summary(rows: list[LayerBenchRow]) -> str:
    """Worst ratios against the issue's targets (LAP/avg <= 1.5, LAP/max <= 1.2, memory <= 1),
    and, where a target is missed, what the two floors say about it."""
    if not rows:
        return "no rows"
    worst_avg = max(rows, key=lambda r: r.time_ratio_avg)
    worst_max = max(rows, key=lambda r: r.time_ratio_max)
    worst_mem = max(rows, key=lambda r: r.extra_peak_input_copies)

    def name(r: LayerBenchRow) -> str:
        return f"{r.where or r.op} {tuple(r.shape)}"

    missed = [r for r in rows if r.time_ratio_avg > 1.5]
    floored = [r for r in missed if r.scorer_ratio_avg > 1.5]
    lines = [
        f"worst LAP/avg {worst_avg.time_ratio_avg:.2f} ({name(worst_avg)}; target <= 1.5), "
        f"worst LAP/max {worst_max.time_ratio_max:.2f} ({name(worst_max)}; target <= 1.2), "
        f"worst extra peak {worst_mem.extra_peak_input_copies:.2f} input copies "
        f"({name(worst_mem)}; target <= 1); LAP/avg above 1.5 at {len(missed)} of {len(rows)} "
        f"shapes, at {len(floored)} of them the scorer alone (PyTorch) is above 1.5 too"
    ]
    replayed = [r for r in missed if math.isfinite(r.kernels_ms)]
    if replayed:
        under = [r for r in replayed if r.kernels_ratio_avg <= 1.5]
        lines.append(
            f"where LAP/avg is above 1.5, the fused layer's two kernel calls alone take "
            f"{_span([r.kernels_ratio_avg for r in replayed])}x avg_pool2d, at "
            f"{len(under)} of {len(replayed)} shapes within 1.5: the rest is the layer's fixed "
            "cost around them (module, autograd, ctypes)"
        )
    timed = [r for r in missed if r.multiply_adds and math.isfinite(r.gemm_ms_per_gmac)]
    if timed:
        # the share of the matrix product's rate LAP's arithmetic needs to meet the target
        needed = [100 * r.fma_floor_ms / (1.5 * r.avg_ms) for r in timed]
        reached = [100 * r.fma_floor_ms / r.lap_ms for r in timed]
        lines.append(
            f"where LAP/avg is above 1.5, the target asks LAP's multiply-adds to run at "
            f"{_span(needed, 0)}% of the rate of a {GEMM_SIZE}x{GEMM_SIZE} float32 matrix "
            f"product measured in the same rounds (LAP runs them at {_span(reached, 0)}%; FMA "
            f"floor/avg {_span([r.fma_floor_ratio_avg for r in timed])})"
        )
    slow = [r for r in rows if r.time_ratio_max > 1.2]
    if slow:
        floor_bound = [r for r in slow if r.autograd_floor_ratio_max > 1.2]
        lines.append(
            f"LAP/max above 1.2 at {len(slow)} of {len(rows)} shapes; at {len(floor_bound)} of "
            "them an autograd function with the layer's inputs and outputs that does no work "
            "takes above 1.2x max_pool2d on its own (autograd floor/max "
            f"{_span([r.autograd_floor_ratio_max for r in slow])})"
        )
    return "\n".join(lines)


def run_layer_command(device: str, scale: float, batches: str, rounds: int) -> str:
    """What ``torchlap bench layer`` prints: the path taken, the table and the worst ratios.

    ``batches``: comma-separated ints from 1 to :data:`MAX_BATCH`; ``scale`` in (0, 1];
    ``rounds`` >= 1 (ValueError naming the option otherwise, before any tensor is built)."""
    if not 0 < scale <= 1:
        raise ValueError(f"--scale must be in (0, 1], got {scale}")
    texts = listed_names(batches, "--batches")  # "1,,2": a ValueError naming the option
    try:
        sizes = tuple(int(b) for b in texts)
    except ValueError:
        raise ValueError(f"--batches must be comma-separated ints, got {batches!r}") from None
    if not sizes or min(sizes) < 1 or max(sizes) > MAX_BATCH:
        raise ValueError(f"--batches must be ints from 1 to {MAX_BATCH}, got {batches!r}")
    check_distinct(sizes, "--batches")
    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    dev = check_device(device, "--device")
    path = pooling_path(dev.type)
    fused_before = sum(fused_layer_calls.values())
    rows = run_layer_benchmark(device=dev, scale=scale, batches=sizes, rounds=rounds)
    # the whole layer in one compiled call each way, or the per-op scorer and Eq. 4
    layer_path = "fused layer" if sum(fused_layer_calls.values()) > fused_before else "per-op layer"
    header = (
        f"LAP windowed pooling on {dev}: {path}, {layer_path}; threads "
        f"{torch.get_num_threads()}; forward+backward, fastest of {rounds} interleaved rounds of "
        "3 calls each"
    )
    return "\n".join([header, "", format_rows(rows), "", summary(rows)])


def register_layer_bench(bench_app: typer.Typer) -> None:
    """Add the ``layer`` command to the ``torchlap bench`` Typer app."""

    @bench_app.command("layer")
    def bench_layer(
        device: str = typer.Option("cpu", help="Device to run on (cpu, cuda, cuda:1, ...)."),
        scale: float = typer.Option(
            1.0, help="Fraction of the batch of 32 (e.g. 0.25 for a quick look)."
        ),
        batches: str = typer.Option("32,1", help="Comma-separated batch sizes of every shape."),
        rounds: int = typer.Option(
            5, help="Interleaved rounds of 3 calls (the fastest call counts)."
        ),
    ) -> None:
        """Time LAP forward+backward and its peak memory against avg/max pooling (same tensors).

        Example: `torchlap bench layer --scale 0.25`

        Cost with the defaults: about 40 s on a 2-core CPU (`--scale 0.25`: about 17 s; measured
        2026-12-08).
        """
        try:
            typer.echo(run_layer_command(device, scale, batches, rounds))
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
