"""The image decoder's headers, refusals and pixel scaling at their boundaries, on tiny files
written here (PIL, pydicom), against values computed by hand from the documented rules.

Written from a mutation run of torchlap/data/images.py: each test pins a rule a survivor broke.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_files import write_dicom
from PIL import Image

from torchlap.data.images import (
    ImageHeader,
    image_header,
    load_image,
    read_image,
    read_image_with_orientation,
    read_mask,
    said_unreadable,
)


def _retag(path: Path, **tags: object) -> Path:
    """Rewrite the DICOM file at ``path`` with ``tags`` set (a value None deletes the tag)."""
    pydicom = pytest.importorskip("pydicom")
    dataset = pydicom.dcmread(path)
    for name, value in tags.items():
        if value is None:
            delattr(dataset, name)
        else:
            setattr(dataset, name, value)
    dataset.save_as(path)
    return path


def _grey_dicom(tmp_path: Path) -> Path:
    """A 2 x 3 DICOM file of 8-bit greys 0..5."""
    path = tmp_path / "x.dcm"
    write_dicom(path, np.arange(6).reshape(2, 3))
    return path


# --- DICOM headers --------------------------------------------------------------------------


def test_a_dicom_header_is_columns_rows_samples_and_no_orientation(tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    write_dicom(path, np.zeros((5, 7), np.uint8))  # 5 rows, 7 columns
    assert image_header(path) == ImageHeader(width=7, height=5, channels=1, orientation=1)
    assert tuple(image_header(path)) == (7, 5, 1, 1)


def test_a_dicom_header_without_samples_per_pixel_is_one_grey_sample(tmp_path: Path) -> None:
    path = _retag(_grey_dicom(tmp_path), SamplesPerPixel=None)
    assert tuple(image_header(path)) == (3, 2, 1, 1)


def test_an_empty_number_of_frames_is_one_frame(tmp_path: Path) -> None:
    path = _retag(_grey_dicom(tmp_path), NumberOfFrames="")
    assert tuple(image_header(path)) == (3, 2, 1, 1)
    assert read_image(path, 1).shape == (1, 2, 3)


def test_the_dicom_header_is_read_without_its_pixels(tmp_path: Path, monkeypatch) -> None:
    pydicom = pytest.importorskip("pydicom")
    path = _grey_dicom(tmp_path)
    read = pydicom.dcmread
    calls = []

    def spy(*args, **kwargs):
        dataset = read(*args, **kwargs)
        calls.append("PixelData" in dataset)
        return dataset

    monkeypatch.setattr(pydicom, "dcmread", spy)
    assert tuple(image_header(path)) == (3, 2, 1, 1)
    assert calls == [False]  # the pixels (which may be megabytes) were left unread


def test_a_file_that_is_no_dicom_is_refused_by_the_header(tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(b"this is no DICOM file at all" * 10)
    with pytest.raises(ValueError, match="not a readable DICOM file"):
        image_header(path)
    with pytest.raises(ValueError, match="not a readable DICOM file"):
        read_image(path, 1)


@pytest.mark.parametrize("photometric", ["PALETTE COLOR", "RGB"])
def test_a_grey_dicom_of_another_colour_model_is_refused(tmp_path: Path, photometric) -> None:
    path = _retag(_grey_dicom(tmp_path), PhotometricInterpretation=photometric)
    message = rf"PhotometricInterpretation '{photometric}' with 1 sample\(s\) per pixel"
    with pytest.raises(ValueError, match=message + r"; torchlap reads MONOCHROME1 or MONOCHROME2"):
        image_header(path)
    with pytest.raises(ValueError, match=message):
        read_image(path, 1)


def test_reading_dicom_without_pydicom_says_how_to_install_it(tmp_path: Path, monkeypatch):
    path = _grey_dicom(tmp_path)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # `import pydicom` raises ImportError
    for read in (image_header, lambda p: read_image(p, 1)):
        with pytest.raises(ImportError, match=r"needs pydicom: pip install 'torchlap\[dicom\]'"):
            read(path)


# --- PIL headers and the reasons a file is unreadable ----------------------------------------


@pytest.mark.parametrize(
    ("mode", "value", "channels"),
    [("L", 7, 1), ("1", 1, 1), ("I;16", 9, 1), ("RGB", (1, 2, 3), 3), ("RGBA", (1, 2, 3, 4), 3),
     ("P", 0, 3), ("LA", (1, 2), 1), ("CMYK", (0, 0, 0, 0), 3)],
)  # fmt: skip
def test_a_header_counts_grey_modes_as_one_channel(tmp_path, mode, value, channels) -> None:
    path = tmp_path / ("x.tiff" if mode == "CMYK" else "x.png")
    Image.new(mode, (5, 3), value).save(path)
    assert tuple(image_header(path)) == (5, 3, channels, 1)


def test_a_file_that_is_no_image_is_refused_by_the_header(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_text("not a picture")
    with pytest.raises(ValueError, match=r"^not a readable image: cannot identify image file"):
        image_header(path)


def _denied(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


def test_a_file_torchlap_may_not_read_is_said_so(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "x.png"
    Image.new("L", (2, 2)).save(path)
    monkeypatch.setattr(Image, "open", _denied)
    fix = r"cannot be read \(Permission denied\); torchlap needs read access to it: fix the"
    with pytest.raises(ValueError, match="^" + fix) as caught:
        image_header(path)
    assert said_unreadable(caught.value).startswith("cannot be read (Permission denied); ")
    with pytest.raises(ValueError, match=r"x\.png " + fix):
        load_image(path, 1)


def test_said_unreadable_tells_a_permission_from_a_broken_file() -> None:
    assert said_unreadable(ValueError("truncated")) == "is unreadable: truncated"
    assert said_unreadable(OSError("bad")) == "is unreadable: bad"
    assert said_unreadable(PermissionError(13, "Permission denied")) == (
        "cannot be read (Permission denied); torchlap needs read access to it: fix the "
        "file's permissions"
    )
    # a PermissionError without strerror is said by its text
    assert said_unreadable(PermissionError("no access")).startswith("cannot be read (no access);")
    try:  # a ValueError raised from a PermissionError (image_header's) says the permission
        try:
            raise PermissionError(13, "Permission denied")
        except PermissionError as error:
            raise ValueError("wrapped") from error
    except ValueError as wrapped:
        assert said_unreadable(wrapped).startswith("cannot be read (Permission denied);")
    try:  # ... and one raised from another error says itself
        try:
            raise OSError("bad bytes")
        except OSError as error:
            raise ValueError("wrapped") from error
    except ValueError as wrapped:
        assert said_unreadable(wrapped) == "is unreadable: wrapped"


def test_load_image_names_a_missing_file_and_a_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^image file .*gone\.png not found$"):
        load_image(tmp_path / "gone.png", 1)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(FileNotFoundError, match=r"dir\.png is a folder$"):
        load_image(tmp_path / "dir.png", 1)
    (tmp_path / "bad.png").write_text("text")
    with pytest.raises(ValueError, match=r"bad\.png is not a readable image: "):
        load_image(tmp_path / "bad.png", 1)


def _bytes_of(image: Image.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **save)
    return buffer.getvalue()


@pytest.mark.parametrize(("tag", "expected"), [(6, 6), (8, 8), (1, 1), (9, 1), (0, 1)])
def test_the_exif_orientation_is_read_in_1_to_8(tmp_path: Path, tag: int, expected: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = tag
    formats = {"x.jpg": "JPEG", "x.png": "PNG"}
    for name in formats:  # a JPEG's EXIF, and a PNG's eXIf chunk
        (tmp_path / name).write_bytes(
            _bytes_of(Image.new("L", (4, 2), 9), format=formats[name], exif=exif)
        )
        assert image_header(tmp_path / name).orientation == expected, name
        assert read_image_with_orientation(tmp_path / name, 1)[1] == expected, name
    Image.new("L", (4, 2)).save(tmp_path / "plain.png")
    assert image_header(tmp_path / "plain.png").orientation == 1


# --- pixels: bit depths, ranges and channels ------------------------------------------------


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    (Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)).save(path)
    return path


def test_pixels_are_scaled_by_their_bit_depth(tmp_path: Path) -> None:
    eight = _save(tmp_path / "8.png", np.array([[0, 51, 255]], np.uint8))
    torch.testing.assert_close(read_image(eight, 1), torch.tensor([[[0.0, 0.2, 1.0]]]))
    sixteen = _save(tmp_path / "16.png", np.array([[0, 13107, 65535]], np.uint16))
    torch.testing.assert_close(read_image(sixteen, 1), torch.tensor([[[0.0, 0.2, 1.0]]]))
    bits = _save(tmp_path / "1.png", np.array([[True, False, True]]))
    torch.testing.assert_close(read_image(bits, 1), torch.tensor([[[1.0, 0.0, 1.0]]]))


def test_32_bit_integer_pixels_must_lie_in_0_to_65535(tmp_path: Path) -> None:
    fine = _save(tmp_path / "i.tiff", np.array([[0, 65535, 13107]], np.int32), mode="I")
    torch.testing.assert_close(read_image(fine, 1), torch.tensor([[[0.0, 1.0, 0.2]]]))
    for values, shown in [([0, 65536], r"\[0, 65536\]"), ([-1, 7], r"\[-1, 7\]")]:
        path = _save(tmp_path / "bad.tiff", np.array([values], np.int32), mode="I")
        message = rf"32-bit integer \(mode I\) image has values in {shown}; torchlap reads"
        with pytest.raises(ValueError, match=message + r" .* pixels in \[0, 65535\]"):
            read_image(path, 1)


def test_float_pixels_must_lie_in_0_to_1_up_to_rounding(tmp_path: Path) -> None:
    # 1e-6 of the span is float rounding: taken and clipped; more is refused
    near = _save(tmp_path / "f.tiff", np.array([[0.0, 0.25, 1.0 + 5e-7, -5e-7]], np.float32))
    torch.testing.assert_close(
        read_image(near, 1), torch.tensor([[[0.0, 0.25, 1.0, 0.0]]]), rtol=0, atol=0
    )
    for values in ([0.0, 1.00001], [-0.00001, 0.5], [0.0, 255.0]):
        path = _save(tmp_path / "bad.tiff", np.array([values], np.float32))
        with pytest.raises(ValueError, match=r"float \(mode F\) image has values in .*: rescale"):
            read_image(path, 1)
    nan = _save(tmp_path / "nan.tiff", np.array([[0.5, np.nan]], np.float32))
    with pytest.raises(ValueError, match=r"^this float \(mode F\) image holds NaN pixels"):
        read_image(nan, 1)


def test_colour_is_converted_by_luma_and_grey_repeated(tmp_path: Path) -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [51, 102, 255]]], np.uint8)
    path = _save(tmp_path / "rgb.png", rgb)
    luma = [0.299, 0.587, 0.114, 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 1.0]  # ITU-R 601-2
    torch.testing.assert_close(read_image(path, 1), torch.tensor([[luma]]))
    torch.testing.assert_close(
        read_image(path, 3), torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    )
    grey = _save(tmp_path / "grey.png", np.array([[0, 51]], np.uint8))
    torch.testing.assert_close(read_image(grey, 3), torch.tensor([[[0.0, 0.2]]] * 3))
    assert read_image(grey, 3).is_contiguous()
    la = _save(tmp_path / "la.png", np.array([[[51, 0], [255, 255]]], np.uint8), mode="LA")
    torch.testing.assert_close(read_image(la, 1), torch.tensor([[[0.2, 1.0]]]))  # alpha dropped
    rgba = np.array([[[255, 0, 0, 0], [0, 0, 255, 255]]], np.uint8)
    rgba_path = _save(tmp_path / "rgba.png", rgba)
    torch.testing.assert_close(
        read_image(rgba_path, 3), torch.tensor([[[1.0, 0]], [[0, 0]], [[0, 1.0]]])
    )
    with pytest.raises(ValueError, match="channels"):
        read_image(grey, 2)


def test_load_image_resizes_only_with_an_image_size(tmp_path: Path) -> None:
    path = _save(tmp_path / "g.png", np.full((3, 5), 51, np.uint8))
    assert load_image(path, 1).shape == (1, 3, 5)
    torch.testing.assert_close(load_image(path, 1, 4), torch.full((1, 4, 4), 0.2))
    assert load_image(path, 3, (2, 6)).shape == (3, 2, 6)


# --- DICOM pixels ---------------------------------------------------------------------------


def test_dicom_pixels_are_scaled_by_bits_stored(tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    write_dicom(path, np.array([[0, 1023, 4095]]), bits_stored=12)
    torch.testing.assert_close(read_image(path, 1), torch.tensor([[[0.0, 1023 / 4095, 1.0]]]))
    assert read_image(path, 3).shape == (3, 1, 3)
    write_dicom(path, np.array([[0, 51, 255]]), bits_stored=8, photometric="MONOCHROME1")
    torch.testing.assert_close(read_image(path, 1), torch.tensor([[[1.0, 0.8, 0.0]]]))


def test_dicom_pixel_data_longer_than_its_header_says_is_refused(tmp_path: Path) -> None:
    path = _grey_dicom(tmp_path)  # 2 x 3 pixels of 8 bits: 6 bytes
    _retag(path, PixelData=bytes(range(9)) + b"\0")  # 10 bytes: no whole frames
    message = r"holds 10 bytes of pixels, but its header describes 2 x 3 pixels of 8 bits \(6"
    with pytest.raises(ValueError, match=message):
        read_image(path, 1)
    _retag(path, PixelData=bytes(12))  # two whole frames without a NumberOfFrames tag
    with pytest.raises(ValueError, match=r"holds 2 frames \(12 bytes of 6-byte frames\)"):
        read_image(path, 1)
    _retag(path, PixelData=bytes(8))  # (an odd length is padded to even when written)
    with pytest.raises(ValueError, match=r"holds 8 bytes of pixels, .* \(6 bytes\)"):
        read_image(path, 1)
    odd = tmp_path / "odd.dcm"  # 3 x 3 pixels: 9 bytes, stored as 10 with its pad byte
    write_dicom(odd, np.arange(9).reshape(3, 3))
    torch.testing.assert_close(read_image(odd, 1), torch.arange(9.0).reshape(1, 3, 3) / 255)


# --- masks ----------------------------------------------------------------------------------


def _expect(path: Path, region: list[list[int]]) -> None:
    mask = read_mask(path)
    assert mask.dtype == torch.uint8, path.name
    assert mask.tolist() == region, path.name


def test_grey_masks_are_region_where_non_zero(tmp_path: Path) -> None:
    _expect(_save(tmp_path / "l.png", np.array([[0, 1, 255]], np.uint8)), [[0, 1, 1]])
    _expect(_save(tmp_path / "b.png", np.array([[True, False]])), [[1, 0]])
    _expect(_save(tmp_path / "16.png", np.array([[0, 1, 65535]], np.uint16)), [[0, 1, 1]])
    _expect(_save(tmp_path / "i.tiff", np.array([[0, 7]], np.int32), mode="I"), [[0, 1]])
    _expect(_save(tmp_path / "f.tiff", np.array([[0.0, 0.5, 3.0]], np.float32)), [[0, 1, 1]])
    negative = _save(tmp_path / "neg.tiff", np.array([[0, -1]], np.int32), mode="I")
    with pytest.raises(ValueError, match=r"neg\.tiff holds NaN, infinite or negative pixels"):
        read_mask(negative)


def test_colour_masks_are_region_where_a_colour_is_non_zero_and_opaque(tmp_path: Path) -> None:
    rgb = np.array([[[0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 9, 0]]], np.uint8)
    _expect(_save(tmp_path / "rgb.png", rgb), [[0, 1, 1, 1]])
    rgba = np.array([[[0, 0, 0, 255], [0, 0, 1, 255], [9, 9, 9, 0], [0, 0, 1, 1]]], np.uint8)
    _expect(_save(tmp_path / "rgba.png", rgba), [[0, 1, 0, 1]])
    la = np.array([[[0, 255], [5, 0], [5, 255], [5, 1]]], np.uint8)
    _expect(_save(tmp_path / "la.png", la, mode="LA"), [[0, 0, 1, 1]])
    # CMYK: (0, 0, 0, 255) is black, (0, 0, 0, 0) white: read by the colour it shows
    cmyk = Image.frombytes("CMYK", (2, 1), bytes([0, 0, 0, 255, 0, 0, 0, 0]))
    cmyk.save(tmp_path / "cmyk.tiff")
    _expect(tmp_path / "cmyk.tiff", [[0, 1]])
    # a grey mask with a transparent value: that value is alpha 0, never region
    grey = Image.fromarray(np.array([[0, 7, 9]], np.uint8))
    grey.save(tmp_path / "t.png", transparency=7)
    _expect(tmp_path / "t.png", [[0, 0, 1]])


def test_a_camera_jpeg_with_extra_frames_reads_its_first(tmp_path: Path) -> None:
    # an MPO (a camera's JPEG with a depth map or preview after it) is no multi-page image
    first, extra = Image.new("RGB", (4, 2), (255, 0, 0)), Image.new("RGB", (4, 2), (0, 0, 255))
    first.save(tmp_path / "x.mpo", format="MPO", save_all=True, append_images=[extra])
    assert getattr(Image.open(tmp_path / "x.mpo"), "n_frames", 1) == 2
    assert tuple(image_header(tmp_path / "x.mpo")) == (4, 2, 3, 1)
    red = read_image(tmp_path / "x.mpo", 3).mean(dim=(1, 2))
    assert red[0] > 0.9 and red[2] < 0.1


def test_an_rgb_dicom_reads_its_three_samples(tmp_path: Path) -> None:
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[0, 0] = (255, 0, 51)
    pixels[1, 2] = (0, 255, 0)
    path = _retag(
        _grey_dicom(tmp_path),
        SamplesPerPixel=3,
        PhotometricInterpretation="RGB",
        PlanarConfiguration=0,
        PixelData=pixels.tobytes(),  # 2 x 3 pixels x 3 samples of 8 bits: 18 bytes
    )
    assert tuple(image_header(path)) == (3, 2, 3, 1)
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(read_image(path, 3), expected)
    luma = 0.299 * expected[0] + 0.587 * expected[1] + 0.114 * expected[2]
    torch.testing.assert_close(read_image(path, 1), luma[None])
    _retag(path, PixelData=bytes(36))  # two frames of 18 bytes without a NumberOfFrames tag
    with pytest.raises(ValueError, match=r"holds 2 frames \(36 bytes of 18-byte frames\)"):
        read_image(path, 3)
