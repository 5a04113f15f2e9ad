"""The one image decoder of torchlap: image files (PIL), DICOM (pydicom) and masks.

Pixels become float32 in [0, 1] by their bit depth (8-bit / 255, 16-bit / 65535, DICOM by
``BitsStored``, MONOCHROME1 inverted); :func:`load_image` adds the evaluation resize. Data
loading (:class:`torchlap.data.folder.AnnotatedFolder`) and ``torchlap explain`` both read
through here, so an image gives the same tensor at training and at explanation time.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2.functional import resize

from torchlap._checks import check_channels
from torchlap.data.transforms import size_pair
from torchlap.io import as_path
from torchlap.io import not_a_file as what_stands_there

__all__ = [
    "DICOM_SUFFIXES",
    "ImageHeader",
    "has_transparency",
    "image_header",
    "load_image",
    "not_a_file",
    "read_image",
    "read_image_with_orientation",
    "read_mask",
    "said_unreadable",
]

logger = logging.getLogger(__name__)

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


class ImageHeader(NamedTuple):
    """What :func:`image_header` reads: size, channels and the EXIF orientation tag (1 when
    absent; DICOM files have none)."""

    width: int
    height: int
    channels: int
    orientation: int = 1


def _unreadable(error: BaseException) -> str:
    """Why an image cannot be read: a file torchlap may not read said so (not "not an image")."""
    if isinstance(error, PermissionError):
        return (
            f"cannot be read ({error.strerror or error}); torchlap needs read access to it: "
            "fix the file's permissions"
        )
    return f"not a readable image: {error}"


def said_unreadable(error: BaseException) -> str:
    """What follows a file's name in a message refusing it for ``error`` (raised reading it,
    or by :func:`image_header` from it): ``cannot be read (Permission denied); ...`` for a
    file torchlap may not read, else ``is unreadable: <error>``."""
    denied = error if isinstance(error, PermissionError) else error.__cause__
    return _unreadable(denied) if isinstance(denied, PermissionError) else f"is unreadable: {error}"


def image_header(path: Path) -> ImageHeader:
    """(width, height, channels, orientation) of an image or DICOM file without decoding its
    pixels.

    Raises ValueError if the file is not a readable image, or is a DICOM file of several
    frames (torchlap reads single-frame images).
    """
    if _is_dicom(path):
        pydicom = _import_pydicom()
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            columns, rows = int(header.Columns), int(header.Rows)
            samples = int(getattr(header, "SamplesPerPixel", 1))
            frames = int(getattr(header, "NumberOfFrames", 1) or 1)
        except Exception as error:  # pydicom raises many types for broken files
            raise ValueError(f"not a readable DICOM file: {error}") from error
        _check_single_frame(frames)
        _check_dicom_header(header, samples)  # (its colour model; no pixels read here)
        return ImageHeader(columns, rows, samples)
    try:
        with _open_image(path) as image:
            width, height = image.size
            channels = 1 if image.mode in _GRAY_MODES else 3
            return ImageHeader(width, height, channels, _orientation(image))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(_unreadable(error)) from error


_ORIENTATION_TAG = 0x0112


def not_a_file(path: Path) -> str:
    """Why ``path`` is no regular file, for a message ("image file X <this>"): what stands
    there instead (:func:`torchlap.io.not_a_file`), else why it was not found."""
    there = what_stands_there(path)
    if there is not None:
        return f"is {there}"
    slashed = Path(str(path).replace("\\", "/"))
    if slashed != path and slashed.is_file():  # a CSV written on Windows
        return (
            f"not found: paths use '/' between folders (a '\\' is part of a file name here), "
            f"and {slashed} exists; write the path with '/'"
        )
    return "not found"


@contextlib.contextmanager
def _open_image(path: str | os.PathLike[str]) -> Iterator[Image.Image]:
    """``Image.open`` with PIL's decompression-bomb refusal as a ValueError naming the file
    (PIL's own message names neither the file nor what to do)."""
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ValueError(
            f"image {path} is too large to decode safely ({error}); torchlap reads images of up "
            f"to PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels: downscale it"
        ) from None
    with image:
        # not frame 0 of a multi-page TIFF or an animation in silence; nor a colour space PIL
        # cannot convert to RGB (LAB's "a" band would be read as alpha)
        if image.format != "MPO":  # a camera JPEG's extra frames (depth map, preview)
            _check_single_frame(getattr(image, "n_frames", 1), kind=f"{image.format} image {path}")
        if image.mode in ("LAB", "HSV"):
            raise ValueError(
                f"image {path} is in the {image.mode} colour space, which torchlap does not "
                "convert; save it as RGB or grayscale"
            )
        if image.format == "TIFF":
            _refuse_tiff_orientation(image, path)
        yield image


def _refuse_tiff_orientation(image: Image.Image, path: str | os.PathLike[str]) -> None:
    """PIL applies a TIFF's orientation tag when it opens and decodes it (Pillow 13: the size
    of 5-8 is swapped at once, the pixels flipped or scrambled): torchlap, which reads stored
    pixels, cannot read such a file as stored, so it is refused naming the file."""
    orientation = _orientation(image)
    if orientation != 1:
        raise ValueError(
            f"image {path} is a TIFF with EXIF orientation {orientation}, which PIL applies "
            "when it reads the file, so its stored pixels (in whose coordinates torchlap reads "
            "images, boxes and masks) cannot be read: save it with the orientation tag removed "
            "(or set to 1), e.g. as PNG"
        )


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag of an opened image (1, the stored pixels as they are, when
    absent). PNG keeps EXIF in a chunk that may follow the pixels: an unloaded PNG without it
    in its header reads as 1 rather than being decoded here (``getexif`` would decode it)."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block: PIL still decodes the pixels, as torchlap does
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _check_single_frame(frames: int, detail: str = "", kind: str = "DICOM file") -> None:
    if frames != 1:
        raise ValueError(
            f"this {kind} holds {frames} frames{detail}; torchlap reads single-frame "
            "images: save each frame (slice) you want as its own file"
        )


def _array_to_unit(array: np.ndarray, mode: str) -> np.ndarray:
    """Pixel array -> float32 in [0, 1] by the value range its mode implies.

    32-bit integer (mode ``I``) and float (mode ``F``) images have no bit depth that fixes
    their range: integers must lie in [0, 65535] (a 16-bit image stored as 32 bits), floats in
    [0, 1]. Values outside are refused (ValueError saying the range found), not clipped: a CT
    slice in Hounsfield units or a float image in [0, 255] would otherwise become a
    saturated image without a word.
    """
    if mode.startswith("I;16") or array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if mode == "I":
        _check_range(array, 0, 65535, "32-bit integer (mode I)", "save it as 8 or 16-bit")
        return array.astype(np.float32) / 65535.0
    if mode == "F":
        _check_range(array, 0.0, 1.0, "float (mode F)", "rescale it to [0, 1]")
        return np.clip(array.astype(np.float32), 0.0, 1.0)  # only float rounding is clipped
    if array.dtype == bool:
        return array.astype(np.float32)
    return array.astype(np.float32) / 255.0


def _check_range(array: np.ndarray, low: float, high: float, kind: str, fix: str) -> None:
    """ValueError unless every value of ``array`` lies in [low, high] (up to 1e-6 of the span
    for float rounding)."""
    if array.size == 0:
        return
    if np.isnan(array).any():
        raise ValueError(f"this {kind} image holds NaN pixels; torchlap needs finite pixels")
    found_low, found_high = float(array.min()), float(array.max())
    slack = 1e-6 * (high - low)
    if found_low < low - slack or found_high > high + slack:
        raise ValueError(
            f"this {kind} image has values in [{found_low:g}, {found_high:g}]; torchlap reads "
            f"{kind} pixels in [{low:g}, {high:g}] as intensities: {fix}"
        )


def _has_transparency(image: Image.Image) -> bool:
    """True if some pixel of an opened image is not fully opaque: an alpha band below 255, or a
    palette entry or single colour marked transparent (PNG's tRNS) that some pixel has (an
    opaque image whose tRNS names a colour it does not use is not transparent)."""
    if "transparency" in image.info:
        try:
            return image.convert("RGBA").getchannel("A").getextrema()[0] < 255
        except ValueError:  # a mode PIL does not convert: taken as transparent, as it says
            return True
    if "A" not in image.getbands():
        return False
    return image.getchannel("A").getextrema()[0] < 255


def has_transparency(path: str | os.PathLike[str]) -> bool:
    """True if the image file has pixels that are not fully opaque (their alpha is dropped
    when torchlap reads it, see :func:`read_image`). DICOM files have no alpha: False."""
    path = Path(path)
    if _is_dicom(path):
        return False
    with _open_image(path) as image:
        return _has_transparency(image)


_warned_alpha: set[str] = set()


def _warn_alpha(path: Path) -> None:
    """Say once per process that images with transparent pixels lose their alpha."""
    if not _warned_alpha:
        _warned_alpha.add(str(path))
        logger.warning(
            "%s has transparent pixels: torchlap drops the alpha channel, as torchvision's "
            "ImageFolder does, and keeps the colour stored under them; if that colour is "
            "arbitrary, flatten the images onto a background first (said once; "
            "`torchlap data check` counts such images)",
            path,
        )


def read_image(path: Path, channels: int) -> Tensor:
    """Decode an image (PIL) or DICOM (pydicom) to a float32 (channels, H, W) tensor in [0, 1].

    Grayscale 8/16-bit images are scaled by their bit depth; RGB is converted to one channel
    by PIL's luma transform when ``channels == 1``; grayscale is repeated for ``channels == 3``.
    An alpha channel is dropped, as torchvision's ``ImageFolder`` does (a warning, once per
    process, names the first image with transparent pixels). 32-bit integer and float images
    must hold values in [0, 65535] and [0, 1]; ValueError otherwise. The stored pixels are
    read: an EXIF orientation tag is not applied (as torchvision does not); a TIFF with one
    other than 1, which PIL applies when reading it, is refused (ValueError), as is a DICOM
    file of several frames.
    """
    return read_image_with_orientation(path, channels)[0]


def read_image_with_orientation(path: Path, channels: int) -> tuple[Tensor, int]:
    """:func:`read_image` and the image's EXIF orientation tag (1 when absent, or DICOM)."""
    check_channels(channels)
    orientation = 1
    if _is_dicom(path):
        array = _read_dicom(path)
    else:
        with _open_image(path) as image:
            image.load()
            orientation = _orientation(image)
            if _has_transparency(image):
                _warn_alpha(path)
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
        return tensor.contiguous(), orientation
    if channels == 3:
        return tensor.expand(3, -1, -1).contiguous(), orientation
    # RGB -> luma with ITU-R 601-2 weights, as PIL's convert("L")
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=tensor.dtype)[:, None, None]
    return (tensor[:3] * weights).sum(dim=0, keepdim=True), orientation


#: the colour models of the DICOM files torchlap decodes, by samples per pixel
_DICOM_PHOTOMETRIC = {1: ("MONOCHROME1", "MONOCHROME2")}


def _check_dicom_header(dataset: Any, samples: int) -> None:
    """Refuse a DICOM header that does not describe its pixels: a grey image (one sample per
    pixel) of another colour model (a palette's indices would be read as greys), empty pixel
    data, or uncompressed pixel data longer than ``Rows x Columns`` (pydicom drops the rest
    with a warning: the header's size is not the image's)."""
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2"))
    accepted = _DICOM_PHOTOMETRIC.get(samples)
    if accepted is not None and photometric not in accepted:
        raise ValueError(
            f"this DICOM file has PhotometricInterpretation {photometric!r} with {samples} "
            f"sample(s) per pixel; torchlap reads {' or '.join(accepted)} (grey) with one "
            "sample per pixel, RGB with three"
        )
    if "PixelData" not in dataset:
        return  # (pydicom names the missing element)
    data = dataset.PixelData
    if not data:
        raise ValueError("this DICOM file's PixelData is empty: it holds no pixels")
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or syntax.is_compressed or samples not in (1, 3):
        return  # (pydicom decodes, or names the bad element)
    try:
        size = int(dataset.Rows) * int(dataset.Columns) * samples * int(dataset.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return  # (pydicom names the missing or bad element)
    expected = (size + 7) // 8
    if expected and len(data) > expected + 1:  # (one byte pads an odd length)
        if len(data) % expected in (0, 1):  # whole frames without a NumberOfFrames tag
            frames = len(data) // expected
            _check_single_frame(frames, f" ({len(data)} bytes of {expected}-byte frames)")
        raise ValueError(
            f"this DICOM file holds {len(data)} bytes of pixels, but its header describes "
            f"{dataset.Rows} x {dataset.Columns} pixels of {dataset.BitsAllocated} bits "
            f"({expected} bytes): its Rows/Columns do not fit its pixels"
        )


def _read_dicom(path: Path) -> np.ndarray:
    """DICOM pixels scaled to [0, 1] by BitsStored; MONOCHROME1 is inverted."""
    pydicom = _import_pydicom()
    try:
        dataset = pydicom.dcmread(path)
    except Exception as error:  # pydicom raises many types for broken files
        raise ValueError(f"not a readable DICOM file: {error}") from error
    _check_single_frame(int(getattr(dataset, "NumberOfFrames", 1) or 1))
    samples = int(getattr(dataset, "SamplesPerPixel", 1))
    _check_dicom_header(dataset, samples)
    try:
        array = dataset.pixel_array.astype(np.float32)
    except Exception as error:  # pydicom: AttributeError for a missing element, and others
        raise ValueError(f"the pixels of this DICOM file cannot be decoded: {error}") from None
    expected = 2 if samples == 1 else 3
    if array.ndim != expected:  # frames without a NumberOfFrames tag, or a broken header
        shape = f"pixel array of shape {tuple(array.shape)} for {samples} sample(s) per pixel"
        if array.ndim > expected:
            _check_single_frame(array.shape[0], f" ({shape})")
        raise ValueError(f"this DICOM file has a {shape}; expected (rows, columns[, samples])")
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
    path = as_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} {not_a_file(path)}")
    try:
        image = read_image(path, channels)
    except PermissionError as error:  # (the file is fine, its permissions are not)
        raise ValueError(f"{path} {_unreadable(error)}") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable image: {error}") from None
    if image_size is None:
        return image
    return resize(image, list(size_pair(image_size)), antialias=True)


# masks read as stored; any other mode (palette, CMYK, YCbCr, ...) is converted to RGBA first
_MASK_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N", "RGB", "RGBA"}

#: the formats (PIL's names) masks are read from: lossless ones (WebP only when lossless, TIFF
#: unless JPEG- or WebP-compressed); PPM is PIL's name for PPM, PGM, PBM and PFM
_MASK_FORMATS = ("PNG", "BMP", "TIFF", "GIF", "PPM", "WEBP")
_ACCEPTED_MASKS = "PNG, BMP, TIFF (not JPEG-compressed), GIF, PPM/PGM/PBM or lossless WebP"
#: lossy formats, as a message names them
_LOSSY_MASKS = {"JPEG": "a JPEG", "MPO": "an MPO (a camera's JPEG)", "JPEG2000": "a JPEG 2000"}
_LOSSY_TIFF = {"jpeg", "tiff_jpeg", "webp"}


def _webp_is_lossless(path: str | os.PathLike[str]) -> bool:
    """Whether a WebP file's (first) image is lossless: its image chunk is ``VP8L``, not
    ``VP8 `` (lossy). The chunks of the RIFF container are walked from the start (an extended
    file's ``VP8X``, ``ICCP``, ``ALPH``, ``ANIM`` ... come first; an animation frame's ``ANMF``
    holds its image chunk after 16 bytes of frame header). PIL does not say which it is."""
    with open(path, "rb") as file:
        if file.read(12)[8:] != b"WEBP":
            return False
        for _ in range(64):  # (a valid file's image chunk comes within a few chunks)
            header = file.read(8)
            if len(header) < 8:
                return False
            kind, size = header[:4], int.from_bytes(header[4:], "little")
            if kind in (b"VP8L", b"VP8 "):
                return kind == b"VP8L"
            file.seek(16 if kind == b"ANMF" else size + (size & 1), os.SEEK_CUR)
    return False


def _refuse_lossy_mask(image: Image.Image, path: Path) -> None:
    """ValueError naming a mask file that is not in a lossless format torchlap reads masks
    from (``_MASK_FORMATS``): lossy compression spreads a mask's edges into region."""
    kind = image.format or "unknown"
    lossy = _LOSSY_MASKS.get(kind)
    if kind == "WEBP" and not _webp_is_lossless(path):
        lossy = "a lossy WebP"
    if kind == "TIFF" and image.info.get("compression") in _LOSSY_TIFF:
        lossy = f"a TIFF compressed with {image.info['compression']}"
    if lossy is not None:
        raise ValueError(
            f"mask {path} is {lossy}: lossy compression spreads its edges (a 20x20 box saved "
            f"as JPEG reads as more than 400 pixels); masks are read from lossless formats "
            f"only ({_ACCEPTED_MASKS}): save it losslessly, e.g. as PNG"
        )
    if kind not in _MASK_FORMATS:
        raise ValueError(
            f"mask {path} is in the {kind} format, which torchlap does not read masks from; masks "
            f"are read from lossless formats only ({_ACCEPTED_MASKS}): save it e.g. as PNG"
        )


def read_mask(path: Path) -> Tensor:
    """A mask file as a (H, W) uint8 tensor: 1 = region, 0 = background.

    A pixel is region when any of its colour channels is non-zero and it is not fully
    transparent: the alpha channel (RGBA, LA) is not a colour, and a pixel of alpha 0 is never
    region whatever colour is stored under it. Palette (P) masks are read by their colours
    (the palette's transparent entries as alpha 0), not by their palette indices, so a mask
    shows as region what it is read as; other colour modes (CMYK, ...) are converted to RGB.
    Grayscale masks (1, L, 16-bit, I, F): every non-zero pixel is region; a NaN, infinite or
    negative pixel (a float or 32-bit mask whose background is not 0) is refused, naming the
    file, as is a mask in a lossy format (JPEG, MPO, JPEG 2000, lossy WebP, a JPEG-compressed
    TIFF: its edges blur into region) or in another format than the lossless ones read
    (PNG, BMP, TIFF, GIF, PPM/PGM/PBM, lossless WebP).
    """
    with _open_image(path) as image:
        _refuse_lossy_mask(image, path)
        image.load()
        if image.mode not in _MASK_MODES or "transparency" in image.info:
            image = image.convert("RGBA")
        bands = image.getbands()
        array = np.asarray(image)
    if array.dtype.kind in "if" and not bool((np.isfinite(array) & (array >= 0)).all()):
        raise ValueError(
            f"mask {path} holds NaN, infinite or negative pixels; a mask is 0 for background "
            "and non-zero (e.g. 1 or 255) for region"
        )
    if array.ndim == 2:
        return torch.from_numpy(np.ascontiguousarray(array != 0)).to(torch.uint8)
    colour = [k for k, band in enumerate(bands) if band != "A"]
    region = (array[..., colour] != 0).any(axis=-1)
    if "A" in bands:
        region &= array[..., bands.index("A")] != 0
    return torch.from_numpy(np.ascontiguousarray(region)).to(torch.uint8)
