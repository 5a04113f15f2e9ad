"""``torchlap demo``: the command line of :mod:`torchlap.demo` (its options, their checks and
the demo's log)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torchvision
import typer

from torchlap.cli_style import nonblank_path
from torchlap.data import builtin_names
from torchlap.data.builtin import MAX_IMAGE_SIZE
from torchlap.demo import DEMO_OUTPUTS, SUITES, DemoSettings, run_demo
from torchlap.evaluate.common import clear_output_folder, guard_output_folder
from torchlap.evaluate.output_owner import COMPARISON
from torchlap.logs import log_file
from torchlap.models.backbones import SMALL_ARCHS
from torchlap.train.config import MAX_EPOCHS

# "(default N)" of the demo's options that default to DemoSettings' values
_DEFAULT = {
    name: f"(default {getattr(DemoSettings, name):g})" for name in ("epochs", "lr", "image_size")
}


def demo(
    out: str = typer.Option("demo-output", "--out", help="Folder for the runs and the report."),
    scale: float = typer.Option(1.0, "--scale", help="Grow (>1) or shrink (<1) data and eval."),
    epochs: int = typer.Option(None, "--epochs", help=f"Epochs per run {_DEFAULT['epochs']}."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Retrain and re-evaluate."),
    suite: str = typer.Option(
        "main",
        "--suite",
        help="main (vanilla, weak-LAP, expert-LAP; with --bcos also B-cos) or peers (also BLA, "
        "BLA-T, BLA-PH, L2X-F, ante-hoc).",
    ),
    data: str = typer.Option(
        "lesions", "--data", help="Built-in benchmark (lesions, concepts, digits)."
    ),
    arch: str = typer.Option(
        "resnet18", "--arch", help="Architecture of every run (resnet18 uses the paper's preset)."
    ),
    lr: float = typer.Option(None, "--lr", help=f"Learning rate {_DEFAULT['lr']}."),
    image_size: int = typer.Option(
        None, "--image-size", help=f"Input size in px of every run {_DEFAULT['image_size']}."
    ),
    bcos: bool = typer.Option(
        False, "--bcos", help="Also train and evaluate a B-cos ResNet-20 (extra torchlap[bcos])."
    ),
    perturbation: bool = typer.Option(
        False,
        "--perturbation",
        help="Also evaluate Score-CAM, RISE and SISE (about 25 s per image and run at 128 px "
        "on a 2-core CPU).",
    ),
) -> None:
    """Train vanilla, weak-LAP and expert-LAP ResNet18 on `lesions` and compare their maps.

    Evaluates the models' own maps (LAP) and the gradient explainers on the runs
    (`--perturbation` adds Score-CAM, RISE and SISE; `--bcos`: a B-cos ResNet-20 joins the
    runs), runs the sanity checks and the grid pointing game for them, and writes one
    comparison report (`--suite peers` adds the self-explaining peers). An interrupted demo
    resumes.

    Example: `torchlap demo --out demo-output` (quick look: `--scale 0.1 --epochs 1`)

    Cost with the defaults: 4-6 min on a quiet 2-core CPU with AVX-512 with the sanity checks
    and the grid pointing game (212-253 s on 2026-12-03; 346 s on 2026-12-06 in a slower spell
    of the host, where an epoch took as long with the 12-03 code), plus the venv install (about
    1.5 min); about 11 min on a 2-core AVX2 CPU (645 s, 2026-12-02).
    """
    _check_demo_names(suite, data, arch)
    try:
        settings = DemoSettings(data=data, arch=arch).scaled(scale)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if lr is not None:
        if not (lr > 0 and math.isfinite(lr)):
            raise typer.BadParameter(f"--lr must be > 0 and finite, got {lr}")
        settings.lr = lr
    settings.bcos, settings.perturbation = bcos, perturbation
    if image_size is not None:
        if not 32 <= image_size <= MAX_IMAGE_SIZE:  # (the built-in benchmarks' sizes)
            raise typer.BadParameter(
                f"--image-size must be >= 32 px and <= {MAX_IMAGE_SIZE}, got {image_size}"
            )
        settings.image_size = image_size
    if epochs is not None:
        if not 1 <= epochs <= MAX_EPOCHS:
            raise typer.BadParameter(f"--epochs must be >= 1 and <= {MAX_EPOCHS}, got {epochs}")
        settings.epochs = epochs
    # "" (the current folder, to fill with runs/) refused
    out = Path(nonblank_path(out, "--out"))
    started = time.perf_counter()
    with _demo_log(out, overwrite) as on_checked:  # every line of the demo, its runs included
        report = run_demo(out, settings, overwrite=overwrite, suite=suite, on_checked=on_checked)
    typer.echo(f"demo finished in {time.perf_counter() - started:.0f} s")
    typer.echo(f"tables: {report.parent / 'tables.md'}")
    typer.echo(f"report: {report}")


def _check_demo_names(suite: str, data: str, arch: str) -> None:
    """``--suite``, ``--data`` (a built-in benchmark) and ``--arch`` (a torchvision classifier
    or torchlap's small CNN: the demo's runs build nothing else), before the demo checks its
    folders or opens its log."""
    if suite not in SUITES:
        raise typer.BadParameter(f"unknown --suite {suite!r}; expected one of {', '.join(SUITES)}")
    if data not in builtin_names():
        raise typer.BadParameter(
            f"unknown --data {data!r}; the demo runs on a built-in benchmark: "
            f"{', '.join(builtin_names())}"
        )
    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in SMALL_ARCHS and arch not in known:
        raise typer.BadParameter(
            f"unknown --arch {arch!r}; the demo's runs take a torchvision classifier (e.g. "
            f"resnet18, resnet50; {len(known)} in all) or {', '.join(SMALL_ARCHS)}"
        )


@contextmanager
def _demo_log(out: Path, overwrite: bool) -> Iterator[Callable[[], None]]:
    """``out/demo.log`` while the block runs; yields the demo's ``on_checked``. Before the log
    opens: a demo.log torchlap did not write is refused, never appended to; with
    ``--overwrite`` it is removed once the demo checked its folders (a refused demo removes
    nothing), and the log opens then."""
    foreign = guard_output_folder(
        out, overwrite, flag="--overwrite", names=DEMO_OUTPUTS, apply=False, owner=COMPARISON
    )
    logs = [path for path in foreign if path.name == "demo.log"]
    checked: list[bool] = []

    def on_checked() -> None:
        clear_output_folder(out, logs, "--overwrite")
        checked.append(True)

    with log_file(out / "demo.log", ready=lambda: bool(checked) and out.is_dir()):
        yield on_checked


def register_demo(app: typer.Typer) -> None:
    """Add ``torchlap demo`` to the ``torchlap`` command."""
    app.command("demo")(demo)
