"""Which images a split holds, in terms two readings of the same data compare: a folder's
image paths (as ``annotations.csv`` names them), a built-in benchmark's ``(seed, global
index)`` pairs (its image ``i`` is a function of the seed and ``i``, whatever ``n_images``;
``digits`` draws its handwritten samples from the split's own pool, so one index of another
split is the same canvas with other digits, counted as the same image).

:func:`reading_members` gives the images of a split of another reading of the data (another
seed, image count or data options) from a split already read, with the data layer's own
split rules (:func:`~torchlap.data._subsets.seeded_split` and
:func:`~torchlap.data._subsets.split_records` for a folder, the contiguous ranges of
:class:`~torchlap.data.SyntheticBenchmark`): no file is read again.

Internal to ``torchlap compare``'s check that no run is scored on images it learned from
(:mod:`torchlap.evaluate.unseen`): its inputs are datasets torchlap opened, not user input.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable
from dataclasses import replace
from typing import Any

from torch.utils.data import Subset

from torchlap.data._subsets import seeded_split, split_records
from torchlap.data.builtin import DEFAULT_N_IMAGES, SyntheticBenchmark, builtin_dataset
from torchlap.data.folder import AnnotatedFolder

__all__ = ["reading_members", "split_members"]

#: a folder's split fractions when the reading gives none (AnnotatedFolder's default)
_FOLDER_FRACTIONS = inspect.signature(AnnotatedFolder.__init__).parameters["split_fractions"]


def split_members(dataset: Any) -> frozenset[Hashable] | None:
    """The images of ``dataset`` (a split of a folder or of a built-in benchmark, or a
    ``Subset`` of one, as an evaluation cuts it); ``None`` for another kind of dataset."""
    indices = None
    if isinstance(dataset, Subset):
        dataset, indices = dataset.dataset, list(dataset.indices)
    rows = indices if indices is not None else range(len(dataset))
    if isinstance(dataset, AnnotatedFolder):
        return frozenset(dataset.records[i].image for i in rows)
    if isinstance(dataset, SyntheticBenchmark):
        return frozenset((dataset.seed, dataset.offset + i) for i in rows)
    return None


def reading_members(
    dataset: Any, split: str, *, seed: int, n_images: int | None = None, **options: Any
) -> frozenset[Hashable] | None:
    """The images of ``split`` of the data ``dataset`` (a split, or a ``Subset`` of one) was
    read from, as reading it with ``seed``, ``n_images`` and ``options`` (the keyword
    arguments of :func:`~torchlap.data.load_dataset`) would give them, in the terms of
    :func:`split_members`; ``None`` for another kind of dataset. A folder whose
    ``annotations.csv`` gives each image's split keeps it whatever the seed."""
    if isinstance(dataset, Subset):
        dataset = dataset.dataset
    if isinstance(dataset, SyntheticBenchmark):
        count = DEFAULT_N_IMAGES if n_images is None else n_images
        other = builtin_dataset(dataset.name, split=split, image_size=dataset.size, seed=seed,
                                n_images=count, **options)  # fmt: skip
        return split_members(other)
    if not isinstance(dataset, AnnotatedFolder):
        return None
    records = dataset.records_all
    if not dataset.split_given:
        fractions = options.get("split_fractions", _FOLDER_FRACTIONS.default)
        assignment = seeded_split(records, fractions, seed)
        records = [replace(record, split=assignment[record.image]) for record in records]
    return frozenset(record.image for record in split_records(records, split, n_images, seed))
