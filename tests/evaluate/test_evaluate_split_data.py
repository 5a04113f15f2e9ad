"""The split an evaluation reads (:mod:`torchlap.evaluate.split_data`), on a stand-in run (no
model): the refusals of ``open_eval_split``, the ``--max-images`` cut, the decoded tensors
(checked image by image against the dataset's own items), a folder parsed once for both
splits and for the runs of a comparison, and how the reading is described."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.utils.data import Subset

import torchlap.evaluate.split_data as split_data
from folder_reads import count_folder_reads
from tiny_runs import tiny_lesions
from torchlap.evaluate.provenance import DataSettings
from torchlap.evaluate.split_data import (
    data_reading,
    decode_eval_split,
    decode_shared,
    open_eval_split,
    open_run_splits,
    open_shared,
)

CLASSES = ["negative", "positive"]
SETTINGS = DataSettings(n_images=40)


def _run(data: Any = "lesions", **fields: Any) -> SimpleNamespace:
    base = dict(image_size=32, in_channels=1, classes=CLASSES, run_dir=Path("nowhere"),
                config={"train": {"data": str(data), "n_images": 40, "seed": 2}})  # fmt: skip
    return SimpleNamespace(**{**base, **fields})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_lesions(tmp_path_factory.mktemp("split_data"))


class Items(list):
    """A dataset stand-in: a list of samples with the attributes the split is checked by."""

    classes = CLASSES
    n_channels = 1


def _loading(monkeypatch: pytest.MonkeyPatch, items: Items) -> None:
    monkeypatch.setattr(split_data, "load_dataset", lambda *_a, **_k: items)


def test_other_classes_other_channels_and_an_empty_split_are_refused(monkeypatch) -> None:
    refusal = (
        r"^'lesions' has classes \['negative', 'positive'\], the run was trained on \['a', 'b'\]: "
        r"evaluate it on data with the same classes$"
    )
    with pytest.raises(ValueError, match=refusal):
        open_eval_split(_run(classes=["a", "b"]), "lesions", "test", None, SETTINGS)
    with pytest.raises(ValueError, match=r"^'lesions' has 1-channel images, the run expects 3$"):
        open_eval_split(_run(in_channels=3), "lesions", "test", None, SETTINGS)
    sample = open_eval_split(_run(), "lesions", "test", None, SETTINGS).dataset[0]
    _loading(monkeypatch, Items())
    with pytest.raises(ValueError, match=r"^the val split of 'x' is empty$"):
        open_eval_split(_run(), "x", "val", None, SETTINGS)
    _loading(monkeypatch, Items([sample]))  # one image is a split
    assert len(decode_eval_split(_run(), open_eval_split(_run(), "x", "val", None, SETTINGS))) == 1
    # a dataset announcing one channel that yields three is refused once decoded
    _loading(monkeypatch, Items([{**sample, "image": sample["image"].repeat(3, 1, 1)}]))
    opened = open_eval_split(_run(), "x", "val", None, SETTINGS)
    with pytest.raises(ValueError, match=r"^'x' has 3-channel images, the run expects 1$"):
        decode_eval_split(_run(), opened)


def test_the_decoded_split_holds_each_item_and_a_cut_keeps_its_indices() -> None:
    opened = open_eval_split(_run(), "lesions", "test", None, SETTINGS)
    n = len(opened.dataset)
    assert 2 < n < 40  # the settings' image count (40 in all splits) was read
    assert opened.ids is None and opened.max_images is None
    data = decode_eval_split(_run(), opened, batch_size=3)
    assert len(data) == n and data.images.dtype == torch.float32
    assert data.masks.dtype == torch.bool and data.classes == CLASSES and data.name == "lesions"
    assert data.settings is SETTINGS and torch.equal(data.image_ids, torch.arange(n))
    for i in range(n):
        item = opened.dataset[i]
        assert torch.equal(data.images[i], item["image"].float())
        assert int(data.labels[i]) == int(item["label"])
        assert torch.equal(data.masks[i], item["mask"].bool())
        assert bool(data.has_region[i]) == bool(item["has_region"])
    whole = open_eval_split(_run(), "lesions", "test", n, SETTINGS)  # as many: no cut
    assert whole.ids is None and not isinstance(whole.dataset, Subset) and whole.max_images == n
    cut = open_eval_split(_run(), "lesions", "test", n - 2, SETTINGS)
    assert isinstance(cut.dataset, Subset) and cut.ids.dtype == torch.long
    assert cut.ids.tolist() == list(cut.dataset.indices) and len(set(cut.ids.tolist())) == n - 2
    part = decode_eval_split(_run(), cut)
    assert torch.equal(part.image_ids, cut.ids) and torch.equal(part.images, data.images[cut.ids])


def test_a_folder_is_parsed_once_for_both_splits(folder: Path, monkeypatch) -> None:
    run = _run(folder)
    _, parses = count_folder_reads(monkeypatch)
    folders: dict = {}
    test = open_eval_split(run, str(folder), "test", None, DataSettings(), folders)
    val = open_eval_split(run, str(folder), "val", None, DataSettings(), folders)
    assert sum(parses.values()) == 1 and len(folders) == 1
    assert len(test.dataset) > 0 and len(val.dataset) > 0 and test.split == "test"
    open_eval_split(run, str(folder), "test", None, DataSettings(seed=5), folders)  # read anew
    assert sum(parses.values()) == 2 and len(folders) == 2
    open_eval_split(run, str(folder), "test", None, DataSettings())  # nothing kept: parsed
    assert sum(parses.values()) == 3
    built_in: dict = {}  # a built-in dataset is not a folder: generated per split, not kept
    open_eval_split(_run(), "lesions", "test", None, SETTINGS, built_in)
    assert built_in == {}


def test_runs_alike_share_the_opened_and_decoded_split() -> None:
    shared: dict = {}
    other = dataclasses.replace(SETTINGS, own=True)  # the same reading, another run's flag
    first = open_shared(_run(), "lesions", "test", 5, SETTINGS, shared)
    again = open_shared(_run(), "lesions", "test", 5, other, shared)
    assert again.dataset is first.dataset and again.settings is other
    assert open_shared(_run(), "lesions", "test", 6, SETTINGS, shared).dataset is not first.dataset
    decoded = decode_shared(_run(), first, 4, shared)
    assert decode_shared(_run(), again, 4, shared).images is decoded.images
    assert decode_shared(_run(), again, 4, shared).settings is other
    alone = open_shared(_run(), "lesions", "test", 5, SETTINGS, None)
    assert alone.dataset is not first.dataset
    assert decode_shared(_run(), alone, 4, None).images is not decoded.images


def test_the_run_splits_are_read_the_runs_way_unless_told(folder: Path, monkeypatch) -> None:
    options = SimpleNamespace(split="test", max_images=4, max_val_images=3)
    _, parses = count_folder_reads(monkeypatch)
    shared: dict = {}
    splits = open_run_splits(_run(folder), None, options, None, shared)  # the run's own data
    assert splits.data == str(folder) and sum(parses.values()) == 1 and shared
    assert (splits.test.split, len(splits.test.dataset)) == ("test", 4)
    assert (splits.val.split, len(splits.val.dataset)) == ("val", 3)
    assert splits.settings.seed == 2 and splits.settings.own and splits.notes == {}
    open_run_splits(_run(folder), None, options, None)
    assert sum(parses.values()) == 2  # one parse for both splits without a shared dict too


def test_a_reading_other_than_the_runs_own_is_said() -> None:
    run = _run()
    own, notes = data_reading(run, "lesions", None)
    assert own.own and own.seed == 2 and notes == {}
    same, notes = data_reading(run, "lesions", DataSettings(seed=2, n_images=40))
    assert same.own and notes == {}
    given = DataSettings(n_images=40)  # split seed 0: not the run's reading
    settings, notes = data_reading(run, "lesions", given)
    assert not settings.own and settings.seed == 0
    assert notes == {"data": [f"evaluated on lesions, the run's training data, with "
                              f"{given.describe()}"]}  # fmt: skip
    _, notes = data_reading(run, "digits", None)
    assert notes == {"data": [f"evaluated on digits, not the run's training data (lesions), "
                              f"with {DataSettings().describe()}"]}  # fmt: skip
