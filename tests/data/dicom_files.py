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
    frame_tag: bool = True,
) -> None:
    """Write ``pixels`` (2-D, non-negative ints; 3-D: frames) as a DICOM file of
    ``bits_stored`` bits (8 or fewer: 8 bits allocated, else 16). ``frame_tag`` False leaves
    out NumberOfFrames (a multi-frame file of a broken header is still read as frames)."""
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
    dataset.Rows, dataset.Columns = pixels.shape[-2:]
    if pixels.ndim == 3 and frame_tag:
        dataset.NumberOfFrames = pixels.shape[0]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    allocated = 8 if bits_stored <= 8 else 16
    dataset.BitsAllocated, dataset.BitsStored = allocated, bits_stored
    dataset.HighBit = bits_stored - 1
    dataset.PixelRepresentation = 0
    dtype = np.uint8 if allocated == 8 else np.uint16
    dataset.PixelData = pixels.astype(dtype).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    if frame_tag:
        assert pydicom.dcmread(path).pixel_array.shape == pixels.shape
