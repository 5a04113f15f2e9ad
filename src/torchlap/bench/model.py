"""``torchlap bench model``: a lapified model against its vanilla twin, time next to FLOPs.

For each architecture both twins run the same batch: a forward pass (eval mode, no grad) and a
train step (train mode, forward, cross-entropy, backward, SGD step), timed in interleaved rounds
(the best median counts). Next to the time ratios stand the ratios of the multiply-adds the two
models execute, counted by ``torch.utils.flop_counter.FlopCounterMode`` on the same pass: it
counts convolutions and matrix products (and their backward), not pooling and element-wise
operations (in either twin). The issue's target: time ratio within 10% of the multiply-add ratio.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import typer
from torch import nn

from torchlap._checks import check_device, check_distinct
from torchlap._ext import pooling_path
from torchlap.bench.common import MAX_BATCH, MAX_SIDE, keeps_rng_state
from torchlap.cli_style import listed_names
from torchlap.models.build import build_model

logger = logging.getLogger(__name__)

__all__ = ["MODELS", "ModelBenchRow", "count_multiply_adds", "format_model_rows", "run_model_bench"]

# architecture -> the lapify preset of the paper (paper 000, section IV)
MODELS = {
    "resnet18": "resnet18",
    "resnet50": "resnet50-imagenet",
    "inception_v3": "inception_v3",
}


@dataclass
class ModelBenchRow:
    """One architecture: times (ms) and counted multiply-adds (G) of both twins."""

    arch: str
    preset: str
    size: int
    batch: int
    forward_ms: tuple[float, float]
    train_ms: tuple[float, float]
    forward_gmacs: tuple[float, float]
    train_gmacs: tuple[float, float]

    @property
    def forward_time_ratio(self) -> float:
        """Forward time of the lapified model over the vanilla one's."""
        return self.forward_ms[1] / self.forward_ms[0]

    @property
    def train_time_ratio(self) -> float:
        """Train-step time of the lapified model over the vanilla one's."""
        return self.train_ms[1] / self.train_ms[0]

    @property
    def forward_mac_ratio(self) -> float:
        """Forward multiply-adds of the lapified model over the vanilla one's."""
        return self.forward_gmacs[1] / self.forward_gmacs[0]

    @property
    def train_mac_ratio(self) -> float:
        """Train-step multiply-adds of the lapified model over the vanilla one's."""
        return self.train_gmacs[1] / self.train_gmacs[0]


def _forward(model: nn.Module, images: torch.Tensor) -> None:
    with torch.no_grad():
        model(images)


def _train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor
) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()


def count_multiply_adds(fn: Callable[..., object], *args: object) -> float:
    """Multiply-adds (FLOPs / 2) of the convolutions and matrix products ``fn(*args)`` runs."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn(*args)
    return counter.get_total_flops() / 2


def _build(arch: str, preset: str | None, size: int, device: torch.device) -> nn.Module:
    model = build_model(arch, num_classes=1000, lap=preset, input_size=size)
    for module in model.modules():  # the pass clock and stored maps are the LAP layers' own
        if hasattr(module, "clear_maps"):
            module.clear_maps()
    return model.to(device)


def _time(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@keeps_rng_state
def run_model_bench(
    archs: tuple[str, ...] = tuple(MODELS),
    size: int = 224,
    batch: int = 16,
    device: str | torch.device = "cpu",
    repeats: int = 3,
    rounds: int = 2,
    seed: int = 0,
) -> list[ModelBenchRow]:
    """Time and count every architecture of ``archs`` (keys of :data:`MODELS`) and its twin."""
    unknown = [a for a in archs if a not in MODELS]
    if unknown:
        raise ValueError(f"unknown architecture(s) {unknown}; expected some of {list(MODELS)}")
    if size < 75:
        raise ValueError(f"size must be >= 75 (Inception-v3's smallest input), got {size}")
    if batch < 1 or repeats < 1 or rounds < 1:
        raise ValueError(
            f"batch, repeats and rounds must be >= 1, got {batch}, {repeats}, {rounds}"
        )
    device = torch.device(device)
    rows = []
    for arch in archs:
        torch.manual_seed(seed)
        twins = [_build(arch, None, size, device), _build(arch, MODELS[arch], size, device)]
        images = torch.randn(batch, 3, size, size, device=device)
        labels = torch.randint(0, 1000, (batch,), device=device)
        optimizers = [torch.optim.SGD(m.parameters(), lr=1e-3) for m in twins]
        forward_macs, train_macs = [], []
        for model, optimizer in zip(twins, optimizers, strict=True):
            model.eval()
            forward_macs.append(count_multiply_adds(_forward, model, images) / 1e9)
            model.train()
            train_macs.append(
                count_multiply_adds(_train_step, model, optimizer, images, labels) / 1e9
            )
        forward_best = [float("inf")] * 2
        train_best = [float("inf")] * 2
        for _ in range(rounds):
            for i, (model, optimizer) in enumerate(zip(twins, optimizers, strict=True)):
                logger.info("timing %s (%s) forward", arch, "LAP" if i else "vanilla")
                model.eval()
                forward_best[i] = min(
                    forward_best[i],
                    _time(lambda m=model, x=images: _forward(m, x), device, repeats),
                )
                logger.info("timing %s (%s) train step", arch, "LAP" if i else "vanilla")
                model.train()
                step = lambda m=model, o=optimizer, x=images, y=labels: _train_step(m, o, x, y)  # noqa: E731
                train_best[i] = min(train_best[i], _time(step, device, repeats))
        rows.append(
            ModelBenchRow(
                arch=arch,
                preset=MODELS[arch],
                size=size,
                batch=batch,
                forward_ms=(forward_best[0] * 1e3, forward_best[1] * 1e3),
                train_ms=(train_best[0] * 1e3, train_best[1] * 1e3),
                forward_gmacs=(forward_macs[0], forward_macs[1]),
                train_gmacs=(train_macs[0], train_macs[1]),
            )
        )
    return rows


def format_model_rows(rows: list[ModelBenchRow]) -> str:
    """A Markdown table: time ratios next to counted multiply-add ratios."""
    lines = [
        "| model (lapify preset) | px | batch | forward ms vanilla / LAP | forward time ratio "
        "| forward MAC ratio (GMAC vanilla / LAP) | train step ms vanilla / LAP "
        "| train time ratio | train MAC ratio | time/MAC (fwd, train) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.arch} ({r.preset}) | {r.size} | {r.batch} "
            f"| {r.forward_ms[0]:.0f} / {r.forward_ms[1]:.0f} | {r.forward_time_ratio:.2f} "
            f"| {r.forward_mac_ratio:.2f} ({r.forward_gmacs[0]:.1f} / {r.forward_gmacs[1]:.1f}) "
            f"| {r.train_ms[0]:.0f} / {r.train_ms[1]:.0f} | {r.train_time_ratio:.2f} "
            f"| {r.train_mac_ratio:.2f} "
            f"| {r.forward_time_ratio / r.forward_mac_ratio:.2f}, "
            f"{r.train_time_ratio / r.train_mac_ratio:.2f} |"
        )
    return "\n".join(lines)


def register_model_bench(bench_app: object) -> None:
    """Add the ``model`` command to the ``torchlap bench`` Typer app."""

    @bench_app.command("model")
    def model_command(
        archs: str = typer.Option(",".join(MODELS), help="Comma-separated architectures."),
        size: int = typer.Option(224, help="Square input size in pixels."),
        batch_size: int = typer.Option(16, help="Images per batch."),
        scale: float = typer.Option(
            1.0, help="Shrink input size and batch for a quick look (e.g. 0.5: 112 px, batch 8)."
        ),
        repeats: int = typer.Option(3, help="Timed calls per measurement (median)."),
        rounds: int = typer.Option(2, help="Interleaved rounds (the best counts)."),
        device: str = typer.Option("cpu", help="Device, e.g. cpu or cuda."),
    ) -> None:
        """Train-step and forward time of lapified models against their vanilla twins, next to
        the ratio of their counted multiply-adds.

        Example: `torchlap bench model --scale 0.5`

        Cost with the defaults: about 2.5 min on a 2-core CPU (`--scale 0.5`: about 25 s;
        measured 2026-12-08); `--archs` and `--rounds` shrink it too.
        """
        if not 0 < scale <= 1:
            raise typer.BadParameter(f"--scale must be in (0, 1], got {scale}")
        # checked before scaling, which keeps a quick look at Inception-v3's smallest input
        if not 75 <= size <= MAX_SIDE:
            raise typer.BadParameter(
                f"--size must be from 75 (Inception-v3's smallest) to {MAX_SIDE}, got {size}"
            )
        if not 1 <= batch_size <= MAX_BATCH:
            raise typer.BadParameter(
                f"--batch-size must be from 1 to {MAX_BATCH}, got {batch_size}"
            )
        for option, value in (("--repeats", repeats), ("--rounds", rounds)):
            if value < 1:
                raise typer.BadParameter(f"{option} must be >= 1, got {value}")
        check_device(device, "--device")  # a ValueError: the command's handler, exit 2
        try:
            arch_list = tuple(listed_names(archs, "--archs"))
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
        if not arch_list:
            raise typer.BadParameter(
                f"--archs lists no architecture, got {archs!r}; pass some of {', '.join(MODELS)}"
            )
        unknown = [arch for arch in arch_list if arch not in MODELS]
        if unknown:
            raise typer.BadParameter(
                f"--archs names unknown architecture(s) {unknown}; expected some of "
                f"{', '.join(MODELS)}"
            )
        check_distinct(arch_list, "--archs")
        scaled_size = max(75, round(size * scale))
        scaled_batch = max(1, round(batch_size * scale))
        try:
            rows = run_model_bench(
                arch_list, scaled_size, scaled_batch, device, repeats=repeats, rounds=rounds
            )
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
        typer.echo(
            f"device {device}; threads {torch.get_num_threads()}; LAP pooling path: "
            f"{pooling_path(torch.device(device).type)}; "
            "LAP options: lapify defaults (1 concept, 8 hidden channels)"
        )
        typer.echo(format_model_rows(rows))
        typer.echo(
            "target: time ratio within 10% of the MAC ratio (time/MAC between 0.9 and 1.1); "
            "MACs of convolutions and matrix products, counted by FlopCounterMode"
        )
