"""imagenet_folder's documented defaults and up-front checks: headers are not opened unless
asked (``verify_images=False``), no region is known, an unknown split is refused before any
folder is looked at, and ``split='test'`` says that it reads the labelled val folder.

Written from a mutation run of torchlap/data/importers.py lines 403-470 (session 37).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_data_importers_imagenet_layout import _imagenet

from torchlap.data import imagenet_folder


def test_headers_are_not_opened_unless_asked(tmp_path: Path) -> None:
    root = _imagenet(tmp_path / "in")
    dataset = imagenet_folder(root)
    assert dataset.verified is False
    # no region is annotated: not an empty region (a negative for the localization metrics)
    assert dataset.has_regions is False and dataset[0]["has_region"] is False
    assert imagenet_folder(root, verify_images=True).verified is True


def test_an_unknown_split_is_refused_before_any_folder_is_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^unknown split 'dev'; accepted splits are train"):
        imagenet_folder(tmp_path / "nothing here", split="dev")


def test_the_test_split_says_it_reads_the_val_folder(tmp_path: Path, caplog) -> None:
    root = _imagenet(tmp_path / "in")
    with caplog.at_level(logging.INFO, logger="torchlap.data.importers"):
        imagenet_folder(root, split="val")
        assert not caplog.records
        test = imagenet_folder(root, split="test")
    (record,) = caplog.records
    assert "ImageNet has no labelled test split: split='test' reads the val folder" in (
        record.getMessage()
    )
    assert test.split == "test" and all(r.image.startswith("val/") for r in test.records)
