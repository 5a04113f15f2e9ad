"""``torchlap bench explain``: every explainer timed on the same LAP-ResNet18 in one run.

For each input size, every method explains the same batch of random images; the table gives
seconds per batch, images per second, the time relative to ``lap`` measured in the same run, and
the model passes per image each method made (``forwards/img``, ``backwards/img``, from
``Explainer.last_stats``). Fast methods get one warm-up call and the median of ``repeats``
timed calls, in ``rounds`` interleaved rounds (the best round counts); the methods of kind
``"perturbation"`` (``scorecam``, ``rise``, ``sise``; hundreds of forwards per image) are timed
once, without warm-up (their one probe forward on one image is then part of the time).

The default methods are the registry's: the comparison set, then every other registered
method that applies to the model (:meth:`~torchlap.explainers.Explainer.applies_to`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torchvision
import typer
from torch import nn

from torchlap._checks import check_device, check_distinct
from torchlap.bench.common import (
    MAX_BATCH,
    MAX_SIDE,
    keeps_model_flags,
    keeps_rng_state,
    time_call,
)
from torchlap.bench.explain_peers import (
    PEERS,
    SISE_PAPER_RISE_MASKS,
    format_peer_rows,
    run_rise_vs_sise,
    run_scorecam_against,
)
from torchlap.cli_style import listed_names
from torchlap.explainers import available, comparison_methods, get
from torchlap.explainers.perturbation import RISE_MASKS, check_precision
from torchlap.models.lapify import lapify

logger = logging.getLogger(__name__)

__all__ = ["BenchRow", "build_lap_resnet18", "format_table", "register_bench", "run_benchmark"]


@dataclass
class BenchRow:
    """One method at one input size."""

    size: int
    method: str
    seconds: float
    batch_size: int
    forwards_per_image: float
    backwards_per_image: float
    ratio_to_lap: float = float("nan")

    @property
    def images_per_second(self) -> float:
        """Images explained per second (infinite for a batch timed at 0 s)."""
        return self.batch_size / self.seconds if self.seconds > 0 else float("inf")


def build_lap_resnet18(num_classes: int = 1000) -> tuple[nn.Module, str]:
    """A LAP-ResNet18 (random weights) and how it was built:
    ``torchlap.lapify(resnet18(), where="resnet18")``."""
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model, _ = lapify(model, where="resnet18")
    return model, "torchlap.lapify(resnet18, where='resnet18')"


@keeps_rng_state
@keeps_model_flags
def run_benchmark(
    sizes: Sequence[int] = (224, 64),
    batch_size: int = 16,
    methods: Sequence[str] | None = None,
    rise_masks: int = RISE_MASKS,
    mask_batch_size: int = 64,
    repeats: int = 3,
    device: str = "cpu",
    num_classes: int = 1000,
    seed: int = 0,
    model: nn.Module | None = None,
    rounds: int = 2,
    on_row: Callable[[BenchRow], None] | None = None,
    precision: str = "float32",
) -> tuple[list[BenchRow], str]:
    """Time every method (default: the comparison set, then every other registered method
    that applies to the model) at every size; returns rows and model info.

    ``model``: the model to explain (default: :func:`build_lap_resnet18` with ``num_classes``).
    ``on_row`` is called with each row as soon as it is measured (long runs report as they go).
    """
    for method in methods or ():
        get(method)  # unknown names fail before any work
    torch.manual_seed(seed)
    if model is None:
        model, how = build_lap_resnet18(num_classes)
    else:
        how = f"given model {type(model).__name__}"
    if methods is None:  # the comparison set, then every other method that applies
        methods = list(comparison_methods())
        methods += [m for m in available() if m not in methods and get(m).applies_to(model)]
    methods = list(methods)
    if "lap" in methods:
        methods.remove("lap")
    methods.insert(0, "lap")
    dev = torch.device(device)
    model = model.to(dev).eval()
    generator = torch.Generator().manual_seed(seed)
    rows: list[BenchRow] = []
    for size in sizes:
        images = torch.randn(batch_size, 3, size, size, generator=generator).to(dev)
        explainers = {
            method: get(method)(model, **_options(method, rise_masks, mask_batch_size, precision))
            for method in methods
        }
        seconds: dict[str, float] = {}
        stats: dict[str, dict[str, float]] = {}
        fast = [m for m in methods if get(m).kind != "perturbation"]
        # fast methods: interleaved rounds, so that a slow spell of the machine hits all alike
        for _ in range(rounds):
            for method in fast:
                logger.info("timing %s at %dx%d", method, size, size)
                run = explainers[method]
                elapsed = time_call(lambda e=run, x=images: e(x), dev, repeats)
                seconds[method] = min(seconds.get(method, float("inf")), elapsed)
                stats[method] = run.last_stats

        def report(row: BenchRow) -> None:
            rows.append(row)
            if on_row is not None:
                on_row(row)

        for method in fast:
            report(_row(size, method, batch_size, seconds, stats))
        for method in methods:
            if get(method).kind != "perturbation":
                continue
            logger.info("timing %s at %dx%d (one call)", method, size, size)
            start = time.perf_counter()
            explainers[method](images)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            seconds[method] = time.perf_counter() - start
            stats[method] = explainers[method].last_stats
            report(_row(size, method, batch_size, seconds, stats))
    return rows, how


def _row(
    size: int,
    method: str,
    batch_size: int,
    seconds: dict[str, float],
    stats: dict[str, dict[str, float]],
) -> BenchRow:
    return BenchRow(
        size,
        method,
        seconds[method],
        batch_size,
        stats[method].get("forwards_per_image", float("nan")),
        stats[method].get("backwards_per_image", float("nan")),
        seconds[method] / seconds["lap"],
    )


def _options(
    method: str, rise_masks: int, mask_batch_size: int, precision: str = "float32"
) -> dict:
    if method == "rise":
        return {"n_masks": rise_masks, "mask_batch_size": mask_batch_size, "precision": precision}
    if method in ("scorecam", "sise"):
        return {"mask_batch_size": mask_batch_size, "precision": precision}
    return {}


@keeps_rng_state
def run_comparisons(
    against: str,
    rise_vs_sise: bool,
    size: int,
    batch_size: int,
    rise_masks: int,
    mask_batch_size: int,
    device: str,
    precision: str,
    seed: int = 0,
    rounds: int = 1,
) -> str:
    """What ``torchlap bench explain --against ... / --rise-vs-sise`` prints.

    Each implementation is timed once per round, the rounds interleaving the implementations;
    the best round counts."""
    peers = [p.strip() for p in against.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ValueError(f"unknown --against peer(s) {unknown}; expected some of {list(PEERS)}")
    check_precision(precision)
    dev = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, size, size, generator=generator).to(dev)
    out = []
    if peers:
        torch.manual_seed(seed)
        model, how = build_lap_resnet18()
        precisions = ("float32",) if precision == "float32" else ("float32", precision)
        rows = _best_of(
            rounds,
            lambda: run_scorecam_against(model.to(dev), images, peers, mask_batch_size, precisions),
        )
        out += [
            f"Score-CAM on {how}, {size} px, batch {batch_size}, mask batch {mask_batch_size}, "
            f"threads {torch.get_num_threads()}; best of {rounds} interleaved round(s)",
            format_peer_rows(rows),
            "",
        ]
    if rise_vs_sise:
        torch.manual_seed(seed)
        model = torchvision.models.resnet50(weights=None).to(dev)
        rows = _best_of(
            rounds, lambda: run_rise_vs_sise(model, images, rise_masks, mask_batch_size, precision)
        )
        out += [
            f"RISE vs SISE on a ResNet-50 (random weights), {size} px, batch {batch_size}, "
            f"mask batch {mask_batch_size}, threads {torch.get_num_threads()}; "
            f"best of {rounds} interleaved round(s)",
            format_peer_rows(rows, reference=rows[1].name),
        ]
    return "\n".join(out)


TABLE_HEADER = (
    f"{'size':>5}  {'method':<16} {'s/batch':>9} {'img/s':>9} {'x lap':>9} "
    f"{'fwd/img':>8} {'bwd/img':>8}"
)


def format_row(r: BenchRow) -> str:
    """One row of the table."""
    return (
        f"{r.size:>5}  {r.method:<16} {r.seconds:>9.3f} {r.images_per_second:>9.2f} "
        f"{r.ratio_to_lap:>9.1f} {r.forwards_per_image:>8.1f} {r.backwards_per_image:>8.1f}"
    )


def format_table(rows: Sequence[BenchRow]) -> str:
    """The rows as a fixed-width text table."""
    return "\n".join([TABLE_HEADER, "-" * len(TABLE_HEADER), *map(format_row, rows)])


def register_bench(bench_app: object) -> None:
    """Add the ``explain`` command to the ``torchlap bench`` Typer app."""

    @bench_app.command("explain")
    def explain_command(
        sizes: str = typer.Option("224,64", help="Comma-separated square input sizes."),
        batch_size: int = typer.Option(16, help="Images per batch."),
        methods: str = typer.Option("", help="Comma-separated methods (default: all)."),
        rise_masks: int | None = typer.Option(
            None,
            show_default=False,
            help=f"RISE masks per image. Default: {RISE_MASKS} (RISE's own), with "
            f"--rise-vs-sise {SISE_PAPER_RISE_MASKS} (the SISE paper's).",
        ),
        mask_batch_size: int = typer.Option(64, help="Masked images per forward pass."),
        repeats: int = typer.Option(3, help="Timed calls per fast method (median)."),
        rounds: int = typer.Option(2, help="Interleaved rounds of the fast methods (best)."),
        device: str = typer.Option("cpu", help="Device, e.g. cpu or cuda."),
        num_classes: int = typer.Option(1000, help="Classes of the random LAP-ResNet18."),
        against: str = typer.Option(
            "",
            help="Comma-separated peers (grad-cam, torchcam): Score-CAM against theirs on the "
            "same LAP-ResNet18, images and batch (first of --sizes); maps' correlation, images/s.",
        ),
        rise_vs_sise: bool = typer.Option(
            False,
            "--rise-vs-sise",
            help="RISE (--rise-masks, default 8000 here, as in the SISE paper) against SISE on "
            "a ResNet-50 (first of --sizes; the paper gives no input size, ResNet-50's usual "
            "is 224).",
        ),
        precision: str = typer.Option(
            "float32",
            help="Masked forwards of scorecam/rise/sise: float32, bfloat16 or float16 (autocast).",
        ),
    ) -> None:
        """Time every explainer on one LAP-ResNet18 (images/s, ratio to `lap`, passes/image).

        Example: `torchlap bench explain --sizes 64 --methods lap,gradcam`

        Cost with the defaults: tens of minutes on a 2-core CPU (at 224 px each perturbation
        method makes hundreds of forwards per image, RISE one per mask: 4000); `--sizes 64`,
        `--batch-size`, `--rise-masks` and `--methods` shrink it.
        """
        if rise_masks is None:
            rise_masks = SISE_PAPER_RISE_MASKS if rise_vs_sise else RISE_MASKS
        size_list = _checked_arguments(
            sizes, num_classes, device, batch_size=batch_size, rise_masks=rise_masks,
            mask_batch_size=mask_batch_size, repeats=repeats, rounds=rounds,
        )  # fmt: skip
        method_list = _checked_choices(methods, against, precision)
        _refuse_ignored(method_list, against, rise_vs_sise, precision)
        if rise_vs_sise or (not against and (method_list is None or "rise" in method_list)):
            _check_rise(rise_masks, mask_batch_size, precision)
        if against or rise_vs_sise:
            try:
                typer.echo(
                    run_comparisons(
                        against, rise_vs_sise, size_list[0], batch_size,
                        rise_masks, mask_batch_size, device, precision, rounds=rounds,
                    )
                )  # fmt: skip
            except ValueError as error:
                raise typer.BadParameter(str(error)) from None
            return
        typer.echo(f"batch {batch_size}; device {device}; RISE masks {rise_masks}")
        typer.echo(TABLE_HEADER)
        typer.echo("-" * len(TABLE_HEADER))
        try:
            _, how = run_benchmark(
                size_list, batch_size, method_list, rise_masks, mask_batch_size, repeats, device,
                num_classes, rounds=rounds, on_row=lambda row: typer.echo(format_row(row)),
                precision=precision,
            )  # fmt: skip
        except ValueError as error:
            raise typer.BadParameter(str(error)) from error
        typer.echo(f"model: {how}")


#: the most ``--num-classes``: ImageNet-21k has 21841 classes (10**8 asked torch for 205 GB)
MAX_CLASSES = 100_000


def _checked_arguments(sizes: str, classes: int, device: str, **counts: int) -> list[int]:
    """``bench explain``'s sizes (parsed), counts (keyword: the option's name) and device,
    checked before any model is built; the errors name the option."""
    try:
        texts = listed_names(sizes, "--sizes")
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    try:
        size_list = [int(s) for s in texts]
    except ValueError:
        raise typer.BadParameter(f"--sizes must be comma-separated ints, got {sizes!r}") from None
    if not size_list:
        raise typer.BadParameter(f"--sizes lists no size, got {sizes!r}; pass e.g. 224,64")
    if any(not 8 <= size <= MAX_SIDE for size in size_list):
        raise typer.BadParameter(f"--sizes must each be from 8 to {MAX_SIDE} pixels, got {sizes!r}")
    if counts.get("batch_size", 1) > MAX_BATCH:
        raise typer.BadParameter(
            f"--batch-size must be from 1 to {MAX_BATCH}, got {counts['batch_size']}"
        )
    check_distinct(size_list, "--sizes")
    for name, value in counts.items():
        if value < 1:
            raise typer.BadParameter(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not 2 <= classes <= MAX_CLASSES:  # past it torch's allocator failed after the header
        raise typer.BadParameter(
            f"--num-classes must be >= 2 and <= {MAX_CLASSES} (the random LAP-ResNet18's last "
            f"layer has that many outputs), got {classes}"
        )
    check_device(device, "--device")  # a ValueError: the command's handler, exit 2
    return size_list


def _listed(text: str, option: str) -> list[str] | None:
    """The names of a comma-separated option; ``None`` when not given, refused when the
    text names nothing (``","``)."""
    if not text:
        return None
    names = listed_names(text, option)  # (a ValueError: the caller's BadParameter)
    if not names:
        raise typer.BadParameter(f"{option} lists no name, got {text!r}; leave it out or name some")
    check_distinct(names, option)
    return names


def _checked_choices(methods: str, against: str, precision: str) -> list[str] | None:
    """``--methods`` (parsed; ``None``: all), ``--against`` and ``--precision``, checked before
    anything is printed or built (``--precision`` also without ``--against``)."""
    try:
        check_precision(precision)
        method_list = _listed(methods, "--methods")
        unknown = [method for method in method_list or () if method not in available()]
        if unknown:  # before the table header
            raise ValueError(
                f"--methods names an unknown explainer {', '.join(map(repr, unknown))}; "
                f"available: {', '.join(available())}"
            )
        peers = _listed(against, "--against") or ()
        unknown = [p for p in peers if p not in PEERS]
        if unknown:
            raise ValueError(f"unknown --against peer(s) {unknown}; expected some of {list(PEERS)}")
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return method_list


def _check_rise(rise_masks: int, mask_batch_size: int, precision: str) -> None:
    """``--rise-masks`` and ``--mask-batch-size`` as RISE's constructor checks them, on a
    stand-in model (nothing built or run), before anything is printed: a mask count whose grids
    would not fit in memory used to be refused after the table's header."""
    try:
        get("rise")(nn.Identity(), **_options("rise", rise_masks, mask_batch_size, precision))
    except ValueError as error:  # named by the flag of the argument it names first
        text = str(error)
        flag = "--mask-batch-size" if text.startswith("mask_batch_size") else "--rise-masks"
        raise typer.BadParameter(f"{flag}: {text}") from None


def _refuse_ignored(
    method_list: list[str] | None, against: str, rise_vs_sise: bool, precision: str
) -> None:
    """Options the run would ignore without a word: ``--methods`` with ``--against`` or
    ``--rise-vs-sise`` (which time their own methods), ``--precision`` other than float32 when
    no listed method makes masked forwards."""
    if method_list is not None and (against or rise_vs_sise):
        given = "--against" if against else "--rise-vs-sise"
        raise typer.BadParameter(
            f"--methods is not used with {given}, which times its own methods (Score-CAM "
            "against its peers, or RISE against SISE): drop --methods, or drop "
            f"{given} to time the listed methods"
        )
    masked = [m for m in method_list or () if m in _MASKED_FORWARDS]
    if precision != "float32" and method_list is not None and not masked and not rise_vs_sise:
        raise typer.BadParameter(
            f"--precision {precision} sets the masked forwards of "
            f"{', '.join(_MASKED_FORWARDS)}, and --methods lists none of them: add one, or "
            "drop --precision"
        )


#: the methods whose masked forwards --precision sets
_MASKED_FORWARDS = ("scorecam", "rise", "sise")


def _best_of(rounds: int, run: Callable[[], list]) -> list:
    """Rows of ``run()`` repeated ``rounds`` times, each row keeping its fastest time."""
    best = run()
    for _ in range(rounds - 1):
        for row, again in zip(best, run(), strict=True):
            row.seconds = min(row.seconds, again.seconds)
    return best
