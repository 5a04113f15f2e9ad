"""A DICOM writer shared by the data tests (pydicom; the test is skipped without it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    bits_stored: int = 8,
    photometric: str = "MONOCHROME2",
) -> None:
    """Write ``pixels`` (2-D, non-negative ints) as a one-frame DICOM file of ``bits_stored``
    bits (8 or fewer: 8 bits allocated, else 16)."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CR"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    allocated = 8 if bits_stored <= 8 else 16
    dataset.BitsAllocated, dataset.BitsStored = allocated, bits_stored
    dataset.HighBit = bits_stored - 1
    dataset.PixelRepresentation = 0
    dtype = np.uint8 if allocated == 8 else np.uint16
    dataset.PixelData = pixels.astype(dtype).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).pixel_array.shape == pixels.shape
