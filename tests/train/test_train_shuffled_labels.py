"""The data randomization test's training set reads its labels without loading every sample
where the dataset says them (the built-in benchmarks' rule, a folder's records); the labels are
those a pass over the samples reads."""

from __future__ import annotations

import torch

from torchlap.data import builtin_dataset
from torchlap.train.shuffled import ShuffledLabels


def test_shuffled_labels_read_no_sample_of_a_builtin_benchmark(monkeypatch) -> None:
    dataset = builtin_dataset("digits", split="train", n_images=60, image_size=32)
    expected = torch.tensor([int(dataset[i]["label"]) for i in range(len(dataset))])
    loaded = []
    real = type(dataset).__getitem__
    monkeypatch.setattr(
        type(dataset), "__getitem__", lambda self, i: loaded.append(i) or real(self, i)
    )
    shuffled = ShuffledLabels(dataset, seed=3)
    assert loaded == []
    assert torch.equal(shuffled.original_labels, expected)
    permutation = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(3))
    assert torch.equal(shuffled.labels, expected[permutation])
    assert int(shuffled[5]["label"]) == int(expected[permutation[5]])


def test_a_plain_dataset_is_read_sample_by_sample() -> None:
    class Plain(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 7

        def __getitem__(self, i: int) -> dict:
            return {"image": torch.zeros(1, 2, 2), "label": torch.tensor((3 * i) % 4)}

    shuffled = ShuffledLabels(Plain(), seed=0)
    assert shuffled.original_labels.tolist() == [(3 * i) % 4 for i in range(7)]
