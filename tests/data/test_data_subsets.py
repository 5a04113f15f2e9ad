"""The seeded split and the ``n_images`` cut of a folder dataset: class shares against a slow
count of the documented ranks (the k-th image of a class of c is ranked k / c), the CSV order
of the kept records, and a split that does not depend on the CSV's row order."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest

from torchlap.data._subsets import seeded_split, stratified_cut
from torchlap.data.annotations import ImageRecord


def _records(sizes: dict[str, int]) -> list[ImageRecord]:
    """Interleaved records: image ``<label>/<k>.png`` of each class, round robin."""
    out = []
    for k in range(max(sizes.values())):
        for label, size in sizes.items():
            if k < size:
                out.append(ImageRecord(f"{label}/{k:03d}.png", label, "train"))
    return out


def slow_class_counts(sizes: dict[str, int], n_images: int) -> Counter:
    """How many images of each class the cut keeps: ranks k / c (exact fractions), the
    ``n_images`` lowest, ties by class name, counted one by one."""
    ranks = sorted((Fraction(k, c), label) for label, c in sizes.items() for k in range(c))
    return Counter(label for _, label in ranks[:n_images])


@pytest.mark.parametrize(
    ("sizes", "n_images"),
    [
        ({"a": 30, "b": 10}, 8),  # shares 3 : 1 kept: 6 and 2
        ({"a": 1, "b": 10, "c": 20}, 4),  # one each, then the larger share
        ({"x": 7, "y": 3, "z": 5}, 9),
        ({"a": 2, "b": 2}, 3),  # a tie between classes goes to the first name
    ],
)
@pytest.mark.parametrize("seed", [0, 11])
def test_cut_keeps_the_class_shares_of_the_ranks(
    sizes: dict[str, int], n_images: int, seed: int
) -> None:
    """Per-class counts of the cut equal the slow count of the lowest k / c ranks."""
    kept = stratified_cut(_records(sizes), n_images, seed)
    assert len(kept) == n_images
    assert Counter(r.label for r in kept) == slow_class_counts(sizes, n_images)


def test_cut_keeps_the_records_in_their_csv_order() -> None:
    """The kept records are a subsequence of the input, in the input's order."""
    records = _records({"a": 12, "b": 9, "c": 5})[::-1]
    for seed in range(5):
        kept = stratified_cut(records, 10, seed)
        positions = [next(i for i, r in enumerate(records) if r is k) for k in kept]
        assert positions == sorted(positions) and len(set(positions)) == 10


@pytest.mark.parametrize("seed", [0, 3])
def test_seeded_split_does_not_depend_on_row_order(seed: int) -> None:
    """The same images listed in another order get the same splits."""
    records = [ImageRecord(f"{k:02d}.png", "ab"[k % 3 == 0]) for k in range(30)]
    shuffled = records[7:] + records[:7]
    shuffled = shuffled[::2] + shuffled[1::2]
    first = seeded_split(records, (0.6, 0.2, 0.2), seed)
    assert seeded_split(shuffled, (0.6, 0.2, 0.2), seed) == first
    assert seeded_split(records[::-1], (0.6, 0.2, 0.2), seed) == first


@pytest.mark.parametrize(
    ("n", "fractions", "expected"),
    [
        (1, (0.5, 0.25, 0.25), (1, 0, 0)),
        (2, (0.2, 0.4, 0.4), (1, 0, 1)),  # round(0.8) = 1 each: train takes val's image
        (3, (0.1, 0.45, 0.45), (1, 1, 1)),
        (10, (0.8, 0.1, 0.1), (8, 1, 1)),
    ],
)
def test_every_class_gets_a_training_image_and_the_counts_add_up(
    n: int, fractions: tuple[float, float, float], expected: tuple[int, int, int]
) -> None:
    """Per class: val and test rounded, train the rest; a class left without a training
    image takes one from val (else test); every image gets exactly one split."""
    records = [ImageRecord(f"{k}.png", "only") for k in range(n)]
    split = seeded_split(records, fractions, seed=1)
    counts = Counter(split.values())
    assert (counts["train"], counts["val"], counts["test"]) == expected
    assert sum(counts.values()) == n
