"""``torchlap explain``: figures and raw maps of a trained run's decisions on image files.

It lives above the explainers and the report (it reads a run folder, explains and draws), next
to ``torchlap evaluate``; images are decoded by :func:`torchlap.data.images.load_image`, the
decoder of training's data loading.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import typer
from torch import Tensor

from torchlap._checks import non_finite_samples
from torchlap.cli_style import listed_names, nonblank_path
from torchlap.data import ANNOTATIONS, DICOM_SUFFIXES, load_image, read_annotations
from torchlap.evaluate.options import refuse_repeats
from torchlap.explainers import (
    applicability,
    available,
    display_name,
    explain,
    get,
    own_scale,
)
from torchlap.io import check_folder_path
from torchlap.layers import attention_maps, clear_attention_maps, lap_modules
from torchlap.runs import (
    LoadedRun,
    atomic_write,
    atomic_write_json,
    clean_stale_temps,
    load_run,
    read_run_facts,
)

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", *DICOM_SUFFIXES}
MANIFEST = ".torchlap-explain.json"
_MANIFEST_FORMAT = "torchlap-explain"  # the manifest's "format": a file without it is not ours


@dataclass(frozen=True)
class ImageInput:
    """One image to explain: its file, its output name (relative, no suffix) and its label."""

    path: Path
    name: str
    label: str | None = None


def _annotated_label(image: Path, labels: dict[Path, dict[Path, str] | None]) -> str | None:
    """The label of an image named directly, from the ``annotations.csv`` of the nearest
    folder above it that has one (None when no such file lists the image).

    ``labels``: each dataset folder's ``{resolved image path: label}`` (None for a damaged
    file), filled on first use: one parse per folder for all the files named, not one per file.
    """
    image = image.resolve()
    for folder in image.parents:
        if folder in labels or (folder / ANNOTATIONS).is_file():
            if folder not in labels:
                labels[folder] = _folder_labels(folder)
            known = labels[folder]
            return None if known is None else known.get(image)
    return None


def _folder_labels(folder: Path) -> dict[Path, str] | None:
    """``{resolved image path: label}`` of ``folder``'s annotations.csv; None when the file is
    damaged (the labels stay unknown: the figures say "?")."""
    try:
        records, _, _ = read_annotations(folder / ANNOTATIONS)
    except ValueError:
        return None
    labels: dict[Path, str] = {}
    for record in records:
        labels.setdefault((folder / record.image).resolve(), record.label)  # the first row wins
    return labels


def _folder_images(folder: Path) -> list[ImageInput]:
    """A dataset root (``annotations.csv``): its images with their labels, never its masks;
    any other folder: every image file below it, named by its path relative to the folder."""
    if (folder / ANNOTATIONS).is_file():
        records, _, _ = read_annotations(folder / ANNOTATIONS)
        found = []
        for record in records:
            path = folder / record.image
            if not path.is_file():
                raise FileNotFoundError(f"{record.source}: image file {path} not found")
            found.append(
                ImageInput(path, Path(record.image).with_suffix("").as_posix(), record.label)
            )
        return found
    every = sorted(p for p in folder.rglob("*") if p.is_file())
    files = [p for p in every if p.suffix.lower() in IMAGE_SUFFIXES]
    images = set(files)
    skipped = sorted({p.suffix.lower() or "(none)" for p in every if p not in images})
    if skipped:  # not in silence: a .gif or .webp the user meant would otherwise just be gone
        logger.warning(
            "%s: skipped %d file(s) that are not images torchlap reads (suffixes %s; accepted: "
            "%s)", folder, len(every) - len(files), ", ".join(skipped),
            ", ".join(sorted(IMAGE_SUFFIXES)),
        )  # fmt: skip
    return [ImageInput(p, p.relative_to(folder).with_suffix("").as_posix()) for p in files]


def collect_images(inputs: list[Path]) -> list[ImageInput]:
    """The images named on the command line and those inside named folders (sorted).

    Output names mirror each image's path relative to the folder named (a file named directly
    keeps its stem), so ``train/00000.png`` and ``val/00000.png`` cannot overwrite each other;
    names that still collide (two files ``a/x.png`` and ``b/x.png`` named directly) are refused.
    """
    found: list[ImageInput] = []
    labels: dict[Path, dict[Path, str] | None] = {}  # per dataset folder, for this call only
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found.extend(_folder_images(item))
        elif item.is_file():
            if item.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(
                    f"{item} is not an image file; accepted: {', '.join(sorted(IMAGE_SUFFIXES))}"
                )
            found.append(ImageInput(item, item.stem, _annotated_label(item, labels)))
        else:
            raise FileNotFoundError(f"{item} does not exist; pass image files or folders")
    if not found:
        raise ValueError(
            f"no image files found in {', '.join(map(str, inputs))}; accepted suffixes: "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    seen: dict[str, Path] = {}
    for image in found:
        first = seen.get(image.name)
        if first is not None and first.resolve() != image.path.resolve():
            if first.resolve().parent == image.path.resolve().parent:  # a.png and a.jpg
                advice = (
                    "outputs drop the file suffix, so the two files map to the same output "
                    "name: rename one of them"
                )
            else:
                advice = (
                    "name one folder that holds both instead (outputs mirror paths relative "
                    "to the folder named)"
                )
            raise ValueError(
                f"{first} and {image.path} would both be written as {image.name}.png and "
                f"{image.name}.npz; {advice}, or explain them into separate --out folders"
            )
        seen[image.name] = image.path
    unique = {image.name: image for image in found}  # the same file named twice: once
    return list(unique.values())


def read_image(path: Path, channels: int, size: int) -> Tensor:
    """A file as a (C, size, size) float tensor in [0, 1], decoded exactly as training reads
    it (:func:`torchlap.data.images.load_image`: bit-depth scaling, DICOM)."""
    return load_image(path, channels, size)


# the zip comment of every .npz explain writes (invisible to numpy.load)
_NPZ_COMMENT = b"torchlap explain"


def _save_npz(path: Path, arrays: dict) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with zipfile.ZipFile(buffer, "a") as archive:  # an .npz is a zip: mark it as ours
        archive.comment = _NPZ_COMMENT
    atomic_write(path, buffer.getvalue())


def _written_by_torchlap(path: Path) -> bool:
    """Whether ``path`` is a figure or map file explain wrote: its PNG "Software" text or its
    zip comment says so. A manifest claims every planned output before the first write (one
    write, however many images), so after a kill a claimed path may hold a file the user put
    there since: only a file with torchlap's mark is replaced."""
    from torchlap.report.plots import is_torchlap_figure  # matplotlib: loaded on first use

    if path.suffix == ".png":
        return is_torchlap_figure(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.comment == _NPZ_COMMENT
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _check_outputs(out: Path, images: list[ImageInput]) -> list[Path]:
    """The outputs, checked: files torchlap did not write (not in ``out``'s manifest) and the
    inputs themselves are never replaced. Writes nothing."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder; pass a folder path")
    if out.is_symlink() and not out.exists():  # mkdir said only "[Errno 17] File exists"
        raise ValueError(
            f"--out {out} is a symlink to {os.readlink(out)}, which does not exist; create that "
            "folder, or pass another --out"
        )
    check_folder_path(out)  # mkdir said "[Errno 20] Not a directory"
    targets = [out / f"{image.name}{suffix}" for image in images for suffix in (".png", ".npz")]
    inputs = {image.path.resolve() for image in images}
    owned = _read_manifest(out)
    _check_subfolders(out, targets)
    for target in targets:
        relative = target.relative_to(out).as_posix()
        if target.resolve() in inputs:
            raise ValueError(
                f"--out {out}: writing {target} would replace an input image; choose an --out "
                "folder outside the inputs"
            )
        if (target.exists() or target.is_symlink()) and (
            relative not in owned or not _written_by_torchlap(target)
        ):
            raise FileExistsError(
                f"--out {out} already holds {target}, which torchlap explain did not write; "
                "choose another (empty or new) --out folder"
            )
    return targets


def _check_subfolders(out: Path, targets: list[Path]) -> None:
    """The subfolders of ``out`` the outputs go to (mirroring the inputs' subfolders): a file or
    a link to nothing in the way is refused before any work (it failed with ``[Errno 17] File
    exists`` once the first batch was explained)."""
    folders = {parent for target in targets for parent in target.parents if parent != out}
    for folder in sorted(f for f in folders if f.is_relative_to(out)):
        if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
            raise ValueError(
                f"--out {out}: the outputs of the images under {folder.relative_to(out)}/ go to "
                f"{folder}, which is not a folder; move it, or choose another --out"
            )


def _claim_outputs(out: Path, targets: list[Path]) -> None:
    """Record the outputs in ``out``'s manifest before any is written (one write), so that a
    rerun after a kill knows them as its own; a rerun replaces a claimed file only if it
    carries torchlap's mark (:func:`_written_by_torchlap`)."""
    owned = _read_manifest(out)
    claimed = sorted(owned | {t.relative_to(out).as_posix() for t in targets})
    atomic_write_json(out / MANIFEST, {"format": _MANIFEST_FORMAT, "files": claimed})


def _read_manifest(out: Path) -> set[str]:
    """The output files (relative to ``out``) that ``out``'s manifest claims; empty without a
    manifest. A manifest that is not a file, not JSON or not ``{"files": [text, ...]}`` is
    refused (ValueError saying how to go on), never half-read."""
    manifest = out / MANIFEST
    if not manifest.exists() and not manifest.is_symlink():
        return set()

    def damaged(why: str) -> ValueError:
        return ValueError(
            f"{manifest} is damaged ({why}); delete it (torchlap then treats the folder's "
            "files as not its own) or choose another --out"
        )

    if not manifest.is_file():
        raise damaged("it is not a file")
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError) as error:  # (nested deeper than json parses)
        raise damaged(f"not JSON: {error}") from None
    files = record.get("files", []) if isinstance(record, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise damaged('explain writes {"files": [relative paths]}')
    if record.get("format") != _MANIFEST_FORMAT:  # not ours: explain would replace it
        raise ValueError(
            f"{manifest} was not written by torchlap explain (its format is not "
            f"{_MANIFEST_FORMAT!r}), and explain records its outputs there: move the file, or "
            "choose another --out"
        )
    return set(files)


def explain_files(
    run_dir: Path, inputs: list[Path], methods: list[str], out: Path, batch_size: int = 16
) -> list[Path]:
    """Write ``<name>.png`` (input, each method's overlay, LAP's per-layer maps) and
    ``<name>.npz`` (raw maps at input resolution, and LAP concept maps per layer) per image,
    where ``<name>`` mirrors the image's path relative to the folder named (see
    :func:`collect_images`). Returns the figures written.

    The true class is the dataset's label for a dataset root (a folder with annotations.csv),
    else the parent folder's name when it is one of the run's classes. Every check (methods,
    files, decoding, finite pixels, output names) happens before anything is written; the
    images are decoded and checked with the run's facts (channels, size) before its model is
    built.
    """
    _check_arguments(inputs, methods, batch_size)
    out = Path(out)
    entries = _entries(inputs, out)  # (the images and outputs named before the run is read)
    targets = _check_outputs(out, entries)
    facts = read_run_facts(run_dir)  # the images decoded and checked before the model is built
    files = [entry.path for entry in entries]
    images = torch.stack([read_image(p, facts.in_channels, facts.image_size) for p in files])
    bad = [str(files[i]) for i in non_finite_samples(images, limit=5)]
    if bad:
        raise ValueError(
            f"{', '.join(bad)} hold(s) NaN or infinite pixels; their maps would be NaN "
            "everywhere: pass images with finite pixel values"
        )
    run = load_run(facts)
    for method in methods:
        reason = applicability(method, run.model)
        if reason is not None:
            raise ValueError(f"{run_dir}: method {method!r} does not apply to its model ({reason})")
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out)
    _claim_outputs(out, targets)
    written: list[Path] = []
    for start in range(0, len(files), batch_size):
        chunk = entries[start : start + batch_size]
        written += _explain_batch(run, images[start : start + batch_size], chunk, methods, out)
    return written


def _check_arguments(inputs: object, methods: object, batch_size: object) -> None:
    """:func:`explain_files`'s arguments, before the run is read: ``inputs`` a non-empty list
    of paths (a single path or str is refused: iterating it gave its characters), ``methods``
    a non-empty list of known names without repeats, ``batch_size`` an int >= 1."""
    for name, value, kind in (("inputs", inputs, "image files or folders"),
                              ("methods", methods, "method names")):  # fmt: skip
        if not isinstance(value, (list, tuple)):
            raise TypeError(
                f"{name} must be a list of {kind}, got {value!r}; pass [{value!r}] for one"
            )
        if not value:
            raise ValueError(f"{name} is empty; pass at least one of the {kind}")
    bad = [item for item in inputs if not isinstance(item, (str, os.PathLike))]
    if bad:
        raise TypeError(f"inputs must be paths (str or os.PathLike), got {bad[0]!r}")
    unknown = [m for m in methods if not isinstance(m, str) or m not in available()]
    if unknown:
        raise ValueError(
            f"--methods names unknown method(s) {unknown}; available: {', '.join(available())}"
        )
    refuse_repeats(methods, "--methods")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"--batch-size must be an integer >= 1, got {batch_size!r}")


def _entries(inputs: list[Path], out: Path) -> list[ImageInput]:
    """The images to explain, without explain's own outputs (``--out`` inside an input)."""
    entries = collect_images(inputs)
    owned = _read_manifest(out)
    if owned:  # --out inside an input folder: never explain our own figures
        ours = {(out / f).resolve() for f in owned}
        entries = [entry for entry in entries if entry.path.resolve() not in ours]
        if not entries:
            raise ValueError(f"no image files to explain: {out} holds only explain's outputs")
    return entries


def _explain_batch(
    run: LoadedRun, batch: Tensor, entries: list[ImageInput], methods: list[str], out: Path
) -> list[Path]:
    """One batch: predictions, every method's maps (with the run facts each method takes,
    e.g. LAP's concept sets), then one figure and one .npz per image."""
    # matplotlib loads with the first figure, not at `torchlap --help` (measured: importing
    # torchlap.report.plots costs about half of torch's own import time)
    from torchlap.report.plots import plot_explanation

    has_lap = bool(lap_modules(run.model))
    with torch.no_grad():
        predictions = run.model(batch).argmax(1)
        concepts = {}
        if has_lap:
            try:
                concepts = {n: m.concepts for n, m in attention_maps(run.model).items()}
            finally:
                clear_attention_maps(run.model)
    facts = {"concept_sets": run.concept_sets}
    maps = {}
    for m in methods:
        options = {k: facts[k] for k in get(m).run_facts if facts.get(k) is not None}
        maps[m] = explain(run.model, batch, m, target=predictions, **options)
    written = []
    for offset, entry in enumerate(entries):
        path = entry.path
        if entry.label is not None:
            truth = entry.label
        else:
            truth = path.parent.name if path.parent.name in run.classes else "?"
        title = f"{path.name}: predicted {run.classes[int(predictions[offset])]}, true {truth}"
        own = {m: v[offset] for m, v in maps.items()}
        layers = {n: c[offset] for n, c in concepts.items()}
        target = out / f"{entry.name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        names = {m: display_name(m) for m in own}
        absolute = {m for m in own if own_scale(m)}
        written.append(
            plot_explanation(
                batch[offset], own, layers, title, target, names=names, absolute=absolute
            )
        )
        arrays = {m: v.cpu().numpy() for m, v in own.items()}
        arrays.update({f"lap_concepts/{n}": c.cpu().numpy() for n, c in layers.items()})
        _save_npz(out / f"{entry.name}.npz", arrays)
    return written


def register_explain(app: typer.Typer) -> None:
    """Add ``explain`` to the ``torchlap`` command."""

    @app.command("explain")
    def explain_command(
        # (as text: typer turns "" into Path("."), the current folder)
        inputs: list[str] = typer.Argument(..., metavar="PATH...", help="Image files or folders."),
        run: str = typer.Option(
            ..., "--run", metavar="PATH", help="A run folder written by `torchlap train`."
        ),
        methods: str = typer.Option("lap,gradcam", "--methods", help="Comma-separated names."),
        out: str = typer.Option("explanations", "--out", metavar="PATH", help="Output folder."),
        batch_size: int = typer.Option(16, "--batch-size"),
    ) -> None:
        """Explain a run's predictions on images: one PNG figure and one .npz of maps each.

        Example: `torchlap explain scans/ --run runs/bb-lap --methods lap,gradcam --out figures`

        Cost with the defaults (lap, gradcam): about a second per image on a 2-core CPU.
        """
        names = listed_names(methods, "--methods")
        if not names:
            raise typer.BadParameter(f"--methods needs at least one method name, got {methods!r}")
        # an empty input or --out is the current folder: read whole, or filled, without a word
        paths = [
            Path(nonblank_path(item, "an input", "an image file or folder")) for item in inputs
        ]
        out_dir = Path(nonblank_path(out, "--out"))
        run_dir = Path(nonblank_path(run, "--run", "a run folder"))
        # errors reach the torchlap command's one-line handler (exit 2 input, 1 failure)
        written = explain_files(run_dir, paths, names, out_dir, batch_size)
        typer.echo(f"wrote {len(written)} figures and {len(written)} .npz maps to {out_dir}")
