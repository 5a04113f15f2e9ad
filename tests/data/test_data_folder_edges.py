"""AnnotatedFolder at edges its other tests leave open: which headers are read for given
channels, with and without verification.

Written from a mutation run of torchlap/data/folder.py (session 37): each test pins a rule a
survivor broke, with the expected values worked out by hand from the documented behaviour.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from folder_files import SPLIT_ROWS, make_folder

from torchlap.data import AnnotatedFolder
from torchlap.data import folder as folder_module


def test_given_channels_do_not_stop_verification(tmp_path: Path) -> None:
    # verify_images reads every header whatever ``channels`` says: the native size is known
    # and a box outside its image is refused when the dataset is made, not when it loads
    root = make_folder(tmp_path / "d", SPLIT_ROWS)
    assert AnnotatedFolder(root, channels=1).image_size == (8, 10)
    assert AnnotatedFolder(root, channels=3).image_size == (8, 10)
    rows = ["a0.png,a,train,0,0,11,8,", *SPLIT_ROWS[1:]]  # x_max 11 > width 10
    outside = make_folder(tmp_path / "o", rows)
    with pytest.raises(ValueError, match=r"line 2: box \(0, 0, 11, 8\) lies outside image a0"):
        AnnotatedFolder(outside, channels=1)


def test_without_verification_given_channels_open_no_header(tmp_path: Path, monkeypatch) -> None:
    # only the files' existence is checked: with ``channels`` given no header decides them
    root = make_folder(tmp_path / "d", SPLIT_ROWS)
    opened: list[Path] = []
    header = folder_module.image_header
    monkeypatch.setattr(folder_module, "image_header", lambda p: opened.append(p) or header(p))
    dataset = AnnotatedFolder(root, verify_images=False, channels=1)
    assert opened == [] and dataset.image_size is None and dataset.n_channels == 1
    assert dataset[0]["image"].shape == (1, 8, 10)
    AnnotatedFolder(root, verify_images=False)  # channels inferred: the grey headers are read
    assert len(opened) == len(SPLIT_ROWS)
