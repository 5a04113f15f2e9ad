"""Deterministic, resumable, rank-aware batching.

Why not ``RandomSampler`` + Lightning's automatic ``DistributedSampler``: their order depends on
a generator's running state, which a checkpoint does not hold, so a resumed run would see other
batches than an uninterrupted one. Here the order of epoch ``e`` is a pure function of
``(seed, phase, e)``; the ranks of a DDP run take interleaved slices of the same global order
(rank ``r`` takes positions ``r, r + W, ...``), so the union of the ranks' ``j``-th batches is the
single-process run's ``j``-th batch of size ``W * batch_size``; a resumed epoch can skip the
batches it already trained on without loading them.

Every item also carries its own seed (``(seed, phase, epoch, index)``), which
:class:`SeededItems` uses to seed the global RNGs while the dataset loads that item, so random
augmentations are the same in every run, resumed or not, and with any number of workers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset, Sampler

__all__ = ["EpochOrderSampler", "ResumableBatchSampler", "SeededItems", "derive_seed"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (NumPy's ``SeedSequence``; no Python ``hash``)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFF_FFFF_FFFF_FFFF


class EpochOrderSampler(Sampler[tuple[int, int]]):
    """Yields this rank's ``(item_seed, dataset_index)`` pairs of the current epoch.

    Args:
        n_items: dataset length.
        seed, phase: the run's seed and the phase index (each phase has its own orders).
        shuffle: a permutation of the items (else the dataset order).
        follow_epoch: a new permutation every epoch (training); ``False`` keeps the epoch-0
            order (evaluation: a fixed shuffled order, so that no rank of a DDP run gets a
            one-class shard when labels alternate in the dataset).
        rank, world_size: this process and the number of processes. The global order is padded
            by repeating its first items to a multiple of ``world_size`` (as
            ``DistributedSampler`` does), so every rank has the same number of items.

    ``set_epoch(e)`` selects the epoch (Lightning calls it on ``batch_sampler.sampler``).
    """

    def __init__(
        self,
        n_items: int,
        seed: int = 0,
        phase: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        follow_epoch: bool = True,
    ) -> None:
        for name, value in (("n_items", n_items), ("world_size", world_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an int in [0, {world_size - 1}], got {rank!r}")
        self.n_items = n_items
        self.seed = int(seed)
        self.phase = int(phase)
        self.shuffle = bool(shuffle)
        self.rank = rank
        self.world_size = world_size
        self.follow_epoch = bool(follow_epoch)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields (no-op unless following)."""
        if self.follow_epoch:
            self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.n_items / self.world_size)

    def order(self) -> torch.Tensor:
        """This rank's dataset indices for the current epoch (padded, interleaved)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(
                derive_seed(self.seed, self.phase, self.epoch, 0x5A)
            )
            order = torch.randperm(self.n_items, generator=generator)
        else:
            order = torch.arange(self.n_items)
        total = len(self) * self.world_size
        if total > self.n_items:
            order = torch.cat([order, order[: total - self.n_items]])
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.order().tolist():
            yield derive_seed(self.seed, self.phase, self.epoch, index), index


class ResumableBatchSampler(BatchSampler):
    """``BatchSampler`` whose next iteration can start at batch ``k`` (a resumed epoch).

    ``len()`` stays the full epoch length, as Lightning counts the skipped batches as done.
    """

    def __init__(self, sampler: EpochOrderSampler, batch_size: int, drop_last: bool = False):
        super().__init__(sampler, batch_size, drop_last)
        self._skip = 0

    def skip_batches(self, count: int) -> None:
        """Start the next iteration at batch ``count`` (used once)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        self._skip = count

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        skip, self._skip = self._skip, 0
        items = list(self.sampler)
        for batch_index in range(skip, len(self)):
            yield items[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]


class SeededItems(Dataset):
    """Wraps a dataset so that item ``(seed, index)`` is loaded with the RNGs seeded by ``seed``.

    Python's ``random``, NumPy's global RNG and torch's CPU RNG are seeded for the duration of
    ``dataset[index]`` and restored afterwards, so the caller's RNG streams are untouched.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> object:
        item_seed, index = key
        py_state = random.getstate()
        np_state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                # the CPU generator only: torch.manual_seed would also queue lazy CUDA seeding
                # calls (each capturing a stack trace), costing milliseconds per item
                torch.default_generator.manual_seed(item_seed)
                random.seed(item_seed)
                np.random.seed(item_seed & 0xFFFFFFFF)
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
