"""Pixel scaling the decoder promises, by hand: signed DICOM pixels shifted by 2^(bits-1)
before the division by 2^bits - 1, and the grayscale normalization defaults as the channel
averages of ImageNet's statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_files import write_dicom
from PIL import Image

from torchlap.data import AnnotatedFolder, default_normalization
from torchlap.data.images import read_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_signed_dicom_pixels_are_shifted_then_scaled(tmp_path: Path, bits: int) -> None:
    """PixelRepresentation 1: value v in [-2^(b-1), 2^(b-1) - 1] reads (v + 2^(b-1)) / (2^b - 1)."""
    pydicom = pytest.importorskip("pydicom")
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    values = np.array([[low, -1, 0], [1, high // 2, high]], dtype=np.int64)
    path = tmp_path / "signed.dcm"
    write_dicom(path, np.zeros(values.shape), bits_stored=bits)
    dataset = pydicom.dcmread(path)
    dataset.PixelRepresentation = 1
    dtype = np.int8 if bits <= 8 else np.int16
    dataset.PixelData = values.astype(dtype).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    image = read_image(path, channels=1)
    expected = torch.tensor(
        [[(v + 2 ** (bits - 1)) / (2**bits - 1) for v in row] for row in values.tolist()]
    )
    torch.testing.assert_close(image[0], expected)
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0


def test_grayscale_defaults_are_the_imagenet_channel_averages(tmp_path: Path) -> None:
    """Gray mean/std = mean of ImageNet's three channel means/stds (0.449, 0.226)."""
    gray_mean = round(sum(IMAGENET_MEAN) / 3, 3)
    gray_std = round(sum(IMAGENET_STD) / 3, 3)
    assert default_normalization(3) == (IMAGENET_MEAN, IMAGENET_STD)
    assert default_normalization(1) == ((gray_mean,), (gray_std,))
    root = tmp_path / "gray"
    (root / "img").mkdir(parents=True)
    for k in range(2):
        Image.new("L", (4, 4), 10 * k).save(root / f"img/{k}.png")
    (root / "annotations.csv").write_text(
        "image,label,split\nimg/0.png,a,train\nimg/1.png,b,train\n"
    )
    dataset = AnnotatedFolder(root)
    assert dataset.n_channels == 1
    assert dataset.mean == (gray_mean,) and dataset.std == (gray_std,)
