"""rsna_pneumonia's documented defaults: the paper's split (81/9/10 %, paper 000 Sec. 4.A)
seeded with 0, recorded with the dataset.

Written from a mutation run of torchlap/data/importers.py lines 52-85 (session 37).
"""

from __future__ import annotations

from pathlib import Path

from test_data_importers_rsna_rows import ROWS, _rsna

from torchlap.data import rsna_pneumonia


def test_the_default_split_is_seeded_with_zero(tmp_path: Path) -> None:
    root = _rsna(tmp_path / "rsna", ROWS)
    dataset = rsna_pneumonia(root)
    assert dataset.split_seed == 0 and dataset.metadata()["split_seed"] == 0
    seeded = rsna_pneumonia(root, seed=0, split_fractions=(0.81, 0.09, 0.10))
    assert dataset.split_assignment == seeded.split_assignment
