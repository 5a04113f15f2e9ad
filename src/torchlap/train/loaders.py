"""The data of a training run: its three splits and their resumable, seeded loaders.

Training batches are class-balanced when the run says so (``TrainConfig.uses_balanced_batches``,
:class:`~torchlap.train.sampling.EpochOrderSampler`); validation and test loaders give every
image once, over all the processes of a multi-process run (no padding: a process may hold one
image fewer).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from torchlap.data import AnnotatedFolder, SyntheticBenchmark, collate_regions, load_dataset
from torchlap.runs import CONFIG_FILE, is_run_config
from torchlap.train.config import TrainConfig
from torchlap.train.sampling import EpochOrderSampler, ResumableBatchSampler, SeededItems
from torchlap.train.shuffled import ShuffledLabels

__all__ = ["dataset_labels", "has_regions", "load_splits", "loader_factory"]

SPLITS = ("train", "val", "test")


def load_splits(config: TrainConfig) -> dict[str, Any]:
    """The train, val and test datasets of ``config`` (training labels permuted for the data
    randomization test); raises ``ValueError`` on an empty split or classes that differ. A
    folder's ``annotations.csv`` is parsed and its image headers read once for the three
    (:meth:`~torchlap.data.AnnotatedFolder.with_split`)."""
    data = Path(config.data)
    if data.is_dir() and is_run_config(data / CONFIG_FILE):  # runs owns the run-folder format
        raise ValueError(
            f"{data} is a torchlap run folder ({CONFIG_FILE} of torchlap train), not a dataset: "
            "pass the data a run is trained on "
            "(a built-in name, or a folder with annotations.csv or one subfolder per class)"
        )
    datasets: dict[str, Any] = {}
    kwargs = dict(config.data_options)
    if config.n_images is not None:
        kwargs["n_images"] = config.n_images
    for split in SPLITS:
        if isinstance(datasets.get("train"), AnnotatedFolder):  # its CSV and headers read once
            datasets[split] = datasets["train"].with_split(split)
        else:
            datasets[split] = load_dataset(
                config.data, split=split, image_size=config.image_size, seed=config.seed, **kwargs
            )
        if len(datasets[split]) == 0:
            raise ValueError(f"the {split} split of {config.data!r} is empty")
        if "split_fractions" in config.data_options and getattr(
            datasets[split], "split_given", False
        ):  # recorded in config.json, it would claim a split that did not happen
            raise ValueError(
                f"--data-option split_fractions would be ignored: {config.data!r} gives each "
                "image's split (annotations.csv's split column); leave it out, or drop the "
                "column to have torchlap split the images"
            )
    if config.shuffle_labels:  # data randomization test: permuted training labels only
        train = datasets["train"]
        datasets["train"] = ShuffledLabels(train, seed=config.seed, labels=dataset_labels(train))
    classes = list(datasets["train"].classes)
    for split in ("val", "test"):
        if list(datasets[split].classes) != classes:
            raise ValueError(
                f"the {split} split of {config.data!r} has classes {datasets[split].classes}, "
                f"the train split {classes}"
            )
    return datasets


def has_regions(dataset: Any) -> bool:
    """Whether any sample of ``dataset`` carries a region (a box or a mask): an annotated
    folder whose box columns are empty on every row has region columns but no region."""
    if isinstance(dataset, SyntheticBenchmark):
        return True  # the built-in benchmarks all have exact regions
    flag = getattr(dataset, "has_regions", None)  # annotated and image folders say it
    records = getattr(dataset, "records", None)
    if flag is True and isinstance(records, list):
        return any(getattr(r, "boxes", None) or getattr(r, "mask", None) for r in records)
    if isinstance(flag, bool):
        return flag
    # no summary attribute: look at the samples (a generic dataset only gives whole samples)
    return any(bool(dataset[i]["has_region"]) for i in range(len(dataset)))


def dataset_labels(dataset: Any) -> torch.Tensor:
    """The class index of every sample of ``dataset`` (int64), read without loading images
    where the dataset tells them: the permuted labels of the data randomization test, the
    built-in benchmarks' rule (image index mod classes), an annotated folder's records; any
    other dataset is read sample by sample (its RNG use kept from the caller's streams)."""
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, torch.Tensor) and tuple(labels.shape) == (len(dataset),):
        return labels.to(torch.int64)
    if isinstance(dataset, SyntheticBenchmark):
        return (dataset.offset + torch.arange(len(dataset))) % len(dataset.classes)
    records, to_index = getattr(dataset, "records", None), getattr(dataset, "class_to_index", None)
    if isinstance(to_index, dict) and records is not None and len(records) == len(dataset):
        return torch.tensor([to_index[record.label] for record in records], dtype=torch.int64)
    with torch.random.fork_rng(devices=[]):
        return torch.tensor([int(dataset[i]["label"]) for i in range(len(dataset))])


def loader_factory(
    datasets: dict[str, Any], config: TrainConfig, pin_memory: bool
) -> Callable[..., Any]:
    """``make_loader(split, phase, rank, world_size, skip)`` for :class:`ClassifierModule`:
    the split's per-rank loader in a seeded order that a resumed run repeats (class-balanced
    training batches with ``config.uses_balanced_batches``; every val/test image once)."""
    wrapped = {split: SeededItems(ds) for split, ds in datasets.items()}
    train_labels = dataset_labels(datasets["train"]) if config.uses_balanced_batches else None

    def make_loader(split: str, phase: int, rank: int, world_size: int, skip: int) -> Any:
        if config.batch_size % world_size:
            raise ValueError(
                f"--batch-size {config.batch_size} is the global batch; it must be divisible "
                f"by the number of processes ({world_size})"
            )
        per_rank = config.batch_size // world_size
        train = split == "train"
        sampler = EpochOrderSampler(
            len(wrapped[split]),
            config.seed,
            phase if train else 0,
            shuffle=True,
            rank=rank,
            world_size=world_size,
            follow_epoch=train,
            pad=train,  # metrics count every val/test image once
            labels=train_labels if train else None,
            batch_size=config.batch_size,
        )
        # a last training batch of one sample would break batch norm: drop it
        drop_last = train and len(sampler) % per_rank == 1
        batches = ResumableBatchSampler(sampler, per_rank, drop_last=drop_last)
        if skip:
            batches.skip_batches(skip)
        return DataLoader(
            wrapped[split],
            batch_sampler=batches,
            num_workers=config.num_workers,
            collate_fn=collate_regions,
            pin_memory=pin_memory,
            persistent_workers=False,
        )

    return make_loader
