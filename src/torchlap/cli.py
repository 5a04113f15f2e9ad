"""The ``torchlap`` command line.

Sub-commands live next to the code they drive; this module only wires them together so
that ``torchlap --help`` lists everything.
"""

from __future__ import annotations

import typer

from torchlap import __version__

app = typer.Typer(
    name="torchlap",
    help="Local Attention Pooling: CNNs that explain themselves.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Speed and memory benchmarks (ratios against a reference).")
app.add_typer(bench_app, name="bench")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"torchlap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Local Attention Pooling: CNNs that explain themselves."""


@app.command("demo")
def demo(
    out: str = typer.Option("demo-output", "--out", help="Folder for the runs and the report."),
    scale: float = typer.Option(1.0, "--scale", help="Grow (>1) or shrink (<1) data and eval."),
    epochs: int = typer.Option(None, "--epochs", help="Epochs per run (default 4)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Retrain and re-evaluate."),
    suite: str = typer.Option(
        "main",
        "--suite",
        help="main (vanilla, weak-LAP, expert-LAP) or peers (also BLA, BLA-T, BLA-PH, L2X-F, "
        "ante-hoc).",
    ),
    data: str = typer.Option("lesions", "--data", help="Built-in benchmark (lesions, concepts)."),
    arch: str = typer.Option(
        "resnet18", "--arch", help="Architecture of every run (resnet18 uses the paper's preset)."
    ),
    lr: float = typer.Option(None, "--lr", help="Learning rate (default 1e-3)."),
) -> None:
    """The main job: train vanilla, weak-LAP and expert-LAP ResNet18 on `lesions`, evaluate
    every explainer on all three, write one comparison report. `--suite peers` adds the
    self-explaining peers."""
    import logging
    import sys
    import time

    from torchlap.data import builtin_names
    from torchlap.demo import SUITES, DemoSettings, run_demo

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if suite not in SUITES:
        raise typer.BadParameter(f"unknown --suite {suite!r}; expected one of {', '.join(SUITES)}")
    if data not in builtin_names():
        raise typer.BadParameter(
            f"unknown --data {data!r}; the demo runs on a built-in benchmark: "
            f"{', '.join(builtin_names())}"
        )
    try:
        settings = DemoSettings(data=data, arch=arch).scaled(scale)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if lr is not None:
        if not lr > 0:
            raise typer.BadParameter(f"--lr must be > 0, got {lr}")
        settings.lr = lr
    if epochs is not None:
        if epochs < 1:
            raise typer.BadParameter(f"--epochs must be >= 1, got {epochs}")
        settings.epochs = epochs
    started = time.perf_counter()
    report = run_demo(out, settings, overwrite=overwrite, suite=suite)
    typer.echo(f"demo finished in {time.perf_counter() - started:.0f} s")
    typer.echo(f"tables: {report.parent / 'tables.md'}")
    typer.echo(f"report: {report}")


@bench_app.command("layer")
def bench_layer(
    device: str = typer.Option("cpu", help="Device to run on (cpu, cuda, cuda:1, ...)."),
    scale: float = typer.Option(
        1.0, help="Fraction of the batch of 32 (e.g. 0.25 for a quick look)."
    ),
) -> None:
    """Time LAP forward+backward and its peak memory against avg/max pooling (same tensors)."""
    from torchlap.layers.bench import format_rows, run_layer_benchmark

    if not 0 < scale <= 1:
        raise typer.BadParameter(f"--scale must be in (0, 1], got {scale}")
    typer.echo(format_rows(run_layer_benchmark(device=device, scale=scale)))


# --- sub-command registration: one line per area -------------------------------------------
# (each area defines its commands in its own module; keep this block one import per line)
from torchlap.data.cli import data_app  # noqa: E402

app.add_typer(data_app, name="data")
from torchlap.train.cli import register_train  # noqa: E402

register_train(app)
from torchlap.explainers.bench import register_bench  # noqa: E402

register_bench(bench_app)
from torchlap.evaluate.cli import register_evaluate  # noqa: E402

register_evaluate(app)
from torchlap.explainers.cli import register_explain  # noqa: E402

register_explain(app)
# -------------------------------------------------------------------------------------------


def main() -> None:
    """Entry point of the ``torchlap`` console script."""
    app()


if __name__ == "__main__":
    main()
