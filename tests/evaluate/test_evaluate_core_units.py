"""Small pieces of the evaluation driver on their own: when a sharded evaluation warns of idle
processes (rank 0 alone, fewer batches than processes only) and results["environment"]'s count
of processes."""

from __future__ import annotations

import logging

import pytest
import torch

from torchlap.evaluate.core import _environment, _warn_idle_ranks
from torchlap.evaluate.shard import ShardContext, sharding


def _shard(rank: int, world_size: int) -> ShardContext:
    return ShardContext(rank=rank, world_size=world_size, device=torch.device("cpu"))


@pytest.mark.parametrize(
    ("shard", "n_images", "batch_size"),
    [
        (None, 3, 8),  # one process: nothing is sharded, no one waits
        (_shard(1, 4), 3, 8),  # the same idle processes: said once, by rank 0
        (_shard(0, 4), 8, 2),  # four batches for four processes: every process has one
        (_shard(0, 4), 7, 2),  # (the last batch not full)
        (_shard(0, 3), 30, 2),
    ],
    ids=["no sharding", "rank 1", "as many batches", "a partial batch", "more batches"],
)
def test_no_warning_when_every_process_has_a_batch_or_not_rank_zero(
    caplog, shard, n_images, batch_size
) -> None:
    with caplog.at_level(logging.DEBUG, logger="torchlap.evaluate.core"), sharding(shard):
        _warn_idle_ranks(n_images, batch_size)
    assert caplog.records == []


def test_one_batch_short_warns_of_one_waiting_process(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="torchlap.evaluate.core"), sharding(_shard(0, 4)):
        _warn_idle_ranks(6, 2)  # three batches, four processes
    (record,) = caplog.records
    assert "make 3 batch(es) for 4 processes, so 1 process(es) will only wait" in (
        record.getMessage()
    )
    assert record.getMessage().endswith("pass --batch-size 2 to give every process images")


def test_the_environment_counts_the_processes_that_shared_the_images() -> None:
    alone = _environment(torch.device("cpu"))
    assert alone["processes"] == 1
    with sharding(_shard(0, 3)):
        shared = _environment(torch.device("cpu"))
    assert shared["processes"] == 3
    assert {k: v for k, v in shared.items() if k != "processes"} == {
        k: v for k, v in alone.items() if k != "processes"
    }
