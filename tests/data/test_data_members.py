"""Which images a split holds (:func:`torchlap.data.members.split_members`), and those of a split of
another reading of the same data (:func:`torchlap.data.members.reading_members`): the same images as
loading that reading gives, derived from a split already read."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from torch.utils.data import Subset

from tiny_runs import tiny_lesions
from torchlap.data import load_dataset
from torchlap.data.members import reading_members, split_members


def test_a_builtin_split_is_its_seed_and_global_indices() -> None:
    test = load_dataset("lesions", split="test", image_size=32, n_images=40, seed=3)
    assert split_members(test) == {(3, i) for i in range(36, 40)}
    assert split_members(Subset(test, [1, 3])) == {(3, 37), (3, 39)}


def test_another_builtin_reading_is_its_own_ranges() -> None:
    test = load_dataset("lesions", split="test", image_size=32)  # default 2000: [1800, 2000)
    larger = reading_members(test, "train", seed=0, n_images=2500)  # train: [0, 2000)
    assert split_members(test) <= larger  # the test images of 2000 are training ones of 2500
    assert not split_members(test) & reading_members(test, "train", seed=0, n_images=1000)
    assert not split_members(test) & reading_members(test, "train", seed=1, n_images=2500)
    val = reading_members(test, "val", seed=0, n_images=100, split_fractions=(0.5, 0.3, 0.2))
    assert val == {(0, i) for i in range(50, 80)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """The tiny lesions folder with its split column, and a copy without it."""
    root = tmp_path_factory.mktemp("members")
    given = tiny_lesions(root)
    seeded = root / "seeded"
    seeded.mkdir()
    with open(given / "annotations.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        (seeded / row["image"]).parent.mkdir(parents=True, exist_ok=True)
        (seeded / row["image"]).write_bytes((given / row["image"]).read_bytes())
        if row.get("mask"):
            (seeded / row["mask"]).parent.mkdir(parents=True, exist_ok=True)
            (seeded / row["mask"]).write_bytes((given / row["mask"]).read_bytes())
        del row["split"]
    with open(seeded / "annotations.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return {"given": given, "seeded": seeded}


@pytest.mark.parametrize("kind", ["given", "seeded"])
@pytest.mark.parametrize(("seed", "n_images"), [(0, None), (1, None), (2, 3)])
def test_a_folder_reading_is_what_loading_it_gives(folders, kind, seed, n_images) -> None:
    opened = load_dataset(folders[kind], split="test", image_size=32)
    for split in ("train", "val", "test"):
        loaded = load_dataset(folders[kind], split=split, image_size=32, seed=seed,
                              n_images=n_images)  # fmt: skip
        assert reading_members(opened, split, seed=seed, n_images=n_images) == split_members(loaded)
        assert split_members(loaded) == {record.image for record in loaded.records}


def test_a_given_split_is_kept_whatever_the_seed(folders) -> None:
    test = load_dataset(folders["given"], split="test", image_size=32)
    for seed in (0, 1, 7):
        assert not split_members(test) & reading_members(test, "train", seed=seed)
    seeded = load_dataset(folders["seeded"], split="test", image_size=32)
    assert split_members(seeded) & reading_members(seeded, "train", seed=1)
