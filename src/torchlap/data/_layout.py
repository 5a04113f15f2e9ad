"""The ImageFolder layouts of :func:`torchlap.data.plain_folder.image_folder`: what a listing
of class subfolders would drop or mistake for a class, refused with the folder named."""

from __future__ import annotations

import logging
import os
import unicodedata
from collections import Counter
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS

from torchlap.data._base import SPLITS
from torchlap.data.annotations import ANNOTATIONS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, ImageRecord
from torchlap.data.images import DICOM_SUFFIXES, not_a_file

__all__ = [
    "FOLDER_IMAGE_SUFFIXES",
    "log_left_out_files",
    "refuse_a_missing_csv",
    "refuse_folder_links_back",
    "refuse_images_read_twice",
    "refuse_linked_folders",
    "refuse_misread_entries",
    "refuse_other_image_folders",
    "refuse_untrainable_class_folders",
]

logger = logging.getLogger(__name__)

#: the files a class subfolder lists as images: torchvision's image extensions and DICOM, the
#: files torchlap's decoder reads (as ``torchlap explain`` lists a folder)
FOLDER_IMAGE_SUFFIXES: tuple[str, ...] = (*IMG_EXTENSIONS, *DICOM_SUFFIXES)


def refuse_untrainable_class_folders(
    root: Path, records: list[ImageRecord], empty_folders: list[tuple[str, str]]
) -> None:
    """ValueError naming the class folders without image files whose class then has no
    training image (a class the model could not learn). An empty ``val/<class>`` or
    ``test/<class>`` of a class with training images is fine: that split lacks the class."""
    trained = {r.label for r in records if r.split in (None, "train")}
    refused = [folder for folder, name in empty_folders if name not in trained]
    if refused:
        raise ValueError(
            f"{root}: class folder(s) {', '.join(refused)} hold no image files (extensions "
            f"{', '.join(FOLDER_IMAGE_SUFFIXES)}), so their class has no training image and could "
            "not be learnt; add images to them or remove them"
        )


def refuse_other_image_folders(root: Path, split_dirs: list[str]) -> None:
    """ValueError naming the folders with image files next to the split folders: a split layout
    reads only train/, val/ and test/, so ``Validation/`` or ``Test/`` would be dropped (the
    split folders are compared as files: ``Train/`` read as train/ on macOS is no other; hidden
    files and folders and macOS' ``__MACOSX/`` resource forks are no images)."""
    others = [
        entry.name + "/"
        for entry in sorted(root.iterdir())
        if entry.is_dir() and not entry.name.startswith(".") and entry.name != "__MACOSX"
        if not any(entry.samefile(root / split) for split in split_dirs)
        if any(_is_image_name(f) for _, _, fs in os.walk(entry) for f in fs)
    ]
    if others:
        raise ValueError(
            f"{root} has split folders but also {', '.join(others)} holding image files, which "
            f"would be left out: the split folders are named exactly {', '.join(SPLITS)} "
            "(lower case); rename or move the other folder(s)"
        )


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(FOLDER_IMAGE_SUFFIXES)


def refuse_misread_entries(root: Path, folder: Path, classes: list[str], files: list[str]) -> None:
    """ValueError for what a class-subfolder listing of ``folder`` would misread: a hidden
    folder or macOS' ``__MACOSX/`` taken as a class, a class folder name holding a control
    character (a label annotations.csv refuses), and macOS' AppleDouble files (``._name.png``,
    metadata a copy from a Mac leaves next to each file) taken as images."""
    hidden = [name + "/" for name in classes if name.startswith(".") or name == "__MACOSX"]
    if hidden:
        raise ValueError(
            f"{folder}: {', '.join(hidden)} would be read as class folder(s): a hidden folder, "
            "or the __MACOSX/ folder of resource forks that unzipping a macOS archive leaves, "
            "is no class; remove it or move it out of the dataset folder"
        )
    _refuse_odd_class_names(folder, classes)
    apple = [f for f in files if Path(f).name.startswith("._")]
    if apple:
        first = Path(apple[0]).relative_to(root).as_posix()
        raise ValueError(
            f"{root}: {len(apple)} file(s) named ._* (e.g. {first}) are macOS AppleDouble "
            "metadata (left by copying from a Mac), not images: delete them, e.g. "
            f"find {root} -name '._*' -delete"
        )


def _refuse_odd_class_names(folder: Path, classes: list[str]) -> None:
    """ValueError for a class folder name that is no label annotations.csv keeps as it is: a
    control character, spaces around it (the CSV strips them: ``'a '`` reads back as ``'a'``),
    or two names that are one in Unicode's composed form (``café`` typed on Linux and copied
    from macOS, which decomposes it): one class would be two."""
    for name in classes:
        if not name.isprintable() or name != name.strip():
            raise ValueError(
                f"{folder}: class folder name {name!r} holds a control character or spaces "
                "around it; the folder name is the class label, and labels are printable text "
                "without surrounding spaces (as annotations.csv reads them): rename the folder"
            )
    seen: dict[str, str] = {}
    for name in classes:
        other = seen.setdefault(unicodedata.normalize("NFC", name), name)
        if other != name:
            raise ValueError(
                f"{folder}: class folders {other!a} and {name!a} have the same name in two "
                "Unicode forms (composed and decomposed, e.g. one copied from macOS), so one "
                "class would be two: merge them into one folder"
            )


_warned_folders: set[str] = set()


def log_left_out_files(folder: Path, classes: list[str]) -> None:
    """Warn (once per folder and process: each split loads the listing) about the files the
    class-subfolder listing of ``folder`` leaves out: image files directly in ``folder`` (in no
    class folder), and files of other types in the class folders (``.gif``, ``.heic``, ...),
    by count and suffix. Hidden files (``.DS_Store``) are not counted."""
    key = os.path.abspath(folder)
    if key in _warned_folders:
        return
    _warned_folders.add(key)
    loose = [
        entry.name for entry in os.scandir(folder) if entry.is_file() and _is_image_name(entry.name)
    ]
    others: Counter[str] = Counter()
    for name in classes:
        for _, _, files in os.walk(folder / name, followlinks=True):
            others.update(
                Path(f).suffix.lower() or "(no suffix)"
                for f in files
                if not f.startswith(".") and not f.lower().endswith(FOLDER_IMAGE_SUFFIXES)
            )
    if loose:
        logger.warning(
            "%s: %d image file(s) directly in the folder (e.g. %s) are in no class folder and "
            "are left out; move them into a class folder",
            folder,
            len(loose),
            sorted(loose)[0],
        )
    if others:
        counts = ", ".join(f"{suffix}: {n}" for suffix, n in sorted(others.items()))
        logger.warning(
            "%s: %d file(s) in the class folders are not images torchlap reads and are left "
            "out (%s); images are %s",
            folder,
            sum(others.values()),
            counts,
            ", ".join(FOLDER_IMAGE_SUFFIXES),
        )


def refuse_folder_links_back(root: Path, folder: Path, classes: list[str]) -> None:
    """ValueError naming a link to a folder, in the class folders of ``folder``, that leads
    into the dataset ``root`` or above it (``cats/loop -> ..``, ``dogs/more -> ../cats``,
    ``train/cats/x -> ../../test/cats``): the listing follows links to folders, so the same
    images were listed again under each path (a loop until the system's link limit: one
    image tens of times, across classes and splits). Links to folders outside ``root`` (a
    store of images on another disk) are read."""
    top = root.resolve()
    for name in classes:
        for parent, dirs, _ in os.walk(folder / name):  # (links to folders not followed)
            for entry in dirs:
                _refuse_a_link_into(
                    Path(parent) / entry,
                    root,
                    top,
                    "listed twice or, as a loop, endlessly: remove the link (links to folders "
                    "outside the dataset folder are read)",
                )


def _refuse_a_link_into(path: Path, root: Path, top: Path, why: str) -> None:
    """ValueError when ``path`` is a link into the dataset ``root`` (resolved: ``top``) or
    above it: ``<path> is a link to <target>, inside ..., so the images there would be <why>``."""
    if not path.is_symlink():
        return
    target = path.resolve()
    if target.is_relative_to(top) or top.is_relative_to(target):
        raise ValueError(
            f"{path} is a link to {target}, inside the dataset folder {root} (or above it), so "
            f"the images there would be {why}"
        )


def refuse_linked_folders(root: Path, splits: list[Path], classes: list[Path]) -> None:
    """ValueError naming a split or class folder that is a link into the dataset ``root`` (or
    above it: ``val -> train``, ``dogs -> cats``, ``train/cats -> ../test/cats``), or two split
    folders, or two class folders, that lead to one folder or one inside the other (links to
    one folder outside ``root``): the same images would be read as two splits or two classes
    (the test split as the training split). Links to folders of their own outside ``root`` are
    read, as :func:`refuse_folder_links_back` reads them below the class folders."""
    top = root.resolve()
    for folder in (*splits, *classes):
        _refuse_a_link_into(
            folder,
            root,
            top,
            "read again as another split or class (the test split could be the training "
            "split): remove the link, or replace it with a folder of its own images (split and "
            "class folders that are links to folders outside the dataset folder are read)",
        )
    _refuse_one_folder_twice(splits, "split", "splits")
    _refuse_one_folder_twice(classes, "class", "classes")


def _refuse_one_folder_twice(folders: list[Path], kind: str, kinds: str) -> None:
    """ValueError naming two of ``folders`` (split or class folders) that resolve to one
    folder, or one inside the other."""
    resolved: dict[Path, Path] = {}
    for folder in folders:
        target = folder.resolve()
        other = resolved.setdefault(target, folder)
        if other != folder:
            raise ValueError(
                f"{kind} folders {other} and {folder} lead to one folder, {target} (through "
                f"links), so its images would be read as two {kinds}: give each {kind} folder "
                "its own images"
            )
    for target, folder in resolved.items():
        outer = next((resolved[p] for p in target.parents if p in resolved), None)
        if outer is not None:
            raise ValueError(
                f"{kind} folder {folder} leads to {target}, inside {outer} (which leads to "
                f"{outer.resolve()}), through links, so its images would be read as two "
                f"{kinds}: give each {kind} folder its own images"
            )


def refuse_images_read_twice(root: Path, files: list[str]) -> None:
    """ValueError naming two listed image ``files`` that are one file (a link to an image
    listed under another class or split, or two links to one image): it would be read as two
    images, in the training and the test split alike. A file's folder is resolved once, the
    file itself only when it is a link."""
    real_folders: dict[str, str] = {}
    seen: dict[str, str] = {}
    for file in files:
        folder, name = os.path.split(file)
        if folder not in real_folders:
            real_folders[folder] = os.path.realpath(folder)
        real = (
            os.path.realpath(file)
            if os.path.islink(file)
            else os.path.join(real_folders[folder], name)
        )
        other = seen.setdefault(real, file)
        if other != file:
            first, second = (Path(f).relative_to(root).as_posix() for f in (other, file))
            raise ValueError(
                f"{root}: {first} and {second} are one image file ({real}, through links), so "
                "it would be read as two images (and in two splits or classes): remove the "
                "link, or copy the image if it is meant to be there twice"
            )


def refuse_a_missing_csv(root_path: Path) -> None:
    """Refuse a folder that is an annotated dataset folder without its ``annotations.csv``:
    something else stands in the CSV's place, or the layout ``data export`` writes is there
    without it (read as one subfolder of images per class, either would be misread)."""
    csv_path = root_path / ANNOTATIONS
    if os.path.lexists(csv_path) and not csv_path.is_file():
        # read as a class folder it would hold no images, said misleadingly
        raise ValueError(
            f"{csv_path} {not_a_file(csv_path)}, not the CSV file of an annotated dataset "
            f"folder: replace it with the file (columns {', '.join(REQUIRED_COLUMNS)}) or move it "
            f"away to read {root_path} as one subfolder of images per class"
        )
    layout = [n for n in ("images", "masks", "dataset.json") if (root_path / n).exists()]
    if "images" in layout and len(layout) > 1:
        # torchlap's annotated layout (data export) without its CSV: read as an ImageFolder it
        # would have the classes "images" and "masks" and train to a meaningless 100 %
        raise FileNotFoundError(
            f"{root_path} looks like an annotated dataset folder ({', '.join(layout)}) but has "
            f"no {ANNOTATIONS}; restore it (columns {', '.join(REQUIRED_COLUMNS)}, optionally "
            f"{', '.join(OPTIONAL_COLUMNS)}) and run `torchlap data check {root_path}`"
        )
