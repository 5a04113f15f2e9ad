"""``AnnotatedFolder.with_split``: another split of a folder already read, from the records and
image headers read for the first (the CSV not parsed again, no header opened again), equal to
loading that split anew."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from folder_reads import count_folder_reads
from torchlap.data import AnnotatedFolder, load_dataset
from torchlap.data.export import export_builtin


@pytest.fixture(scope="module")
def lesions(tmp_path_factory) -> Path:
    """A 40-image `lesions` folder (masks for the images with a region, the split given)."""
    return export_builtin("lesions", tmp_path_factory.mktemp("ws") / "les", n_images=40,
                          image_size=32)  # fmt: skip


@pytest.fixture
def unsplit(tmp_path) -> Path:
    """A 30-image RGB folder of three classes without a split column (the seeded split)."""
    rows = [["image", "label"]]
    for index in range(30):
        colour = np.full((8 + index % 3, 10, 3), 40 * (index % 3), dtype=np.uint8)
        Image.fromarray(colour).save(tmp_path / f"{index}.png")
        rows.append([f"{index}.png", "abc"[index % 3]])
    with open(tmp_path / "annotations.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return tmp_path


def _rows(data: Path) -> list[list[str]]:
    with open(data / "annotations.csv", newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _same(view: AnnotatedFolder, fresh: AnnotatedFolder) -> None:
    assert view.split == fresh.split
    assert view.records == fresh.records and view.records_all == fresh.records_all
    assert (view.classes, view.n_channels, view.image_size) == (
        fresh.classes,
        fresh.n_channels,
        fresh.image_size,
    )
    assert (view.mean, view.std, view.split_seed) == (fresh.mean, fresh.std, fresh.split_seed)
    assert repr(view.transform) == repr(fresh.transform)
    for index in range(len(fresh)):
        torch.manual_seed(index)  # (the same draws of a training augmentation)
        got = view[index]
        torch.manual_seed(index)
        want = fresh[index]
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key])


@pytest.mark.parametrize("n_images", [None, 3])
def test_another_split_is_the_split_loaded_anew(lesions, n_images) -> None:
    first = load_dataset(lesions, split="test", image_size=32, n_images=n_images)
    for split in ("val", "train", "test"):
        _same(first.with_split(split), load_dataset(lesions, split, 32, n_images))
    assert first.split == "test"  # (the dataset it came from is unchanged)


def test_a_seeded_split_at_native_size_is_the_split_loaded_anew(unsplit) -> None:
    """The seeded split, the native size (None: the split's images differ in size or not)
    and the training augmentation follow the split."""
    options = {"image_size": None, "seed": 3}
    first = load_dataset(unsplit, split="val", **options)
    for split in ("train", "test"):
        _same(first.with_split(split), load_dataset(unsplit, split=split, **options))
    augmented = load_dataset(unsplit, split="val", image_size=16, augment=True)
    _same(augmented.with_split("train"), load_dataset(unsplit, "train", 16, augment=True))


def test_another_split_opens_no_header_and_parses_no_csv(lesions, monkeypatch) -> None:
    headers, parses = count_folder_reads(monkeypatch)
    first = load_dataset(lesions, split="test", image_size=32)
    opened = sum(headers.values())
    assert sum(parses.values()) == 1 and opened > 0 and max(headers.values()) == 1
    first.with_split("val")
    first.with_split("train")
    assert sum(parses.values()) == 1 and sum(headers.values()) == opened


def test_another_split_is_refused_as_loading_it(unsplit, lesions, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown split 'dev'; accepted splits are train, val"):
        load_dataset(lesions, split="test", image_size=32).with_split("dev")
    rows = _rows(unsplit)
    rows = [[*rows[0], "split"]] + [[*row, "train"] for row in rows[1:-1]] + [[*rows[-1], "val"]]
    with open(unsplit / "annotations.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(ValueError, match=r"the 'test' split has no images"):
        load_dataset(unsplit, split="train", image_size=16).with_split("test")
    # a cut training split that loses a class
    cut = load_dataset(unsplit, split="val", image_size=16, n_images=2)
    with pytest.raises(ValueError, match=r"n_images"):
        cut.with_split("train")


def test_an_empty_mask_of_the_other_split_is_refused(lesions, tmp_path) -> None:
    """The masks of a split's images with boxes are decoded when it is taken (as loading it
    decodes them): an empty one is refused naming the file."""
    rows = _rows(lesions)
    head = rows[0]
    boxed = next(r for r in rows[1:] if r[head.index("split")] == "val" and r[head.index("mask")])
    mask = lesions / boxed[head.index("mask")]
    saved = mask.read_bytes()
    try:
        Image.fromarray(np.zeros_like(np.asarray(Image.open(mask)))).save(mask)
        first = load_dataset(lesions, split="test", image_size=32)
        with pytest.raises(ValueError, match=rf"mask file .*{mask.name} is empty"):
            first.with_split("val")
    finally:
        mask.write_bytes(saved)
