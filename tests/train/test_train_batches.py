"""Which images a process sees: class-balanced training batches (paper 000, Appendix A) and
validation/test shards that hold every image once (no padded duplicates in the metrics)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from train_configs import tiny_config

from torchlap.data import export_builtin, load_dataset
from torchlap.runs import load_run
from torchlap.train.loaders import dataset_labels, load_splits, loader_factory
from torchlap.train.run import _check_split_sizes
from torchlap.train.sampling import EpochOrderSampler, ResumableBatchSampler
from torchlap.train.shuffled import ShuffledLabels

# 10 of class 0, 3 of class 1 (rare), 20 of class 2, interleaved
LABELS = [0] * 10 + [1] * 3 + [2] * 20


def _balanced(rank: int = 0, world: int = 1, epoch: int = 0, **kw) -> EpochOrderSampler:
    options = {"seed": 4, "labels": LABELS, "batch_size": 6, **kw}
    sampler = EpochOrderSampler(len(LABELS), rank=rank, world_size=world, **options)
    sampler.set_epoch(epoch)
    return sampler


def _batches(sampler: EpochOrderSampler, size: int, skip: int = 0) -> list[list]:
    batches = ResumableBatchSampler(sampler, size)
    if skip:
        batches.skip_batches(skip)
    return list(batches)


def _counts(indices: list[int]) -> list[int]:
    found = Counter(LABELS[i] for i in indices)
    return [found[c] for c in range(3)]


# --------------------------------------------------------------------------- balanced batches
def test_every_batch_draws_the_classes_in_equal_shares() -> None:
    """Paper 000, Appendix A: "batches of size 64 (32 healthy and 32 pneumonia samples)"."""
    sampler = _balanced()
    batches = [[i for _, i in batch] for batch in _batches(sampler, 6)]
    assert len(sampler) == len(LABELS) and sum(map(len, batches)) == len(LABELS)  # same epoch
    assert [_counts(b) for b in batches[:5]] == [[2, 2, 2]] * 5
    assert sorted(_counts(batches[5])) == [1, 1, 1]  # the last 3 of 33: one each
    # a batch size the class count does not divide: the remainder goes to the classes in turn
    batches = [[i for _, i in batch] for batch in _batches(_balanced(batch_size=4), 4)]
    rows = [_counts(b) for b in batches]
    assert all(max(row) - min(row) <= 1 for row in rows)
    totals = [sum(row[c] for row in rows) for c in range(3)]
    assert max(totals) - min(totals) <= 1  # over the epoch the classes get the same draws
    # the rare class is drawn again (in a new order), the frequent one only partly
    drawn = Counter(i for b in batches for i in b)
    assert {drawn[i] for i in range(10, 13)} >= {3} and len([i for i in drawn if i >= 13]) < 20


def _balanced_reference(labels: torch.Tensor, size: int, total: int, stream) -> torch.Tensor:
    """The balanced order written out batch by batch and class by class (the sampler computes
    it with tensor arithmetic): per batch ``base = size // n`` draws of every class and one
    more for the ``size % n`` classes from the batch's start class on, which moves on by that
    remainder each batch; within a batch the classes in turn from the batch index on."""
    classes = sorted(set(labels.tolist()))
    n = len(classes)
    sizes = [size] * (total // size) + ([total % size] if total % size else [])
    rows, start = [], 0
    for batch in sizes:
        base, extra = divmod(batch, n)
        rows.append([base + (1 if (k - start) % n < extra else 0) for k in range(n)])
        start = (start + extra) % n
    streams = [stream(label, sum(row[k] for row in rows)) for k, label in enumerate(classes)]
    taken, order = [0] * n, []
    for j, row in enumerate(rows):
        for offset in range(n):
            k = (j + offset) % n
            order += streams[k][taken[k] : taken[k] + row[k]].tolist()
            taken[k] += row[k]
    return torch.tensor(order, dtype=torch.int64)


@pytest.mark.parametrize(
    ("n_items", "n_classes", "batch_size", "world"),
    [(7, 3, 4, 2), (33, 10, 4, 1), (100, 2, 6, 2), (257, 5, 32, 1), (5, 1, 2, 2)],
)
def test_the_balanced_order_equals_a_batch_by_batch_reference(
    n_items: int, n_classes: int, batch_size: int, world: int
) -> None:
    labels = torch.randint(0, n_classes, (n_items,), generator=torch.Generator().manual_seed(1))
    for pad in (True, False):
        sampler = EpochOrderSampler(n_items, seed=3, phase=1, world_size=world, pad=pad,
                                    labels=labels, batch_size=batch_size)  # fmt: skip
        sampler.set_epoch(2)
        total = math.ceil(n_items / world) * world if pad else n_items

        def stream(label: int, count: int, sampler=sampler) -> torch.Tensor:  # its seeded streams
            members = torch.tensor([i for i, v in enumerate(labels.tolist()) if v == label])
            return sampler._class_stream(label, members, count)

        expected = _balanced_reference(labels, batch_size, total, stream)
        assert torch.equal(sampler.global_order(), expected)


def test_balanced_orders_are_seeded_per_epoch_and_resume_where_they_stopped() -> None:
    assert _batches(_balanced(epoch=2), 6) == _batches(_balanced(epoch=2), 6)
    assert _batches(_balanced(epoch=2), 6) != _batches(_balanced(epoch=3), 6)
    assert _batches(_balanced(epoch=2, seed=5), 6) != _batches(_balanced(epoch=2), 6)
    assert _batches(_balanced(epoch=2), 6, skip=3) == _batches(_balanced(epoch=2), 6)[3:]
    # a sample drawn twice in an epoch gets two item seeds (two different augmentations)
    pairs = [pair for batch in _batches(_balanced(), 6) for pair in batch]
    assert len({seed for seed, _ in pairs}) == len(pairs)


@pytest.mark.parametrize("world", [2, 3])
def test_balanced_ranks_split_each_global_batch_and_are_balanced(world: int) -> None:
    """The ranks' j-th batches together are the single-process j-th batch, and each rank's
    batch draws the classes in equal shares too (Eq. 5 counts them per process)."""
    single = _batches(_balanced(), 6)
    ranks = [_batches(_balanced(rank=r, world=world), 6 // world) for r in range(world)]
    for j, batch in enumerate(single[:-1]):  # (the last one is padded for several ranks)
        assert sorted(p for r in range(world) for p in ranks[r][j]) == sorted(batch)
        for r in range(world):
            row = _counts([i for _, i in ranks[r][j]])
            assert max(row) - min(row) <= 1, (j, r, row)
    assert len({len(r) for r in ranks}) == 1  # every rank takes the same number of steps


def test_balanced_sampler_refuses_bad_labels_and_batch_size() -> None:
    with pytest.raises(ValueError, match="labels must be 3 class indices"):
        EpochOrderSampler(3, labels=[0, 1], batch_size=2)
    with pytest.raises(ValueError, match="labels must be 3 class indices"):
        EpochOrderSampler(3, labels=[0.5, 1, 0], batch_size=2)
    with pytest.raises(ValueError, match=r"divisible by world_size \(2\), got 3"):
        EpochOrderSampler(3, labels=[0, 1, 0], batch_size=3, world_size=2)


# ------------------------------------------------------------------- val/test: no padding
def test_evaluation_shards_hold_every_item_once() -> None:
    """Padding val/test repeated images: 7 test images were scored as 8 with 2 processes."""
    orders = [
        EpochOrderSampler(7, shuffle=False, rank=r, world_size=3, pad=False).order().tolist()
        for r in range(3)
    ]
    assert orders == [[0, 3, 6], [1, 4], [2, 5]]
    lengths = [len(EpochOrderSampler(7, rank=r, world_size=3, pad=False)) for r in range(3)]
    assert lengths == [3, 2, 2]
    shuffled = [EpochOrderSampler(7, seed=3, rank=r, world_size=2, pad=False) for r in (0, 1)]
    assert sorted(i for s in shuffled for i in s.order().tolist()) == list(range(7))


def test_loaders_balance_training_batches_and_shard_evaluation_without_padding(
    tmp_path: Path,
) -> None:
    config = tiny_config(tmp_path / "run", n_images=70, batch_size=4, seed=3)
    datasets = load_splits(config)
    assert len(datasets["test"]) % 2 == 1  # an odd split: the case padding got wrong
    make_loader = loader_factory(datasets, config, pin_memory=False)
    for split in ("val", "test"):
        shards = [make_loader(split, 0, r, 2, 0).batch_sampler.sampler.order() for r in (0, 1)]
        assert sorted(torch.cat(shards).tolist()) == list(range(len(datasets[split])))
    labels = dataset_labels(datasets["train"])
    for rank in (0, 1):
        loader = make_loader("train", 0, rank, 2, 0)
        for batch in list(loader.batch_sampler)[:-1]:
            assert sorted(Counter(int(labels[i]) for _, i in batch).values()) == [1, 1]
    random_batches = tiny_config(tmp_path / "r", n_images=70, batch_size=4, balanced_batches=False)
    sampler = loader_factory(datasets, random_batches, False)("train", 0, 0, 1, 0).batch_sampler
    assert sampler.sampler.labels is None


def test_dataset_labels_are_the_samples_labels(tmp_path: Path) -> None:
    for name in ("lesions", "digits"):
        dataset = load_dataset(name, split="val", image_size=32, n_images=60, seed=2)
        expected = [int(dataset[i]["label"]) for i in range(len(dataset))]
        assert dataset_labels(dataset).tolist() == expected
    shuffled = ShuffledLabels(load_dataset("lesions", image_size=32, n_images=40), seed=1)
    assert dataset_labels(shuffled).tolist() == [s["label"] for s in shuffled]
    export_builtin("concepts", tmp_path / "folder", n_images=30, image_size=32)
    folder = load_dataset(str(tmp_path / "folder"), split="train")
    assert dataset_labels(folder).tolist() == [int(s["label"]) for s in folder]

    class Plain(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> dict:
            return {"label": torch.tensor(index % 2)}

    assert dataset_labels(Plain()).tolist() == [0, 1, 0]


def test_two_processes_score_each_validation_and_test_image_once(tmp_path: Path) -> None:
    """With 2 CPU processes, metrics.json's test and validation numbers are those of the kept
    model over the real images, computed on one process (they counted a padded duplicate)."""
    out = tmp_path / "ddp"
    args = [sys.executable, "-m", "torchlap.cli", "train", "--data", "lesions", "--out", str(out)]
    args += ["--arch", "smallcnn", "--lap", "none", "--supervision", "none", "--epochs", "1"]
    args += ["--image-size", "32", "--batch-size", "4", "--n-images", "70", "--seed", "3"]
    args += ["--keep-epoch", "last", "--no-progress", "--accelerator", "cpu", "--devices", "2"]
    result = subprocess.run(
        [*args, "--strategy", "ddp"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    model = load_run(out).model.eval()
    for split, numbers in (("test", metrics["test"]), ("val", metrics["epochs"][-1]["val"])):
        data = load_dataset("lesions", split=split, image_size=32, n_images=70, seed=3)
        assert len(data) % 2 == 1
        images = torch.stack([data[i]["image"] for i in range(len(data))])
        labels = torch.tensor([int(data[i]["label"]) for i in range(len(data))])
        with torch.no_grad():
            logits = model(images)
        expected = float(F.cross_entropy(logits, labels))
        assert math.isclose(numbers["loss_cross_entropy"], expected, rel_tol=1e-5), split
        accuracy = float((logits.argmax(1) == labels).float().mean())
        assert math.isclose(numbers["accuracy"], accuracy, abs_tol=1e-6), split


def test_a_split_smaller_than_the_process_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"the val split has 1 image\(s\) for 2 processes"):
        _check_split_sizes({"val": [0], "test": [0, 1]}, 2)
    _check_split_sizes({"val": [0, 1], "test": [0, 1]}, 2)
