"""``torchlap evaluate`` and ``torchlap compare``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

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


def _options(methods: str, method_options: str | None, **fields: object) -> EvaluateOptions:
    options = EvaluateOptions(
        methods=_parse_methods(methods),
        method_options=_parse_method_options(method_options),
        **fields,  # type: ignore[arg-type]
    )
    try:
        options.validate()
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return options


_METHODS_HELP = "Comma-separated explainer names."
_DEFAULT_METHODS = ",".join(DEFAULT_METHODS)

# the options evaluate and compare share, declared once
Split = Annotated[str, typer.Option("--split", help="train, val or test.")]
Methods = Annotated[str, typer.Option("--methods", help=_METHODS_HELP)]
Force = Annotated[bool, typer.Option("--force", help="Recompute methods already computed.")]
BatchSize = Annotated[int, typer.Option("--batch-size")]
MaxImages = Annotated[int | None, typer.Option("--max-images", help="Cap on evaluation images.")]
MaxValImages = Annotated[int, typer.Option("--max-val-images")]
StabilityImages = Annotated[int, typer.Option("--stability-images")]
Baseline = Annotated[str, typer.Option("--baseline", help="keep-k% fill: zero, mean, blur.")]
Target = Annotated[str, typer.Option("--target", help="prediction or label.")]
MethodOptions = Annotated[
    str | None,
    typer.Option("--method-options", help='JSON, e.g. {"rise": {"n_masks": 500}}'),
]
LimeImages = Annotated[
    int,
    typer.Option(
        "--lime-images",
        help="BLA models: images for paper 002's LIME rank correlation (0: off).",
    ),
]
Device = Annotated[str, typer.Option("--device")]
Seed = Annotated[int, typer.Option("--seed")]


def register_evaluate(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``compare`` to the ``torchlap`` command."""

    @app.command("evaluate")
    def evaluate(
        run: Path = typer.Option(..., "--run", help="A run folder written by `torchlap train`."),
        data: str = typer.Option(
            None, "--data", help="Built-in name or folder (default: the run's)."
        ),
        split: Split = "test",
        methods: Methods = _DEFAULT_METHODS,
        out: Path = typer.Option(None, "--out", help="Output folder (default RUN/eval-SPLIT)."),
        force: Force = False,
        batch_size: BatchSize = 32,
        max_images: MaxImages = None,
        max_val_images: MaxValImages = 200,
        stability_images: StabilityImages = 16,
        baseline: Baseline = "zero",
        target: Target = "prediction",
        method_options: MethodOptions = None,
        lime_images: LimeImages = 8,
        device: Device = "cpu",
        seed: Seed = 0,
    ) -> None:
        """Every metric of the papers for one run and every method; writes results.json,
        tables.md, plots and report.html."""
        from torchlap.evaluate.core import evaluate_run

        options = _options(
            methods, method_options, split=split, batch_size=batch_size,
            max_images=max_images, max_val_images=max_val_images,
            stability_images=stability_images, baseline=baseline, target=target,
            lime_images=lime_images, device=device, seed=seed,
        )  # fmt: skip
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
        split: Split = "test",
        methods: Methods = _DEFAULT_METHODS,
        force: Force = False,
        batch_size: BatchSize = 32,
        max_images: MaxImages = None,
        max_val_images: MaxValImages = 200,
        stability_images: StabilityImages = 16,
        baseline: Baseline = "zero",
        target: Target = "prediction",
        method_options: MethodOptions = None,
        lime_images: LimeImages = 8,
        device: Device = "cpu",
        seed: Seed = 0,
    ) -> None:
        """Evaluate several runs (vanilla, weak, expert, ...) into one table and report."""
        from torchlap.evaluate.compare import compare_runs

        options = _options(
            methods, method_options, split=split, batch_size=batch_size,
            max_images=max_images, max_val_images=max_val_images,
            stability_images=stability_images, baseline=baseline, target=target,
            lime_images=lime_images, device=device, seed=seed,
        )  # fmt: skip
        report = compare_runs(runs, data, out, options, force=force)
        typer.echo(f"tables: {out / 'tables.md'}")
        typer.echo(f"report: {report}")
