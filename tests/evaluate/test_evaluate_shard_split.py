"""The split of the sharded evaluation at its edges: one process takes every image; the
counts, the batch size, the process count and the rank are refused (saying what is accepted)
when they are not ints in range; the plans ``check_sharding`` makes for one process and for
CUDA devices, and its refusals of GPUs the machine lacks or a device that is neither."""

from __future__ import annotations

import pytest
import torch

from torchlap.evaluate.shard import ShardPlan, check_sharding, shard_bounds


def test_one_process_takes_every_image() -> None:
    assert shard_bounds(5, 2, 0, 1) == (0, 5)
    assert shard_bounds(0, 1, 0, 1) == (0, 0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((-1, 2, 0, 2), r"n must be an int >= 0, got -1"),
        ((True, 2, 0, 2), r"n must be an int >= 0, got True"),
        ((4.0, 2, 0, 2), r"n must be an int >= 0, got 4\.0"),
        ((4, 0, 0, 2), r"batch_size must be an int >= 1, got 0"),
        ((4, False, 0, 2), r"batch_size must be an int >= 1, got False"),
        ((4, 2, 0, 0), r"world_size must be an int >= 1, got 0"),
        ((4, 2, 0, 2.0), r"world_size must be an int >= 1, got 2\.0"),
        ((4, 2, -1, 2), r"rank must be an int in \[0, 2\), got -1"),
        ((4, 2, 2, 2), r"rank must be an int in \[0, 2\), got 2"),
        ((4, 2, True, 2), r"rank must be an int in \[0, 2\), got True"),
        ((4, 2, 1.0, 2), r"rank must be an int in \[0, 2\), got 1\.0"),
    ],
)
def test_arguments_out_of_range_are_refused(arguments, message) -> None:
    with pytest.raises(ValueError, match=message):
        shard_bounds(*arguments)


def test_the_plans_of_one_process_and_of_cuda_devices(monkeypatch) -> None:
    # no GPU is touched: the count of CUDA devices is all the check reads
    # one process shards nothing: no count of GPUs is asked for (the device is checked later)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert check_sharding("1", 1, "cuda") == ShardPlan("cuda", 1, 1, 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert check_sharding("1", 1, "cpu") == ShardPlan("cpu", 1, 1, 1)
    assert check_sharding("1", 1, "cuda") == ShardPlan("cuda", 1, 1, 1)
    assert check_sharding("0,3", 1, "cuda") == ShardPlan("cuda", [0, 3], 1, 2)  # ids 0 to 3
    assert check_sharding("4", 1, "cuda") == ShardPlan("cuda", 4, 1, 4)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    with pytest.raises(ValueError, match=r"--devices '0,3' needs 4 CUDA devices but this machine"):
        check_sharding("0,3", 1, "cuda")
    with pytest.raises(ValueError, match=r"--devices '4' needs 4 CUDA devices .* between 1 and 3"):
        check_sharding("4", 1, "cuda")
    with pytest.raises(ValueError, match=r"--device 'cuda:0' names one GPU but --devices asks"):
        check_sharding("2", 1, "cuda:0")
    with pytest.raises(ValueError, match=r"--device 'mps' is neither: pass --device cpu or cuda"):
        check_sharding("2", 1, "mps")
