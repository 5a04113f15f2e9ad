"""The data randomization test's training set gets its labels without loading every sample
where the dataset says them (the built-in benchmarks' rule, a folder's records); the labels are
those a pass over the samples reads."""

from __future__ import annotations

import pytest
import torch
from train_configs import tiny_config

from torchlap.data.builtin import SyntheticBenchmark
from torchlap.train.loaders import load_splits
from torchlap.train.shuffled import ShuffledLabels


def test_shuffled_training_labels_load_no_sample_of_a_builtin_benchmark(
    tmp_path, monkeypatch
) -> None:
    plain = load_splits(tiny_config(tmp_path / "a", n_images=60, seed=3))["train"]
    expected = torch.tensor([int(plain[i]["label"]) for i in range(len(plain))])
    loaded = []
    real = SyntheticBenchmark.__getitem__
    monkeypatch.setattr(
        SyntheticBenchmark, "__getitem__", lambda self, i: loaded.append(i) or real(self, i)
    )
    config = tiny_config(tmp_path / "b", n_images=60, seed=3, shuffle_labels=True)
    shuffled = load_splits(config)["train"]
    assert isinstance(shuffled, ShuffledLabels) and loaded == []
    assert torch.equal(shuffled.original_labels, expected)
    permutation = torch.randperm(len(plain), generator=torch.Generator().manual_seed(3))
    assert torch.equal(shuffled.labels, expected[permutation])


def test_a_plain_dataset_is_read_sample_by_sample_and_given_labels_are_checked() -> None:
    class Plain(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 7

        def __getitem__(self, i: int) -> dict:
            return {"image": torch.zeros(1, 2, 2), "label": torch.tensor((3 * i) % 4)}

    shuffled = ShuffledLabels(Plain(), seed=0)
    assert shuffled.original_labels.tolist() == [(3 * i) % 4 for i in range(7)]
    with pytest.raises(ValueError, match=r"labels must be a \(7,\) tensor"):
        ShuffledLabels(Plain(), labels=torch.zeros(3))
