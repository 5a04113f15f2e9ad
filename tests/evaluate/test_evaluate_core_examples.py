"""The example images of the report: the best, median and worst top-scored IoU among the images
with a region (images without one, ``None``, are never chosen)."""

from __future__ import annotations

from torchlap.evaluate.core import _example_indices


def _reference(per_sample: list[float | None]) -> dict[str, int]:
    """By the definition, one image at a time: the best has no higher score, the worst no
    lower one, the median as many scores below it as above it (odd counts, distinct scores)."""
    scored = [i for i, v in enumerate(per_sample) if v is not None]
    chosen = {}
    for i in scored:
        below = sum(1 for j in scored if per_sample[j] < per_sample[i])
        above = sum(1 for j in scored if per_sample[j] > per_sample[i])
        if above == 0:
            chosen["best"] = i
        if below == 0:
            chosen["worst"] = i
        if below == above:
            chosen["median"] = i
    return chosen


def test_best_median_and_worst_skip_the_images_without_a_region() -> None:
    cases = [
        [0.4, None, 0.9, 0.1, None, 0.6, 0.3],  # five scored: the median is the third
        [None, 0.7, 0.2, 0.5],
        [0.25],
        [0.8, 0.35, 0.6, 0.05, 0.95, 0.5, 0.45, 0.55, 0.7, 0.15, 0.3],
    ]
    for per_sample in cases:
        assert _example_indices(per_sample) == _reference(per_sample), per_sample


def test_no_scored_image_gives_no_examples() -> None:
    assert _example_indices([None, None, None]) == {}
    assert _example_indices([]) == {}
