"""``fit``'s check that every process gets a validation and a test image (torchlap.train.run):
the splits are sharded without padding, so that the metrics count each image once, and a
process without an image would have nothing to evaluate."""

from __future__ import annotations

import pytest

import torchlap.train.run as run


def _splits(val: int, test: int) -> dict[str, list[int]]:
    return {"train": list(range(9)), "val": list(range(val)), "test": list(range(test))}


def test_one_image_per_process_is_enough() -> None:
    run._check_split_sizes(_splits(3, 3), 3)
    run._check_split_sizes(_splits(1, 1), 1)


@pytest.mark.parametrize(("val", "test", "split", "count"), [(2, 5, "val", 2), (5, 2, "test", 2)])
def test_a_split_with_fewer_images_than_processes_is_refused(
    val: int, test: int, split: str, count: int
) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^the {split} split has {count} image\(s\) for 3 processes; each process needs "
        r"at least one: use fewer --devices or more images$",
    ):
        run._check_split_sizes(_splits(val, test), 3)
