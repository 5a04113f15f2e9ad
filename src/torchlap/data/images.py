"""The one image decoder of torchlap: image files (PIL), DICOM (pydicom) and masks.

Pixels become float32 in [0, 1] by their bit depth (8-bit / 255, 16-bit / 65535, DICOM by
``BitsStored``, MONOCHROME1 inverted); :func:`load_image` adds the evaluation resize. Data
loading (:class:`torchlap.data.folder.AnnotatedFolder`) and ``torchlap explain`` both read
through here, so an image gives the same tensor at training and at explanation time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2.functional import resize

from torchlap.data.transforms import size_pair

__all__ = ["DICOM_SUFFIXES", "image_header", "load_image", "read_image", "read_mask"]

DICOM_SUFFIXES = (".dcm", ".dicom")
_GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}


def _is_dicom(path: Path) -> bool:
    return path.suffix.lower() in DICOM_SUFFIXES


def _import_pydicom() -> Any:
    try:
        import pydicom
    except ImportError as error:  # optional extra
        raise ImportError(
            "reading DICOM images needs pydicom: pip install 'torchlap[dicom]' (or pydicom)"
        ) from error
    return pydicom


def image_header(path: Path) -> tuple[int, int, int]:
    """(width, height, channels) of an image or DICOM file without decoding its pixels.

    Raises ValueError if the file is not a readable image.
    """
    if _is_dicom(path):
        pydicom = _import_pydicom()
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            return int(header.Columns), int(header.Rows), int(getattr(header, "SamplesPerPixel", 1))
        except Exception as error:  # pydicom raises many types for broken files
            raise ValueError(f"not a readable DICOM file: {error}") from error
    try:
        with Image.open(path) as image:
            width, height = image.size
            return width, height, 1 if image.mode in _GRAY_MODES else 3
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"not a readable image: {error}") from error


def _array_to_unit(array: np.ndarray, mode: str) -> np.ndarray:
    """Pixel array -> float32 in [0, 1] by the value range its mode implies."""
    if mode.startswith("I;16") or array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if mode == "I":
        return np.clip(array.astype(np.float32), 0, 65535) / 65535.0
    if mode == "F":
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    if array.dtype == bool:
        return array.astype(np.float32)
    return array.astype(np.float32) / 255.0


def read_image(path: Path, channels: int) -> Tensor:
    """Decode an image (PIL) or DICOM (pydicom) to a float32 (channels, H, W) tensor in [0, 1].

    Grayscale 8/16-bit images are scaled by their bit depth; RGB is converted to one channel
    by PIL's luma transform when ``channels == 1``; grayscale is repeated for ``channels == 3``.
    """
    if _is_dicom(path):
        array = _read_dicom(path)
    else:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("1", "LA"):
                image = image.convert("L")
                mode = "L"
            elif mode not in _GRAY_MODES:
                image = image.convert("RGB")
                mode = "RGB"
            array = _array_to_unit(np.asarray(image), mode)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    if tensor.shape[0] == channels:
        return tensor.contiguous()
    if channels == 3:
        return tensor.expand(3, -1, -1).contiguous()
    # RGB -> luma with ITU-R 601-2 weights, as PIL's convert("L")
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=tensor.dtype)[:, None, None]
    return (tensor[:3] * weights).sum(dim=0, keepdim=True)


def _read_dicom(path: Path) -> np.ndarray:
    """DICOM pixels scaled to [0, 1] by BitsStored; MONOCHROME1 is inverted."""
    pydicom = _import_pydicom()
    dataset = pydicom.dcmread(path)
    array = dataset.pixel_array.astype(np.float32)
    bits = int(getattr(dataset, "BitsStored", 8))
    if int(getattr(dataset, "PixelRepresentation", 0)) == 1:  # signed: shift to unsigned
        array = array + float(2 ** (bits - 1))
    array = np.clip(array / float(2**bits - 1), 0.0, 1.0)
    if str(getattr(dataset, "PhotometricInterpretation", "")) == "MONOCHROME1":
        array = 1.0 - array
    return array


def load_image(
    path: str | os.PathLike[str], channels: int, image_size: int | None = None
) -> Tensor:
    """The one image decoder of torchlap: :func:`read_image` (bit-depth scaling, DICOM) then,
    with ``image_size``, the evaluation resize of :func:`default_transforms` (bilinear,
    antialiased). Data loading and ``torchlap explain`` both read images through it.

    Raises FileNotFoundError for a missing file, ValueError naming the file when it cannot be
    decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} not found")
    try:
        image = read_image(path, channels)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable image: {error}") from None
    if image_size is None:
        return image
    return resize(image, list(size_pair(image_size)), antialias=True)


def read_mask(path: Path) -> Tensor:
    """A mask PNG as a (H, W) uint8 tensor with 1 where the file is nonzero."""
    with Image.open(path) as image:
        array = np.asarray(image)
    if array.ndim == 3:
        array = array.any(axis=-1)
    return torch.from_numpy(np.ascontiguousarray(array != 0)).to(torch.uint8)
