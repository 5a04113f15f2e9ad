"""A run is never scored on the images it learned from: when its own training data is read
with settings other than its own (``torchlap compare --data`` reads every run alike, with
split seed 0 and the default image count when the runs differ), the images evaluated are
checked against the run's training and validation splits, read its own way.

Before, nothing checked them: a folder without a split column is split by the seed, so a run
trained with ``--seed 1`` had most of the test images of split seed 0 in its training split,
and a built-in benchmark of ``--n-images 2500`` trained on the test images of the default
2000. The members are listed by the data layer's own split rules
(:func:`torchlap.data.members.reading_members`), from the split already opened: no file is read
again, and a folder whose ``annotations.csv`` gives each image's split passes whatever the
seeds.
"""

from __future__ import annotations

from typing import Any

from torchlap.data.members import reading_members, split_members
from torchlap.evaluate.provenance import data_settings

__all__ = ["check_unseen"]

_NAMES = {"train": "training", "val": "validation"}
#: the run's splits checked against each evaluated split (``--split train`` evaluates training
#: images on purpose, ``--split val`` validation images, as with the run's own reading)
_LEARNED = {"test": ("train", "val"), "val": ("train",)}


def check_unseen(run: Any, opened: Any, data: str) -> None:
    """ValueError when ``opened`` (an :class:`~torchlap.evaluate.split_data.OpenedSplit` of
    ``data`` for ``run``, a :class:`~torchlap.runs.RunFacts`) holds images of ``run``'s
    training split, or of its validation split (which chose its epoch) unless the validation
    split is the one evaluated (``--split val`` evaluates the run's own, noted; ``--split
    train`` its training images, nothing is checked). Nothing to
    check when ``data`` is read the run's own way (its test split is none of them) or is not
    the run's training data; nor for a dataset whose images cannot be listed."""
    own = data_settings(run.config, data)
    splits = _LEARNED.get(opened.split, ())
    if opened.settings.own or not own.own or not splits:
        return
    evaluated = split_members(opened.dataset)
    learned = {split: _members(opened, split, own) for split in splits}
    if evaluated is None or any(members is None for members in learned.values()):
        return
    counts = {split: len(evaluated & members) for split, members in learned.items() if members}
    if not any(counts.values()):
        return
    where = " and ".join(f"{n} in its {_NAMES[s]} split" for s, n in counts.items() if n)
    raise ValueError(
        f"{sum(counts.values())} of the {len(evaluated)} images of the {opened.split} split of "
        f"{data} read with {opened.settings.describe()} (the images every run is evaluated on) "
        f"are images this run learned from ({where}, read as it was trained: "
        f"{own.describe()}), so its scores would count them as unseen; compare runs trained "
        "with the same split seed, n_images and data options, or evaluate them on a folder "
        "whose annotations.csv gives each image's split (a split column)"
    )


def _members(opened: Any, split: str, own: Any) -> frozenset | None:
    """The images of the run's ``split`` as it read it (its own settings ``own``)."""
    options = dict(own.data_options)
    return reading_members(opened.dataset, split, seed=own.seed, n_images=own.n_images, **options)
