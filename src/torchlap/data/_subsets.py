"""Subsets of a folder dataset's records, class-stratified and seeded: the train/val/test split
(when the data gives none) and the ``n_images`` cut of one split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from torchlap._checks import check_int, check_seed
from torchlap.data._base import check_split_fractions, split_counts
from torchlap.data.annotations import ImageRecord

__all__ = [
    "check_cut_keeps_classes",
    "first_images",
    "seeded_split",
    "split_records",
    "stratified_cut",
]


def seeded_split(
    records: Sequence[ImageRecord], fractions: Sequence[float], seed: int
) -> dict[str, str]:
    """Assign each image to train/val/test, stratified by label, reproducibly from ``seed``.

    Per class (in sorted order), images sorted by path are shuffled by a torch.Generator
    seeded with ``seed`` (an int) and cut by ``split_counts``; every class with at least one
    image gets at least one training image. Returns ``{image path: split}``.
    """
    fractions = check_split_fractions(fractions)
    check_seed(seed)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    by_label: dict[str, list[str]] = {}
    for record in records:
        by_label.setdefault(record.label, []).append(record.image)
    assignment: dict[str, str] = {}
    for label in sorted(by_label):
        images = sorted(by_label[label])
        order = torch.randperm(len(images), generator=generator).tolist()
        n_train, n_val, _ = split_counts(len(images), fractions)
        if n_train == 0:  # tiny class: take its training image from val (or else test)
            n_train, n_val = 1, max(0, n_val - 1)
        for position, k in enumerate(order):
            split = (
                "train" if position < n_train else "val" if position < n_train + n_val else "test"
            )
            assignment[images[k]] = split
    return assignment


def split_records(
    records: Sequence[ImageRecord], split: str, n_images: int | None, seed: int
) -> list[ImageRecord]:
    """The records of ``split`` (each record's ``split`` assigned), cut to ``n_images`` by
    :func:`stratified_cut` (``None``: all of them), in CSV order."""
    in_split = [r for r in records if r.split == split]
    return in_split if n_images is None else stratified_cut(in_split, n_images, seed)


def stratified_cut(records: Sequence[ImageRecord], n_images: int, seed: int) -> list[ImageRecord]:
    """At most ``n_images`` of ``records`` (one split), class-stratified and seeded.

    Per class (in sorted order), the images sorted by path are shuffled by a torch.Generator
    seeded with ``seed``; the k-th image of a class of c images is ranked k / c, and the
    ``n_images`` lowest ranks are kept (ties by class name). So every class of the split gets
    one image before any gets a second, and the classes keep their shares otherwise. The
    result does not depend on the CSV's row order and is the same for the same ``seed``; the
    kept records stay in their CSV order. ``n_images`` >= ``len(records)`` keeps them all.
    """
    records = list(records)
    if n_images >= len(records):
        return records
    generator = torch.Generator(device="cpu").manual_seed(seed)
    by_label: dict[str, list[int]] = {}
    for position, record in enumerate(records):
        by_label.setdefault(record.label, []).append(position)
    ranked: list[tuple[float, str, int]] = []
    for label in sorted(by_label):
        positions = sorted(by_label[label], key=lambda p: records[p].image)
        order = torch.randperm(len(positions), generator=generator).tolist()
        ranked += [(k / len(positions), label, positions[i]) for k, i in enumerate(order)]
    kept = sorted(position for _, _, position in sorted(ranked)[:n_images])
    return [records[p] for p in kept]


def first_images(dataset: Any, n_images: int, seed: int) -> list[int]:
    """Indices of at most ``n_images`` images of ``dataset`` (a split), for a shorter evaluation.

    A folder dataset (one with ``records``, in CSV order) gets :func:`stratified_cut`'s
    class-stratified, seeded choice, so that a CSV listing all cats before all dogs does not
    give cats only; other datasets their first ``n_images`` (the built-in benchmarks cycle their
    labels, so their first images are balanced already). Indices in dataset order.
    """
    check_int(n_images, "n_images", minimum=1)
    check_seed(seed)
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"dataset must be a dataset (with len() and indexing), got {type(dataset).__name__}"
        )
    records = getattr(dataset, "records", None)
    if records is None or n_images >= len(records):
        return list(range(min(n_images, len(dataset))))
    kept = {id(record) for record in stratified_cut(records, n_images, seed)}
    return [i for i, record in enumerate(records) if id(record) in kept]


def check_cut_keeps_classes(
    split_records: Sequence[ImageRecord], kept: Sequence[ImageRecord], n_images: int, source: str
) -> None:
    """ValueError when the cut training split lost a class the split has: a model cannot learn
    a class it never sees (val and test may lack a class)."""
    labels = sorted({r.label for r in split_records})
    lost = sorted(set(labels) - {r.label for r in kept})
    if lost:
        raise ValueError(
            f"{source}: n_images={n_images} keeps {len(kept)} of the {len(split_records)} "
            f"training images, so label(s) {lost} would have no training image; a model cannot "
            f"learn a class it never sees: use n_images >= {len(labels)} (the cut is "
            "class-stratified: every class gets one image first)"
        )
