"""A sharded evaluation with fewer batches than processes says how many processes will only
wait and which ``--batch-size`` gives every process images (counts of whole batches, rounded
up: the sharding deals whole batches)."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from torchlap.evaluate.core import _warn_idle_ranks
from torchlap.evaluate.shard import ShardContext, sharding


@pytest.mark.parametrize(
    ("n_images", "batch_size", "world_size"), [(15, 16, 4), (15, 4, 8), (33, 10, 5)]
)
def test_the_idle_processes_and_the_batch_size_advised_are_counted(
    caplog, n_images, batch_size, world_size
) -> None:
    batches = math.ceil(n_images / batch_size)
    idle = world_size - batches
    advised = math.ceil(n_images / world_size)
    assert idle > 0 and advised * world_size >= n_images > (advised - 1) * world_size
    shard = ShardContext(rank=0, world_size=world_size, device=torch.device("cpu"))
    with caplog.at_level(logging.WARNING, logger="torchlap.evaluate.core"), sharding(shard):
        _warn_idle_ranks(n_images, batch_size)
    (record,) = caplog.records
    assert record.getMessage() == (
        f"sharded evaluation: {n_images} images in batches of {batch_size} make {batches} "
        f"batch(es) for {world_size} processes, so {idle} process(es) will only wait; pass "
        f"--batch-size {advised} to give every process images"
    )
