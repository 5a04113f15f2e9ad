"""rsna_pneumonia's documented defaults: the paper's split (81/9/10 %, paper 000 Sec. 4.A)
seeded with 0, recorded with the dataset; saving it names its first image without a known
region (normal images), which annotations.csv cannot express.

Written from mutation runs of torchlap/data/importers.py lines 52-85 and folder.py (session 37).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_data_importers_rsna_rows import ROWS, _rsna

from torchlap.data import rsna_pneumonia


def test_the_default_split_is_seeded_with_zero(tmp_path: Path) -> None:
    root = _rsna(tmp_path / "rsna", ROWS)
    dataset = rsna_pneumonia(root)
    assert dataset.split_seed == 0 and dataset.metadata()["split_seed"] == 0
    seeded = rsna_pneumonia(root, seed=0, split_fractions=(0.81, 0.09, 0.10))
    assert dataset.split_assignment == seeded.split_assignment


def test_saving_names_the_first_image_without_a_known_region(tmp_path: Path) -> None:
    # RSNA's normal images (p1, p3, p5 of the labels file) have no annotated region
    dataset = rsna_pneumonia(_rsna(tmp_path / "rsna", ROWS))
    message = r"^3 of the 6 images \(first: stage_2_train_images/p1\.png\) have has_region=False"
    with pytest.raises(ValueError, match=message):
        dataset.save_annotations(tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
