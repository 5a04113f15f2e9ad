"""The gathering side of the sharded evaluation, in one process: each rank is a thread and the
collectives of ``torch.distributed`` are stood in for by a small exchange between the threads
(every rank gets every rank's object or tensor, in rank order, as the real all-gather and
broadcast give them). What is checked is the definition of the gather: every rank's rows
concatenated in rank order, on every rank, whatever the ranks' row counts (none, zero, uneven);
rank 0's value on every rank for a broadcast; and the refusals."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import Tensor

from torchlap.evaluate.shard import (
    ShardContext,
    active,
    broadcast_from_zero,
    gather_rows,
    is_writer,
    on_rank_zero,
    sharding,
)

CPU = torch.device("cpu")


class _Exchange:
    """What ``world`` ranks (threads) put in, every rank gets back, in rank order."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.barrier = threading.Barrier(world, timeout=20)
        self.slots: list[Any] = [None] * world
        self.rank = threading.local()

    def _swap(self, value: Any) -> list[Any]:
        self.slots[self.rank.value] = value
        self.barrier.wait()
        every = [copy.deepcopy(slot) for slot in self.slots]
        self.barrier.wait()  # nobody writes the next round before all have read this one
        return every

    def all_gather_object(self, out: list, obj: Any) -> None:
        assert len(out) == self.world
        out[:] = self._swap(obj)

    def all_gather(self, parts: list[Tensor], tensor: Tensor) -> None:
        every = self._swap(tensor.clone())
        for part, other in zip(parts, every, strict=True):
            assert part.shape == other.shape and part.dtype == other.dtype  # as gloo requires
            part.copy_(other)


def _on_ranks(world: int, work: Callable[[int], Any], monkeypatch) -> list[Any]:
    """``work(rank)`` on ``world`` threads exchanging through the stand-in collectives;
    returns each rank's value (or the exception it raised)."""
    exchange = _Exchange(world)
    for name in ("all_gather_object", "all_gather"):
        monkeypatch.setattr(dist, name, getattr(exchange, name))
    results: list[Any] = [None] * world

    def run(rank: int) -> None:
        exchange.rank.value = rank
        try:
            results[rank] = work(rank)
        except Exception as error:  # handed to the test
            results[rank] = error

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results


def _rows(rank: int, count: int | None, width: int = 3) -> Tensor | None:
    if count is None:
        return None
    return torch.arange(count * width, dtype=torch.float32).reshape(count, width) + 100 * rank


@pytest.mark.parametrize(
    "counts",
    [(2, 3), (3, 1, 2), (2, None, 3), (None, 4), (4, None), (0, 2, 0), (1, 1, 1, 1), (5,)],
)
def test_every_rank_gets_every_ranks_rows_in_rank_order(counts, monkeypatch) -> None:
    world = len(counts)
    expected = torch.cat([r for rank, c in enumerate(counts) if (r := _rows(rank, c)) is not None])

    def work(rank: int) -> Tensor:
        return gather_rows(_rows(rank, counts[rank]), ShardContext(rank, world, CPU))

    for got in _on_ranks(world, work, monkeypatch):
        assert isinstance(got, Tensor), got
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        assert got.device == CPU


def test_rows_of_more_or_fewer_dimensions_and_another_dtype_keep_them(monkeypatch) -> None:
    local = [torch.full((2, 2, 3), 7, dtype=torch.int64), None, torch.ones(1, 2, 3).long()]

    def work(rank: int) -> Tensor:
        return gather_rows(local[rank], ShardContext(rank, 3, CPU))

    expected = torch.cat([local[0], local[2]])
    for got in _on_ranks(3, work, monkeypatch):
        assert got.dtype == torch.int64
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    flat = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]  # one value per image

    def work_flat(rank: int) -> Tensor:
        return gather_rows(flat[rank], ShardContext(rank, 2, CPU))

    for got in _on_ranks(2, work_flat, monkeypatch):
        torch.testing.assert_close(got, torch.tensor([1.0, 2.0, 3.0]), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("local", "message"),
    [
        ([None, None], r"gather_rows: no rank has any rows to gather"),
        ([torch.zeros(2, 3), torch.zeros(1, 4)], r"ranks hold rows of different shapes or dtypes"),
        (
            [torch.zeros(2, 3), torch.zeros(1, 3, dtype=torch.float64)],
            r"ranks hold rows of different shapes or dtypes",
        ),
    ],
)
def test_rows_that_cannot_be_gathered_are_refused_on_every_rank(
    local, message, monkeypatch
) -> None:
    def work(rank: int) -> Tensor:
        return gather_rows(local[rank], ShardContext(rank, 2, CPU))

    for got in _on_ranks(2, work, monkeypatch):
        assert isinstance(got, ValueError), got  # on each rank, none left waiting
        with pytest.raises(ValueError, match=message):
            raise got


def test_rank_zeros_value_reaches_every_rank_and_is_computed_once(monkeypatch) -> None:
    # a broadcast from rank 0 is a one-way message: the ranks can run one after the other,
    # rank 0 first, each with its own sharding active
    sent: list[Any] = []  # rank 0's broadcasts, in order
    received: dict[int, int] = {}  # per other rank: how many it has received

    def broadcast_object_list(box: list, src: int = 0) -> None:
        context = active()
        assert src == 0 and context is not None and len(box) == 1
        if context.rank == 0:
            sent.append(copy.deepcopy(box[0]))
        else:
            assert box == [None]  # the other ranks send nothing
            index = received.get(context.rank, 0)
            received[context.rank] = index + 1
            box[0] = copy.deepcopy(sent[index])

    monkeypatch.setattr(dist, "broadcast_object_list", broadcast_object_list)
    computed: list[int] = []

    def compute() -> dict:
        computed.append(active().rank)  # type: ignore[union-attr]
        return {"value": 10 + len(computed)}

    results = []
    for rank in range(3):
        with sharding(ShardContext(rank, 3, CPU)):
            results.append((broadcast_from_zero([rank]), on_rank_zero(compute), is_writer()))
    assert results == [([0], {"value": 11}, True), ([0], {"value": 11}, False),
                       ([0], {"value": 11}, False)]  # fmt: skip
    assert computed == [0]


def test_one_process_computes_alone_and_writes(monkeypatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("no collective without sharding")

    monkeypatch.setattr(dist, "broadcast_object_list", fail)
    assert active() is None and is_writer()
    assert broadcast_from_zero([1, 2]) == [1, 2] and on_rank_zero(lambda: 5) == 5
    alone = ShardContext(0, 1, CPU)
    with sharding(alone) as context:
        assert context is alone and active() is alone and is_writer()
        assert broadcast_from_zero("x") == "x" and on_rank_zero(lambda: 6) == 6
        with sharding(ShardContext(1, 2, CPU)):
            assert not is_writer()
        assert active() is alone
    assert active() is None
