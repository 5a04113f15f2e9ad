"""``torchlap data``: export built-in benchmarks, list them, check a dataset folder."""

from __future__ import annotations

from pathlib import Path

import typer

from torchlap.data._base import SPLITS
from torchlap.data.api import check_dataset_name, load_dataset
from torchlap.data.builtin import DEFAULT_N_IMAGES, builtin_dataset, builtin_names
from torchlap.data.export import export_builtin
from torchlap.data.images import has_transparency
from torchlap.io import fitting_path

data_app = typer.Typer(
    help="Datasets: export the built-in benchmarks, check annotated folders.",
    no_args_is_help=True,
)


@data_app.command("export")
def export(
    name: str = typer.Argument(..., help=f"Built-in benchmark: {', '.join(builtin_names())}."),
    out: str = typer.Option(
        ..., "--out", metavar="PATH", help="New folder to write (must not exist)."
    ),
    n_images: int = typer.Option(DEFAULT_N_IMAGES, "--n-images", help="Images, all splits."),
    image_size: int = typer.Option(64, "--image-size", help="Square image size in pixels."),
    seed: int = typer.Option(0, "--seed", help="Seed: same seed, same bytes."),
) -> None:
    """Write a built-in benchmark as an annotated folder (PNGs + annotations.csv).

    Example: `torchlap data export lesions --out lesions-folder`

    Cost with the defaults: a few seconds on a CPU.
    """
    if name not in builtin_names():
        raise typer.BadParameter(
            f"unknown built-in {name!r}; choose one of {', '.join(builtin_names())}",
            param_hint="NAME",
        )
    if not out.strip():  # (as text: typer would turn "" into Path("."), the current folder)
        raise typer.BadParameter("--out is empty or blank; pass a new folder for the dataset")
    fitting_path(out, "--out")
    # errors reach the torchlap command's one-line handler (exit 2 input, 1 failure); the
    # export's refusals of its folder name the option
    try:
        path = export_builtin(name, out, n_images=n_images, image_size=image_size, seed=seed)
    except FileExistsError as error:
        raise FileExistsError(f"--out: {error}") from None
    typer.echo(
        f"wrote {name} ({n_images} images, {image_size}x{image_size}, seed {seed}) to {path}"
    )


@data_app.command("list")
def list_builtins() -> None:
    """List the built-in benchmarks.

    Example: `torchlap data list`

    Cost: instant.
    """
    for name in builtin_names():
        typer.echo(name)


@data_app.command("check")
def check(
    name: str = typer.Argument(
        ...,
        metavar="path",
        help="Dataset folder (annotations.csv or ImageFolder), or a built-in name.",
    ),
) -> None:
    """Load every split of a dataset folder and report its size and classes, or the error.

    The verdict is `torchlap train --data`'s: a folder passes only if train would take it
    (every split holds images, every class has training images, at least 2 classes). A
    built-in name (`lesions`, ...) with no folder of that name is described, not generated.

    Example: `torchlap data check lesions-folder`

    Cost: reads every image once (seconds for a few thousand small images).
    """
    check_dataset_name(name)  # typer would make "" the current folder, Path(".")
    fitting_path(name, "the dataset")
    path = Path(name)
    if name in builtin_names():
        if not path.exists():
            _describe_builtin(name)
            return
        typer.echo(
            f"note: checking the folder {name}; `--data {name}` names the built-in benchmark "
            f"{name} (pass --data ./{name} to use this folder)"
        )
    empty, first = [], None
    for split in SPLITS:
        try:
            # a folder's other splits come from what its first split read: annotations.csv
            # parsed and each image header opened once for the three
            with_split = getattr(first, "with_split", None)
            if with_split is None:
                dataset = load_dataset(path, split=split, image_size=None)
            else:
                dataset = with_split(split)
            if first is None:
                first = dataset
        except (ValueError, FileNotFoundError, ImportError) as error:
            if "has no images" in str(error):
                typer.echo(f"{split}: empty")
                empty.append(split)
                continue
            raise  # the torchlap command's one-line handler reports it (exit 2)
        # every image and mask decoded (loading reads their headers only): a truncated file
        # is named here, not in the middle of a training run
        for index in range(len(dataset)):
            dataset[index]
        typer.echo(f"{split}: {len(dataset)} images, classes {dataset.classes}{_absent(dataset)}")
        _report_transparency(dataset, split)
        if split == "train":
            _check_training_split(path, dataset)
    if empty:  # train loads all three splits and refuses an empty one
        raise ValueError(
            f"{path}: the {' and '.join(repr(s) for s in empty)} split(s) have no images; "
            "torchlap train needs images in train, val (which selects the kept epoch) and test "
            "(which gives the results): give those splits images (the split column of "
            "annotations.csv, root/val/<class>/... and root/test/<class>/... folders, or "
            "more images per class where the split is seeded)"
        )


def _absent(dataset: object) -> str:
    """``" (no image of class(es) [...])"`` for the classes of the dataset that its split
    lacks (a folder's val or test split may), else ``""``."""
    records = getattr(dataset, "records", None)
    if records is None:  # a built-in benchmark: every split cycles every class
        return ""
    present = {r.label for r in records}
    absent = [name for name in getattr(dataset, "classes", []) if name not in present]
    return f" (no image of class(es) {absent})" if absent else ""


def _check_training_split(path: Path, dataset: object) -> None:
    """What train refuses about the training split: fewer than 2 classes. Says, too, that a
    folder without boxes or masks cannot be trained with ``--supervision expert``."""
    classes = list(getattr(dataset, "classes", []))
    if len(classes) < 2:
        raise ValueError(
            f"{path}: the training split has {len(classes)} class ({classes}); torchlap trains "
            "classifiers of at least 2 classes"
        )
    if getattr(dataset, "has_regions", True) is False:
        typer.echo(
            "regions: none (class labels only): train with --supervision weak or none; "
            "--supervision expert needs boxes or masks"
        )


def _describe_builtin(name: str) -> None:
    """Sizes and classes of a built-in benchmark at its defaults, without generating it."""
    datasets = {split: builtin_dataset(name, split=split) for split in SPLITS}
    first = datasets["train"]
    sizes = ", ".join(f"{split} {len(d)}" for split, d in datasets.items())
    typer.echo(
        f"{name} is a built-in benchmark, generated on the fly (no folder of that name here): "
        f"with the defaults (n_images {first.n_images}, image_size {first.size}, seed "
        f"{first.seed}) it has {sizes} images, classes {first.classes}, boxes and masks. "
        "data check checks folders: to see its files, write them with "
        f"`torchlap data export {name} --out DIR` and check DIR"
    )


def _report_transparency(dataset: object, split: str) -> None:
    """Name the images whose alpha channel torchlap drops (transparent pixels)."""
    records, root = getattr(dataset, "records", None), getattr(dataset, "root", None)
    if records is None or root is None:  # a built-in benchmark: generated, opaque
        return
    transparent = [r.image for r in records if has_transparency(Path(root) / r.image)]
    if transparent:
        shown = ", ".join(transparent[:3]) + (", ..." if len(transparent) > 3 else "")
        typer.echo(
            f"{split}: {len(transparent)} images have transparent pixels ({shown}); their "
            "alpha channel is dropped when read (the colour under them is kept)"
        )
