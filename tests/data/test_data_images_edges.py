"""The image decoder at edges its other tests leave open: images without an orientation tag, an
EXIF chunk after a PNG's pixels, big-endian 16-bit pixels, single-pixel and just-too-bright
float images, padded multi-frame DICOM data and the antialiased evaluation resize.

Written from a mutation run of torchlap/data/images.py (session 37): each test pins a rule a
survivor broke, with the expected values worked out by hand from the documented rules.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_files import write_dicom
from PIL import Image
from test_data_transforms_sizes import _antialiased_row

from torchlap.data.images import (
    has_transparency,
    image_header,
    load_image,
    read_image,
    read_image_with_orientation,
)

# --- the EXIF orientation: 1 when absent ----------------------------------------------------


def test_an_image_without_an_orientation_tag_reads_orientation_1(tmp_path: Path) -> None:
    # a JPEG without EXIF goes through PIL's getexif (a PNG without eXIf does not)
    Image.new("L", (4, 2), 9).save(tmp_path / "x.jpg")
    assert image_header(tmp_path / "x.jpg").orientation == 1
    assert read_image_with_orientation(tmp_path / "x.jpg", 1)[1] == 1
    # a DICOM file has no EXIF: orientation 1 when its pixels are read too
    write_dicom(tmp_path / "x.dcm", np.arange(6).reshape(2, 3))
    image, orientation = read_image_with_orientation(tmp_path / "x.dcm", 1)
    assert orientation == 1
    torch.testing.assert_close(image, torch.arange(6.0).reshape(1, 2, 3) / 255)


def test_a_broken_exif_block_reads_orientation_1(tmp_path: Path, monkeypatch) -> None:
    # PIL raising on a damaged EXIF block (it still decodes the pixels): orientation 1
    def broken(self: Image.Image) -> Image.Exif:
        raise SyntaxError("not a TIFF file")

    Image.new("L", (4, 2), 9).save(tmp_path / "x.jpg")
    monkeypatch.setattr(Image.Image, "getexif", broken)
    assert image_header(tmp_path / "x.jpg").orientation == 1
    image, orientation = read_image_with_orientation(tmp_path / "x.jpg", 1)
    assert orientation == 1 and image.shape == (1, 2, 4)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, whole chunk bytes) of a PNG file's chunks, in order (after the signature)."""
    chunks, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunks.append((kind, data[position : position + 12 + length]))
        position += 12 + length
    return chunks


def test_a_png_exif_chunk_after_the_pixels_is_read_with_the_pixels(tmp_path: Path) -> None:
    # PNG allows eXIf after IDAT; the header (no pixels decoded) cannot see it and says 1, as
    # documented, while reading the pixels reaches it and reads its orientation
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("L", (4, 2), 9).save(buffer, format="PNG", exif=exif)
    data = buffer.getvalue()
    chunks = _png_chunks(data)
    assert [kind for kind, _ in chunks] == [b"IHDR", b"eXIf", b"IDAT", b"IEND"]
    late = [chunks[0], chunks[2], chunks[1], chunks[3]]  # eXIf moved after IDAT
    path = tmp_path / "late.png"
    path.write_bytes(data[:8] + b"".join(chunk for _, chunk in late))
    assert image_header(path).orientation == 1
    image, orientation = read_image_with_orientation(path, 1)
    assert orientation == 6
    torch.testing.assert_close(image, torch.full((1, 2, 4), 9 / 255))


# --- pixel ranges ---------------------------------------------------------------------------


def test_big_endian_16_bit_pixels_are_scaled_by_65535(tmp_path: Path) -> None:
    # a big-endian 16-bit TIFF reads as mode I;16B with a '>u2' array (not numpy's uint16)
    values = np.array([[0, 13107, 65535]], ">u2")
    Image.frombytes("I;16B", (3, 1), values.tobytes()).save(tmp_path / "b.tiff")
    with Image.open(tmp_path / "b.tiff") as opened:
        assert opened.mode == "I;16B"
    torch.testing.assert_close(
        read_image(tmp_path / "b.tiff", 1), torch.tensor([[[0.0, 0.2, 1.0]]])
    )


@pytest.mark.parametrize(
    ("value", "dtype", "kind"),
    [(255.0, np.float32, r"float \(mode F\)"), (70000, np.int32, r"32-bit integer \(mode I\)")],
)
def test_a_single_pixel_out_of_range_is_refused(tmp_path: Path, value, dtype, kind) -> None:
    path = tmp_path / "one.tiff"
    Image.fromarray(np.array([[value]], dtype)).save(path)
    with pytest.raises(ValueError, match=rf"this {kind} image has values in \[{value:g}, "):
        read_image(path, 1)


def test_float_rounding_slack_is_one_millionth_of_the_range(tmp_path: Path) -> None:
    # [0, 1] with 1e-6 of slack: float32 1.0000013 lies beyond 1 + 1e-6 and is refused
    beyond = np.float32(1.0000013)
    assert float(beyond) > 1.000001
    path = tmp_path / "f.tiff"
    Image.fromarray(np.array([[0.5, beyond]], np.float32)).save(path)
    with pytest.raises(ValueError, match=r"float \(mode F\) image has values in \[0\.5, 1\]"):
        read_image(path, 1)
    within = np.float32(1.0000008)
    Image.fromarray(np.array([[0.5, within]], np.float32)).save(path)
    torch.testing.assert_close(read_image(path, 1), torch.tensor([[[0.5, 1.0]]]), rtol=0, atol=0)


# --- DICOM frames ---------------------------------------------------------------------------


def test_a_dicoms_frame_count_is_the_headers_when_it_has_one(tmp_path: Path) -> None:
    path = tmp_path / "frames.dcm"
    write_dicom(path, np.zeros((3, 4, 4), np.uint8))  # NumberOfFrames 3
    with pytest.raises(ValueError, match=r"^this DICOM file holds 3 frames; torchlap reads"):
        read_image(path, 1)


def test_whole_odd_sized_frames_with_a_pad_byte_are_counted(tmp_path: Path) -> None:
    # 3 x 3 pixels of 8 bits: 9-byte frames; three of them (27 bytes) are stored padded to 28
    pydicom = pytest.importorskip("pydicom")
    path = tmp_path / "x.dcm"
    write_dicom(path, np.arange(9).reshape(3, 3))
    dataset = pydicom.dcmread(path)
    dataset.PixelData = bytes(range(27)) + b"\0"
    dataset.save_as(path)
    assert len(pydicom.dcmread(path).PixelData) == 28
    with pytest.raises(ValueError, match=r"holds 3 frames \(28 bytes of 9-byte frames\)"):
        read_image(path, 1)


# --- the evaluation resize ------------------------------------------------------------------


def test_load_image_shrinks_with_the_antialiased_bilinear_filter(tmp_path: Path) -> None:
    # (the reference: the triangle filter written out in test_data_transforms_sizes)
    # 0/255 stripes shrunk by 3: bilinear without antialiasing would read single input pixels
    stripes = [255 * (k % 2) for k in range(12)]
    Image.fromarray(np.array([stripes], np.uint8)).save(tmp_path / "s.png")
    expected = torch.tensor([[_antialiased_row([v / 255 for v in stripes], 4)]])
    torch.testing.assert_close(load_image(tmp_path / "s.png", 1, (1, 4)), expected)


def test_a_missing_path_with_a_backslash_is_only_not_found(tmp_path: Path) -> None:
    # the hint about '/' is given only when the path written with '/' exists
    with pytest.raises(FileNotFoundError, match=r"a\\b\.png not found$"):
        load_image(tmp_path / "a\\b.png", 1)
    (tmp_path / "a").mkdir()
    Image.new("L", (2, 2)).save(tmp_path / "a" / "b.png")
    with pytest.raises(FileNotFoundError, match=r"not found: paths use '/' between folders"):
        load_image(tmp_path / "a\\b.png", 1)


def test_images_without_an_alpha_band_have_no_transparency(tmp_path: Path) -> None:
    # no alpha band and no transparent colour: every pixel opaque; DICOM files have no alpha
    Image.new("L", (3, 2), 0).save(tmp_path / "l.png")
    Image.new("RGB", (3, 2), (0, 0, 0)).save(tmp_path / "rgb.png")
    write_dicom(tmp_path / "x.dcm", np.zeros((2, 3), np.uint8))
    for name in ("l.png", "rgb.png", "x.dcm"):
        assert has_transparency(tmp_path / name) is False, name


def test_an_empty_pixel_data_element_is_refused_as_such(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    path = tmp_path / "x.dcm"
    write_dicom(path, np.zeros((2, 3), np.uint8))
    dataset = pydicom.dcmread(path)
    dataset.PixelData = b""
    dataset.save_as(path)
    assert tuple(image_header(path)) == (3, 2, 1, 1)  # (the header reads no pixels)
    with pytest.raises(ValueError, match=r"^this DICOM file's PixelData is empty: it holds no"):
        read_image(path, 1)


def test_compressed_pixel_data_is_not_held_to_the_uncompressed_length(tmp_path: Path) -> None:
    # RLE: 92 bytes for 2 x 3 pixels of 8 bits (6 bytes uncompressed); pydicom decodes them
    pydicom = pytest.importorskip("pydicom")
    from pydicom.uid import RLELossless

    path = tmp_path / "x.dcm"
    stored = np.arange(6).reshape(2, 3) * 40
    write_dicom(path, stored)
    dataset = pydicom.dcmread(path)
    dataset.compress(RLELossless)
    dataset.save_as(path)
    assert len(pydicom.dcmread(path).PixelData) > 6 + 1
    expected = torch.from_numpy(stored).float()[None] / 255
    torch.testing.assert_close(read_image(path, 1), expected)
