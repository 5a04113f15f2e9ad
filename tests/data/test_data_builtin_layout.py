"""Built-in benchmarks: the contiguous split ranges of global indices (label = index mod
classes) and the normalization statistics, both against explicit loops."""

from __future__ import annotations

import pytest
import torch

from torchlap.data import Concepts, Lesions


@pytest.mark.parametrize(("cls", "n_classes"), [(Lesions, 2), (Concepts, 4)])
def test_splits_are_contiguous_disjoint_ranges_of_global_indices(cls: type, n_classes: int) -> None:
    """n_images=50 with (0.8, 0.1, 0.1): train 0-39, val 40-44, test 45-49; sample i of a
    split is global image start + i, labelled (start + i) mod classes."""
    options = {"n_images": 50, "image_size": 32, "seed": 2}
    starts = {"train": (0, 40), "val": (40, 5), "test": (45, 5)}
    seen = []
    for split, (start, length) in starts.items():
        dataset = cls(split=split, **options)
        assert len(dataset) == length
        reference = dataset.render(list(range(start, start + length)))
        for i in range(length):
            sample = dataset[i]
            assert sample["label"] == (start + i) % n_classes
            assert torch.equal(sample["image"], reference.images[i].float() / 255.0)
            seen.append(start + i)
    assert sorted(seen) == list(range(50))


def test_rgb_statistics_are_per_channel_over_the_training_images() -> None:
    """mean/std per channel over every pixel of the (up to 256) first training images, the
    same on every split (std with N - 1), by explicit sums in float64."""
    options = {"n_images": 10, "image_size": 32, "seed": 4}
    train = Concepts(split="train", **options)
    images = [train[i]["image"].to(torch.float64) for i in range(len(train))]
    for channel in range(3):
        values = [float(v) for image in images for v in image[channel].flatten()]
        n = len(values)
        mean = sum(values) / n
        std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
        for split in ("train", "val", "test"):
            dataset = Concepts(split=split, **options)
            assert dataset.mean[channel] == pytest.approx(mean, abs=1e-6)
            assert dataset.std[channel] == pytest.approx(std, abs=1e-6)
