"""Training reads a folder's ``annotations.csv`` and opens each image header once for its
three splits (it loaded each split anew: three parses, every header opened three times), with
the datasets of loading each split anew."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import torchlap.data.folder as folder
from torchlap.data import load_dataset
from torchlap.data.export import export_builtin
from torchlap.train import TrainConfig
from torchlap.train.loaders import load_splits


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return export_builtin("lesions", tmp_path_factory.mktemp("tr") / "les", n_images=40,
                          image_size=32)  # fmt: skip


@pytest.mark.parametrize("n_images", [None, 6])
def test_the_three_splits_come_from_one_reading(data, tmp_path, monkeypatch, n_images) -> None:
    headers: Counter = Counter()
    parses: list[Any] = []
    header, read = folder.image_header, folder.read_annotations

    def counted_header(path: Any, *args: Any, **kwargs: Any) -> Any:
        headers[Path(path)] += 1
        return header(path, *args, **kwargs)

    def counted_read(path: Any, *args: Any, **kwargs: Any) -> Any:
        parses.append(path)
        return read(path, *args, **kwargs)

    monkeypatch.setattr(folder, "image_header", counted_header)
    monkeypatch.setattr(folder, "read_annotations", counted_read)
    config = TrainConfig(data=str(data), out=str(tmp_path / "run"), arch="smallcnn",
                         image_size=32, n_images=n_images, progress_bar=False)  # fmt: skip
    datasets = load_splits(config)
    assert len(parses) == 1
    assert set(headers) == set(data.rglob("*.png")) and set(headers.values()) == {1}
    for split, dataset in datasets.items():
        fresh = load_dataset(data, split=split, image_size=32, n_images=n_images)
        assert dataset.split == split and dataset.records == fresh.records
        assert repr(dataset.transform) == repr(fresh.transform)
