"""``torchlap bench layer``: LAP forward+backward against avg/max pooling on the same tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from torchlap.bench.common import measure
from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d

# ResNet-like shapes of the issue: (shape, kernel, stride, padding); kernel None = adaptive to 1x1
SHAPES = [
    ((32, 64, 56, 56), 2, 2, 0),
    ((32, 128, 28, 28), 2, 2, 0),
    ((32, 64, 112, 112), 3, 2, 1),
    ((32, 512, 7, 7), None, None, 0),
]


@dataclass
class LayerBenchRow:
    """Ratios of one shape: LAP over avg_pool2d (time), and LAP's extra peak memory."""

    shape: tuple[int, ...]
    op: str
    avg_ms: float
    max_ms: float
    lap_ms: float
    time_ratio_avg: float
    time_ratio_max: float
    extra_peak_input_copies: float


def _candidates(x: torch.Tensor, kernel, stride, padding) -> tuple[str, dict]:
    """The three passes to compare on the same input ``x``; each allocates its own x.grad."""
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
            x.grad = None
            forward().sum().backward()
            lap.clear_maps()

        return run

    return op, {
        "avg": forward_backward(avg),
        "max": forward_backward(mx),
        "lap": forward_backward(lambda: lap(x)),
    }


def run_layer_benchmark(
    shapes=SHAPES, device: str | torch.device = "cpu", repeats: int = 3, scale: float = 1.0
) -> list[LayerBenchRow]:
    """Measure every shape; ``scale`` < 1 shrinks the batch for a quick look."""
    device = torch.device(device)
    rows = []
    for shape, kernel, stride, padding in shapes:
        batch = max(1, round(shape[0] * scale))
        full = (batch, *shape[1:])
        x = torch.randn(full, device=device, requires_grad=True)
        op, candidates = _candidates(x, kernel, stride, padding)
        results = measure(candidates, device, repeats=repeats)
        input_bytes = x.numel() * x.element_size()
        rows.append(
            LayerBenchRow(
                shape=full,
                op=op,
                avg_ms=results["avg"].seconds * 1e3,
                max_ms=results["max"].seconds * 1e3,
                lap_ms=results["lap"].seconds * 1e3,
                time_ratio_avg=results["lap"].seconds / results["avg"].seconds,
                time_ratio_max=results["lap"].seconds / results["max"].seconds,
                extra_peak_input_copies=(results["lap"].peak_bytes - results["avg"].peak_bytes)
                / input_bytes,
            )
        )
    return rows


def format_rows(rows: list[LayerBenchRow]) -> str:
    """A Markdown table of the benchmark rows."""
    lines = [
        "| input shape | pooling | avg_pool2d ms | max_pool2d ms | LAP ms | LAP/avg | LAP/max "
        "| LAP extra peak (input copies) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {tuple(r.shape)} | {r.op} | {r.avg_ms:.1f} | {r.max_ms:.1f} | {r.lap_ms:.1f} "
            f"| {r.time_ratio_avg:.2f} | {r.time_ratio_max:.2f} | {r.extra_peak_input_copies:.2f} |"
        )
    return "\n".join(lines)
