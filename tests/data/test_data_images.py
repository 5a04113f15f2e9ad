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


@pytest.mark.parametrize(
    ("name", "pixels", "message"),
    [
        # a float image saved in [0, 255] used to be clipped to a white image
        ("f.tif", np.full((4, 4), 200.0, np.float32), r"float \(mode F\) image has values in "
         r"\[200, 200\].*\[0, 1\].*rescale"),
        ("n.tif", np.full((4, 4), np.nan, np.float32), "NaN pixels"),
        # a CT slice in Hounsfield units stored as 32-bit integers: negative values
        ("i.tif", np.full((4, 4), -1000, np.int32), r"mode I\) image has values in \[-1000"),
        ("j.tif", np.full((4, 4), 70000, np.int32), r"\[70000, 70000\].*\[0, 65535\]"),
    ],
)  # fmt: skip
def test_out_of_range_pixels_are_refused_not_clipped(
    tmp_path: Path, name: str, pixels: np.ndarray, message: str
) -> None:
    Image.fromarray(pixels).save(tmp_path / name)
    with pytest.raises(ValueError, match=message) as caught:
        load_image(tmp_path / name, 1)
    assert name in str(caught.value)  # the file is named


def test_in_range_float_and_int32_images_read_as_intensities(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)).save(tmp_path / "f.tif")
    Image.fromarray(np.array([[0, 65535]], np.int32)).save(tmp_path / "i.tif")
    torch.testing.assert_close(load_image(tmp_path / "f.tif", 1),
                               torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))  # fmt: skip
    torch.testing.assert_close(load_image(tmp_path / "i.tif", 1), torch.tensor([[[0.0, 1.0]]]))


def test_transparent_pixels_are_reported(tmp_path: Path, caplog, monkeypatch) -> None:
    from torchlap.data import images as images_module
    from torchlap.data.images import has_transparency

    monkeypatch.setattr(images_module, "_warned_alpha", set())
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray(rgba).save(tmp_path / "b.png")
    palette = Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").convert("P")
    palette.save(tmp_path / "p.png", transparency=0)
    assert not has_transparency(tmp_path / "opaque.png")
    assert has_transparency(tmp_path / "a.png") and has_transparency(tmp_path / "p.png")
    with caplog.at_level("WARNING", logger="torchlap.data.images"):
        image = load_image(tmp_path / "opaque.png", 3)
        assert not caplog.records  # an opaque RGBA image: nothing to say
        load_image(tmp_path / "a.png", 3)
        load_image(tmp_path / "b.png", 3)
    (record,) = caplog.records  # said once per process, naming the first file
    assert "a.png has transparent pixels" in record.getMessage()
    # the alpha is dropped and the colour kept, as torchvision's ImageFolder does
    torch.testing.assert_close(load_image(tmp_path / "a.png", 3), image)


def _square(size: int = 16) -> np.ndarray:
    """A (size, size) bool mask holding a 5x5 square: the region every mask below draws."""
    square = np.zeros((size, size), bool)
    square[3:8, 4:9] = True
    return square


def _mask_files(root: Path) -> dict[str, Path]:
    """The square as masks of several PNG modes, each with an opaque or coloured background
    that must not count as region."""
    square = _square()
    files = {}
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 3] = 255  # opaque black background: alpha is not a colour
    rgba[square, :3] = 255
    files["rgba"] = rgba
    transparent = np.full((16, 16, 4), 255, np.uint8)  # white but fully transparent
    transparent[~square, 3] = 0
    files["rgba_transparent_white"] = transparent
    la = np.zeros((16, 16, 2), np.uint8)
    la[..., 1] = 255
    la[square, 0] = 255
    files["la"] = la
    paths = {}
    for name, array in files.items():
        Image.fromarray(array, mode="LA" if name == "la" else "RGBA").save(root / f"{name}.png")
        paths[name] = root / f"{name}.png"
    # palette masks are read by their colours, not their indices: index 0 may be white
    palette = Image.fromarray(np.where(square, 1, 0).astype(np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    palette.save(root / "p.png")
    inverted = Image.fromarray(np.where(square, 0, 1).astype(np.uint8), mode="P")
    inverted.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    inverted.save(root / "p_white_index0.png")
    with_alpha = Image.fromarray(np.where(square, 1, 0).astype(np.uint8), mode="P")
    with_alpha.putpalette([255, 255, 255, 255, 0, 0] + [0] * 762)
    with_alpha.save(root / "p_transparent_index0.png", transparency=0)
    for name in ("p", "p_white_index0", "p_transparent_index0"):
        paths[name] = root / f"{name}.png"
    Image.fromarray(square.astype(np.uint8) * 255, mode="L").save(root / "l.png")
    paths["l"] = root / "l.png"
    return paths


def test_masks_of_every_mode_read_the_drawn_region(tmp_path: Path) -> None:
    # an RGBA mask counted its alpha as a colour: every opaque pixel became region
    from torchlap.data.images import read_mask

    expected = torch.from_numpy(_square()).to(torch.uint8)
    for name, path in _mask_files(tmp_path).items():
        mask = read_mask(path)
        assert mask.dtype == torch.uint8 and torch.equal(mask, expected), name


def test_rgba_mask_in_a_folder_supervises_its_square(tmp_path: Path) -> None:
    paths = _mask_files(tmp_path)
    rows = "".join(
        f"img{k}.png,{'ab'[k % 2]},{split},,,,,{paths['rgba'].name if k == 0 else ''}\n"
        for k, split in enumerate(["train", "train", "val", "val", "test", "test"])
    )
    for k in range(6):
        Image.new("L", (16, 16), 50).save(tmp_path / f"img{k}.png")
    (tmp_path / "annotations.csv").write_text(
        "image,label,split,x_min,y_min,x_max,y_max,mask\n" + rows
    )
    sample = load_dataset(tmp_path, split="train", image_size=None)[0]
    assert int(sample["mask"].sum()) == 25 and sample["has_region"]


@pytest.mark.filterwarnings("ignore:The number of bytes of pixel data")
@pytest.mark.parametrize("frame_tag", [True, False])
def test_multi_frame_dicom_is_refused(tmp_path: Path, frame_tag: bool) -> None:
    # its (3, 64, 64) pixel array used to be read as 64 x 64 pixels of 3... read as (1, 3, 64)
    from torchlap.data.images import image_header
    from torchlap.data.images import read_image as decode

    path = tmp_path / "frames.dcm"
    write_dicom(path, np.zeros((3, 64, 64), np.uint8), frame_tag=frame_tag)
    with pytest.raises(ValueError, match=r"holds 3 frames.*torchlap reads single-frame images"):
        decode(path, 1)
    with pytest.raises(ValueError, match=r"frames\.dcm is not a readable image: .* 3 frames"):
        load_image(path, 1)
    if frame_tag:  # the header says so: refused before any pixel is decoded
        with pytest.raises(ValueError, match="holds 3 frames"):
            image_header(path)
    write_dicom(tmp_path / "one.dcm", np.zeros((64, 64), np.uint8))
    assert decode(tmp_path / "one.dcm", 1).shape == (1, 64, 64)


@pytest.mark.parametrize("background", [float("nan"), -1.0, float("inf")])
def test_a_float_mask_with_a_background_that_is_not_zero_is_refused(tmp_path, background):
    """Before: a float TIFF mask with NaN or -1 as background made the whole image region."""
    from torchlap.data.images import read_mask

    array = np.full((8, 8), background, dtype=np.float32)
    array[2:4, 2:4] = 1.0
    path = tmp_path / "mask.tiff"
    Image.fromarray(array, mode="F").save(path)
    with pytest.raises(ValueError, match="holds NaN, infinite or negative pixels"):
        read_mask(path)


def test_a_jpeg_mask_is_refused(tmp_path):
    """Before: a 20x20 box saved as JPEG read as 476 region pixels."""
    from torchlap.data.images import read_mask

    array = np.zeros((40, 40), dtype=np.uint8)
    array[10:30, 10:30] = 255
    Image.fromarray(array).save(tmp_path / "mask.jpg")
    with pytest.raises(ValueError, match="is a JPEG: lossy compression"):
        read_mask(tmp_path / "mask.jpg")


def _square_mask() -> Image.Image:
    array = np.zeros((40, 40), dtype=np.uint8)
    array[10:30, 10:30] = 255
    return Image.fromarray(array)


_EXIF = Image.Exif()
_EXIF[0x0112] = 1  # (an EXIF block makes WebP's extended layout, VP8X before the image)

# name -> (file name, save options, what the refusal calls it)
LOSSY_MASKS = {
    "lossy webp": ("mask.webp", {"quality": 50}, "a lossy WebP: lossy compression"),
    "lossy webp, extended": (
        "mask.webp",
        {"quality": 50, "exif": _EXIF.tobytes()},
        "a lossy WebP: lossy compression",
    ),
    "jpeg 2000": ("mask.jp2", {"irreversible": True}, "a JPEG 2000: lossy compression"),
    "mpo": (
        "mask.mpo",
        {"save_all": True, "append_images": [Image.new("L", (40, 40))]},
        r"an MPO \(a camera's JPEG\): lossy compression",
    ),
    "jpeg tiff": ("mask.tiff", {"compression": "jpeg"}, "a TIFF compressed with jpeg: lossy"),
    "tga": ("mask.tga", {}, "in the TGA format, which torchlap does not read masks from"),
}


@pytest.mark.parametrize("case", sorted(LOSSY_MASKS))
def test_a_mask_in_a_lossy_or_unknown_format_is_refused(tmp_path: Path, case: str) -> None:
    """Before: only JPEG was refused; a lossy WebP of a 20x20 square read as 426 pixels."""
    from torchlap.data.images import read_mask

    name, options, said = LOSSY_MASKS[case]
    _square_mask().save(tmp_path / name, **options)
    accepted = r"lossless formats only \(PNG, BMP, TIFF \(not JPEG-compressed\), GIF, .*WebP\)"
    with pytest.raises(ValueError, match=rf"mask .*{name} is {said}.*{accepted}"):
        read_mask(tmp_path / name)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("mask.webp", {"lossless": True}),
        ("mask.webp", {"lossless": True, "exif": _EXIF.tobytes()}),
        ("mask.bmp", {}),
        ("mask.gif", {}),
        ("mask.pgm", {}),
        ("mask.tiff", {"compression": "tiff_lzw"}),
    ],
    ids=["webp", "webp extended", "bmp", "gif", "pgm", "lzw tiff"],
)
def test_lossless_masks_read_their_region(tmp_path: Path, name: str, options: dict) -> None:
    from torchlap.data.images import read_mask

    _square_mask().save(tmp_path / name, **options)
    assert int(read_mask(tmp_path / name).sum()) == 400


def test_a_lossy_webp_mask_in_a_folder_is_refused_naming_the_line(tmp_path: Path) -> None:
    for k in range(6):
        Image.new("L", (40, 40), 50).save(tmp_path / f"img{k}.png")
    _square_mask().save(tmp_path / "mask.webp", quality=50)
    rows = "".join(
        f"img{k}.png,{'ab'[k % 2]},{split},10,10,30,30,{'mask.webp' if k == 0 else ''}\n"
        for k, split in enumerate(["train", "train", "val", "val", "test", "test"])
    )
    (tmp_path / "annotations.csv").write_text(
        "image,label,split,x_min,y_min,x_max,y_max,mask\n" + rows
    )
    with pytest.raises(ValueError, match=r"annotations\.csv line 2: mask file .*mask\.webp is "):
        load_dataset(tmp_path, split="train", image_size=None)


def test_an_image_above_pils_bomb_limit_is_refused_naming_it(tmp_path, monkeypatch):
    """Before: PIL's DecompressionBombError escaped, naming neither the file nor the CSV line."""
    from torchlap.data.images import image_header, read_image

    path = tmp_path / "big.png"
    Image.new("L", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 2x this: PIL's error, not its warning
    for read in (image_header, lambda p: read_image(p, 1)):
        with pytest.raises(ValueError, match=r"image .*big\.png is too large to decode safely"):
            read(path)


def test_multi_frame_and_lab_images_are_refused_naming_them(tmp_path):
    """Before: a multi-page TIFF was read as its first page in silence, and a LAB TIFF's "a"
    band was taken for alpha (a false transparency warning, garbled colours)."""
    from torchlap.data.images import image_header, read_image

    pages = [Image.new("L", (8, 8), value) for value in (0, 100)]
    pages[0].save(tmp_path / "pages.tiff", save_all=True, append_images=pages[1:])
    Image.new("LAB", (8, 8)).save(tmp_path / "lab.tiff")
    for read in (image_header, lambda p: read_image(p, 3)):
        with pytest.raises(ValueError, match=r"TIFF image .*pages\.tiff holds 2 frames"):
            read(tmp_path / "pages.tiff")
        with pytest.raises(ValueError, match=r"lab\.tiff is in the LAB colour space"):
            read(tmp_path / "lab.tiff")
