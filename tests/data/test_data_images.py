"""One image decoder: a 16-bit PNG and DICOM files give the same tensor through ``torchlap
explain``'s reading path as through training's data loading (``load_dataset`` on the folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_files import write_dicom
from PIL import Image

from torchlap.data import load_dataset, load_image
from torchlap.evaluate.explain import collect_images, read_image

SIZE = 16


def _ramp(maximum: int) -> np.ndarray:
    """A (20, 24) ramp from 0 to ``maximum``: every value range a bit depth can hold."""
    ramp = np.linspace(0, maximum, 24 * 20).reshape(20, 24)
    return np.round(ramp).astype(np.int64)


# case -> (file name, writer of a file whose full value range is used)
CASES = {
    "png16": ("x.png", lambda p: Image.fromarray(_ramp(65535).astype(np.uint16)).save(p)),
    "dicom12": ("x.dcm", lambda p: write_dicom(p, _ramp(4095), bits_stored=12)),
    "dicom8_monochrome1": (
        "x.dcm",
        lambda p: write_dicom(p, _ramp(255), bits_stored=8, photometric="MONOCHROME1"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_explain_reads_as_training_does(tmp_path: Path, case: str) -> None:
    name, write = CASES[case]
    write(tmp_path / name)
    (tmp_path / "annotations.csv").write_text(f"image,label,split\n{name},a,train\n")
    training = load_dataset(tmp_path, split="train", image_size=SIZE)
    from_training = training[0]["image"].as_subclass(torch.Tensor)

    (found,) = collect_images([tmp_path / name])  # explain accepts the file (DICOM included)
    from_explain = read_image(found.path, training.n_channels, SIZE)

    assert from_explain.shape == (1, SIZE, SIZE)
    torch.testing.assert_close(from_explain, from_training, rtol=0, atol=0)
    # scaled by the bit depth: the full range of the file spans [0, 1] (not /255 of 16 bits)
    native = load_image(tmp_path / name, 1)
    assert float(native.min()) == 0.0 and float(native.max()) == pytest.approx(1.0)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    """MONOCHROME1 stores white as 0: the decoder inverts it, so 0 reads as 1."""
    write_dicom(tmp_path / "x.dcm", np.zeros((4, 4)), bits_stored=8, photometric="MONOCHROME1")
    assert torch.equal(load_image(tmp_path / "x.dcm", 1), torch.ones(1, 4, 4))
