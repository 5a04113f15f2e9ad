"""Deterministic, resumable, rank-aware batching.

Why not ``RandomSampler`` + Lightning's automatic ``DistributedSampler``: their order depends on
a generator's running state, which a checkpoint does not hold, so a resumed run would see other
batches than an uninterrupted one. Here the order of epoch ``e`` is a pure function of
``(seed, phase, e)``; the ranks of a DDP run take interleaved slices of the same global order
(rank ``r`` takes positions ``r, r + W, ...``), so the union of the ranks' ``j``-th batches is the
single-process run's ``j``-th batch of size ``W * batch_size``; a resumed epoch can skip the
batches it already trained on without loading them.

Training pads the global order to a multiple of ``W`` (every rank takes the same number of
steps); validation and test do not (``pad=False``): a rank may hold one item fewer, so that
their metrics count every image once (the metric states are sums, gathered over the ranks).

Class-balanced training batches (``labels``, paper 000 Appendix A: "batches of size 64 (32
healthy and 32 pneumonia samples)"): every global batch draws the classes in equal shares (the
remainder of a batch size not divisible by the class count goes to the classes in turn, so
that over the epoch they get the same number of draws), each class from its own seeded stream
(its items in a new random order each time it runs out); the epoch keeps its length, so a
rare class is seen more than once per epoch and a frequent one not entirely. The items of a
global batch are dealt to the ranks in turn, class after class, so every rank's batch is
balanced too, and the order does not depend on the number of processes.

Every item also carries its own seed (``(seed, phase, epoch, index)``; with balanced batches
also its position, as an item may be drawn twice), which :class:`SeededItems` uses to seed the
global RNGs while the dataset loads that item, so random augmentations are the same in every
run, resumed or not, and with any number of workers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

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
        rank, world_size: this process and the number of processes.
        pad: pad the global order by repeating its first items to a multiple of
            ``world_size`` (as ``DistributedSampler`` does), so every rank has the same number
            of items (training); ``False``: every item once, the first ``n_items % world_size``
            ranks holding one item more (evaluation).
        labels: the items' class indices (``n_items`` ints): class-balanced batches of
            ``batch_size`` (the global batch, every rank's together; divisible by
            ``world_size``), see the module docstring (seeded random draws, whatever
            ``shuffle``). ``None``: a permutation of the items.

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
        pad: bool = True,
        labels: Sequence[int] | torch.Tensor | None = None,
        batch_size: int | None = None,
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
        self.pad = bool(pad)
        self.epoch = 0
        self.labels = None if labels is None else _check_labels(labels, n_items)
        self.batch_size = batch_size
        if labels is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or batch_size < 1
            or batch_size % world_size
        ):
            raise ValueError(
                f"balanced batches need batch_size, the global batch: an int >= 1 divisible by "
                f"world_size ({world_size}), got {batch_size!r}"
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields (no-op unless following)."""
        if self.follow_epoch:
            self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.n_items / self.world_size)
        return len(range(self.rank, self.n_items, self.world_size))

    def global_order(self) -> torch.Tensor:
        """Every rank's dataset indices for the current epoch (padded when ``pad``)."""
        total = math.ceil(self.n_items / self.world_size) * self.world_size
        if not self.pad:
            total = self.n_items
        if self.labels is not None:
            return self._balanced_order(total)
        if self.shuffle:
            generator = torch.Generator().manual_seed(
                derive_seed(self.seed, self.phase, self.epoch, 0x5A)
            )
            order = torch.randperm(self.n_items, generator=generator)
        else:
            order = torch.arange(self.n_items)
        if total > self.n_items:
            order = torch.cat([order, order[: total - self.n_items]])
        return order

    def order(self) -> torch.Tensor:
        """This rank's dataset indices for the current epoch (interleaved)."""
        return self.global_order()[self.rank :: self.world_size]

    def _balanced_order(self, total: int) -> torch.Tensor:
        """``total`` indices in global batches of ``batch_size`` whose classes are balanced;
        in each batch, the classes one after the other (starting with a class that turns with
        the batch), so that the ranks, taking every ``world_size``-th item, share them.
        Tensor arithmetic over the (batch, class) grid: no loop over batches or items."""
        labels, size = self.labels, self.batch_size
        if labels is None or size is None:
            raise RuntimeError("internal error: balanced order without labels or batch size")
        classes, members_count = torch.unique(labels, return_counts=True)
        n = len(classes)
        sizes = torch.full((total // size,), size, dtype=torch.int64)
        if total % size:
            sizes = torch.cat([sizes, torch.tensor([total % size])])
        # per batch j and class k the draws: base + 1 for the `extra` classes that follow the
        # batch's start class, which moves on by `extra` each batch (remainders in turn)
        base, extra = sizes // n, sizes % n
        start = (torch.cumsum(extra, 0) - extra) % n
        k = torch.arange(n)
        counts = base[:, None] + ((k[None, :] - start[:, None]) % n < extra[:, None]).long()
        # each class's stream of draws, one after the other (items grouped by class, in index
        # order within a class: a stable sort)
        by_class = torch.split(torch.argsort(labels, stable=True), members_count.tolist())
        needed = counts.sum(0).tolist()
        streams = [
            self._class_stream(int(label), members, count)
            for label, members, count in zip(classes.tolist(), by_class, needed, strict=True)
        ]
        stream_start = torch.cumsum(torch.tensor(needed), 0) - torch.tensor(needed)
        taken = torch.cumsum(counts, 0) - counts  # draws of class k before batch j
        # the output: batch after batch, in batch j the classes (j + 0) % n, (j + 1) % n, ...
        batch = torch.arange(len(sizes))[:, None]
        turn = (batch + k[None, :]) % n
        pair_count = counts.gather(1, turn).flatten()
        pair_start = (stream_start[turn] + taken.gather(1, turn)).flatten()
        first = torch.repeat_interleave(pair_start, pair_count)
        within = torch.arange(int(pair_count.sum())) - torch.repeat_interleave(
            torch.cumsum(pair_count, 0) - pair_count, pair_count
        )
        return torch.cat(streams)[first + within]

    def _class_stream(self, label: int, members: torch.Tensor, count: int) -> torch.Tensor:
        """The first ``count`` draws of class ``label`` (its items ``members``): its items in
        a seeded random order, a new one each time they run out."""
        if count == 0:
            return members[:0]
        generator = torch.Generator().manual_seed(
            derive_seed(self.seed, self.phase, self.epoch, 0xBA, label)
        )
        rounds = math.ceil(count / len(members))
        parts = [members[torch.randperm(len(members), generator=generator)] for _ in range(rounds)]
        return torch.cat(parts)[:count]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.labels is None:
            for index in self.order().tolist():
                yield derive_seed(self.seed, self.phase, self.epoch, index), index
            return
        order = self.global_order()
        positions = range(self.rank, len(order), self.world_size)
        indices = order[self.rank :: self.world_size].tolist()
        for position, index in zip(positions, indices, strict=True):
            yield derive_seed(self.seed, self.phase, self.epoch, index, position), index


def _check_labels(labels: Sequence[int] | torch.Tensor, n_items: int) -> torch.Tensor:
    """``labels`` as an int64 tensor of ``n_items`` class indices >= 0, else ``ValueError``."""
    try:
        tensor = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        tensor = None
    if (
        tensor is None
        or tensor.shape != (n_items,)
        or tensor.dtype.is_floating_point
        or tensor.dtype == torch.bool
        or (n_items and int(tensor.min()) < 0)
    ):
        raise ValueError(
            f"labels must be {n_items} class indices (ints >= 0, one per item), got {labels!r:.80}"
        )
    return tensor.to(torch.int64)


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
