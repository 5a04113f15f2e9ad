"""``torchlap explain``: figures and raw maps of a trained run's decisions on image files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import typer

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def collect_images(inputs: list[Path]) -> list[Path]:
    """Image files named on the command line, and those inside named folders (sorted)."""
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found.extend(sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        elif item.is_file():
            if item.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(
                    f"{item} is not an image file; accepted: {', '.join(sorted(IMAGE_SUFFIXES))}"
                )
            found.append(item)
        else:
            raise FileNotFoundError(f"{item} does not exist")
    if not found:
        raise ValueError(f"no image files found in {', '.join(map(str, inputs))}")
    return found


def read_image(path: Path, channels: int, size: int):
    """A file as a (C, size, size) float tensor in [0, 1], as the run's model expects it."""
    import torch
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2.functional import pil_to_tensor, resize

    try:
        with Image.open(path) as opened:
            image = opened.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path} is not a readable image: {error}") from None
    tensor = pil_to_tensor(image).to(torch.float32) / 255.0
    return resize(tensor, [size, size], antialias=True)


def _save_npz(path: Path, arrays: dict) -> None:
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(buffer.getvalue())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def explain_files(
    run_dir: Path, inputs: list[Path], methods: list[str], out: Path, batch_size: int = 16
) -> list[Path]:
    """Write ``<stem>.png`` (input, each method's overlay, LAP's per-layer maps) and
    ``<stem>.npz`` (raw maps at input resolution, and LAP concept maps per layer) per image.

    The true class is read from the parent folder's name when it is one of the run's classes.
    Methods that do not apply to the run's model (``lap`` without LAP layers) are refused
    before any work.
    """
    import torch

    from torchlap.explainers import available, explain
    from torchlap.layers import attention_maps, clear_attention_maps, lap_modules
    from torchlap.report.plots import plot_explanation
    from torchlap.train import load_run

    unknown = [m for m in methods if m not in available()]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; available: {', '.join(available())}")
    run = load_run(run_dir)
    files = collect_images(inputs)
    has_lap = bool(lap_modules(run.model))
    if "lap" in methods and not has_lap:
        raise ValueError(f"{run_dir} has no LAP layer: method 'lap' does not apply to it")
    images = torch.stack([read_image(p, run.in_channels, run.image_size) for p in files])
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for start in range(0, len(files), batch_size):
        batch = images[start : start + batch_size]
        with torch.no_grad():
            predictions = run.model(batch).argmax(1)
            concepts = {}
            if has_lap:
                try:
                    concepts = {n: m.concepts for n, m in attention_maps(run.model).items()}
                finally:
                    clear_attention_maps(run.model)
        maps = {m: explain(run.model, batch, m, target=predictions) for m in methods}
        for offset, path in enumerate(files[start : start + batch_size]):
            truth = path.parent.name if path.parent.name in run.classes else "?"
            title = f"{path.name}: predicted {run.classes[int(predictions[offset])]}, true {truth}"
            own = {m: v[offset] for m, v in maps.items()}
            layers = {n: c[offset] for n, c in concepts.items()}
            figure = plot_explanation(batch[offset], own, layers, title, out / f"{path.stem}.png")
            arrays = {m: v.cpu().numpy() for m, v in own.items()}
            arrays.update({f"lap_concepts/{n}": c.cpu().numpy() for n, c in layers.items()})
            _save_npz(out / f"{path.stem}.npz", arrays)
            written.append(figure)
    return written


def register_explain(app: typer.Typer) -> None:
    """Add ``explain`` to the ``torchlap`` command."""

    @app.command("explain")
    def explain_command(
        inputs: list[Path] = typer.Argument(..., help="Image files or folders."),
        run: Path = typer.Option(..., "--run", help="A run folder written by `torchlap train`."),
        methods: str = typer.Option("lap,gradcam", "--methods", help="Comma-separated names."),
        out: Path = typer.Option(Path("explanations"), "--out", help="Output folder."),
        batch_size: int = typer.Option(16, "--batch-size"),
    ) -> None:
        """Explain a run's predictions on images: one PNG figure and one .npz of maps each."""
        names = [m.strip() for m in methods.split(",") if m.strip()]
        if not names:
            raise typer.BadParameter("--methods needs at least one method name")
        try:
            written = explain_files(run, inputs, names, out, batch_size)
        except (ValueError, FileNotFoundError) as error:
            typer.echo(f"Error: {error}", err=True)
            raise typer.Exit(code=1) from None
        typer.echo(f"wrote {len(written)} figures and maps to {out}")
