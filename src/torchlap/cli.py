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
# -------------------------------------------------------------------------------------------


def main() -> None:
    """Entry point of the ``torchlap`` console script."""
    app()


if __name__ == "__main__":
    main()
