"""The split of the sharded evaluation at its edges: one process takes every image, and the
counts, the batch size, the process count and the rank are refused (saying what is accepted)
when they are not ints in range."""

from __future__ import annotations

import pytest

from torchlap.evaluate.shard import shard_bounds


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
