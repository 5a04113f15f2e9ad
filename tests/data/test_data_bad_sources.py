"""Bad source files found by probing the data layer: undecodable masks, importer rows Python
would bend, options of the wrong type, folder layouts that hide a wrong class."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.data import AnnotatedFolder

runner = CliRunner()


def _mask_only_folder(root: Path) -> Path:
    """Four 12x10 images of two classes in train, val and test; image 0 has a mask and no
    box (a mask-only region, which loading does not decode up front)."""
    (root / "img").mkdir(parents=True)
    rows = []
    for k, split in enumerate(["train", "train", "train", "train", "val", "val", "test", "test"]):
        Image.new("L", (12, 10), 20 * k).save(root / f"img/{k}.png")
        rows.append([f"img/{k}.png", "ab"[k % 2], split, "", "", "", "", ""])
    mask = np.zeros((10, 12), dtype=np.uint8)
    mask[2:6, 3:9] = 255
    Image.fromarray(mask).save(root / "img/mask0.png")
    rows[0][-1] = "img/mask0.png"
    with open(root / "annotations.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "split", "x_min", "y_min", "x_max", "y_max", "mask"])
        writer.writerows(rows)
    return root


@pytest.mark.parametrize("verify_images", [True, False])
def test_a_truncated_mask_is_named_with_its_csv_line(tmp_path: Path, verify_images: bool) -> None:
    # before: a bare OSError 'image file is truncated' (no file, no line), exit 1 in data check
    root = _mask_only_folder(tmp_path / "data")
    data = (root / "img/mask0.png").read_bytes()
    (root / "img/mask0.png").write_bytes(data[: len(data) // 2])
    dataset = AnnotatedFolder(root, verify_images=verify_images)
    with pytest.raises(ValueError, match=r"line 2: mask file .*mask0\.png is unreadable"):
        dataset[0]
    check = runner.invoke(app, ["data", "check", str(root)])
    assert check.exit_code == 2, check.output
    assert "annotations.csv line 2: mask file" in check.output
