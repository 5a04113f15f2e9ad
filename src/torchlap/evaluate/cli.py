"""``torchlap evaluate`` and ``torchlap compare``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from torchlap.evaluate.core import DEFAULT_METHODS, EvaluateOptions

logger = logging.getLogger(__name__)


def _parse_methods(methods: str) -> tuple[str, ...]:
    names = tuple(m.strip() for m in methods.split(",") if m.strip())
    if not names:
        raise typer.BadParameter("--methods needs at least one method name")
    return names


def _parse_method_options(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"--method-options is not valid JSON: {error}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise typer.BadParameter(
            '--method-options must map method names to option objects, e.g. {"rise": '
            '{"n_masks": 1000}}'
        )
    return value


def _options(
    split: str,
    methods: str,
    batch_size: int,
    max_images: int | None,
    max_val_images: int | None,
    stability_images: int,
    baseline: str,
    target: str,
    method_options: str | None,
    device: str,
    seed: int,
) -> EvaluateOptions:
    options = EvaluateOptions(
        split=split,
        methods=_parse_methods(methods),
        batch_size=batch_size,
        max_images=max_images,
        max_val_images=max_val_images,
        stability_images=stability_images,
        baseline=baseline,
        target=target,
        method_options=_parse_method_options(method_options),
        device=device,
        seed=seed,
    )
    try:
        options.validate()
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return options


_METHODS_HELP = "Comma-separated explainer names."
_DEFAULT_METHODS = ",".join(DEFAULT_METHODS)


def register_evaluate(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``compare`` to the ``torchlap`` command."""

    @app.command("evaluate")
    def evaluate(
        run: Path = typer.Option(..., "--run", help="A run folder written by `torchlap train`."),
        data: str = typer.Option(
            None, "--data", help="Built-in name or folder (default: the run's)."
        ),
        split: str = typer.Option("test", "--split", help="train, val or test."),
        methods: str = typer.Option(_DEFAULT_METHODS, "--methods", help=_METHODS_HELP),
        out: Path = typer.Option(None, "--out", help="Output folder (default RUN/eval-SPLIT)."),
        force: bool = typer.Option(False, "--force", help="Recompute methods already computed."),
        batch_size: int = typer.Option(32, "--batch-size"),
        max_images: int = typer.Option(None, "--max-images", help="Cap on evaluation images."),
        max_val_images: int = typer.Option(200, "--max-val-images"),
        stability_images: int = typer.Option(16, "--stability-images"),
        baseline: str = typer.Option("zero", "--baseline", help="keep-k% fill: zero, mean, blur."),
        target: str = typer.Option("prediction", "--target", help="prediction or label."),
        method_options: str = typer.Option(
            None, "--method-options", help='JSON, e.g. {"rise": {"n_masks": 500}}'
        ),
        device: str = typer.Option("cpu", "--device"),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Every metric of the papers for one run and every method; writes results.json,
        tables.md, plots and report.html."""
        from torchlap.evaluate.core import evaluate_run

        options = _options(
            split,
            methods,
            batch_size,
            max_images,
            max_val_images,
            stability_images,
            baseline,
            target,
            method_options,
            device,
            seed,
        )
        out_dir = out or run / f"eval-{split}"
        evaluate_run(run, data, out_dir, options, force=force)
        typer.echo(f"results: {out_dir / 'results.json'}")
        typer.echo(f"report:  {out_dir / 'report.html'}")

    @app.command("compare")
    def compare(
        runs: list[Path] = typer.Argument(..., help="Run folders to put side by side."),
        data: str = typer.Option(
            None, "--data", help="Built-in name or folder (default: each run's)."
        ),
        out: Path = typer.Option(Path("comparison"), "--out", help="Output folder."),
        split: str = typer.Option("test", "--split"),
        methods: str = typer.Option(_DEFAULT_METHODS, "--methods", help=_METHODS_HELP),
        force: bool = typer.Option(False, "--force"),
        batch_size: int = typer.Option(32, "--batch-size"),
        max_images: int = typer.Option(None, "--max-images"),
        max_val_images: int = typer.Option(200, "--max-val-images"),
        stability_images: int = typer.Option(16, "--stability-images"),
        baseline: str = typer.Option("zero", "--baseline"),
        target: str = typer.Option("prediction", "--target"),
        method_options: str = typer.Option(None, "--method-options"),
        device: str = typer.Option("cpu", "--device"),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Evaluate several runs (vanilla, weak, expert, ...) into one table and report."""
        from torchlap.evaluate.compare import compare_runs

        options = _options(
            split,
            methods,
            batch_size,
            max_images,
            max_val_images,
            stability_images,
            baseline,
            target,
            method_options,
            device,
            seed,
        )
        report = compare_runs(runs, data, out, options, force=force)
        typer.echo(f"tables: {out / 'tables.md'}")
        typer.echo(f"report: {report}")
