"""A TIFF with an EXIF orientation other than 1 is refused, naming the file: PIL applies the
tag when it opens and decodes a TIFF (the size of orientations 5-8 swapped at once, the pixels
flipped or scrambled), so its stored pixels, in whose coordinates torchlap reads images, boxes
and masks, cannot be read. Other formats keep the tag unapplied (their stored pixels read).

Before (Pillow 13): image_header said (2, 3, 1, 6) for a 3-wide, 2-high TIFF of orientation 6
while read_image returned a 2 x 3 image of scrambled pixels and orientation 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchlap.data.images import image_header, load_image, read_image, read_mask

STORED = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40  # 3 wide, 2 high


@pytest.mark.parametrize("orientation", [2, 3, 6, 8])
def test_a_tiff_with_an_orientation_tag_is_refused(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / "x.tiff"
    Image.fromarray(STORED).save(path, tiffinfo={0x0112: orientation})
    message = rf"image .*x\.tiff is a TIFF with EXIF orientation {orientation}, which PIL applies"
    for read in (image_header, lambda p: read_image(p, 1), read_mask):
        with pytest.raises(ValueError, match=message):
            read(path)
    with pytest.raises(ValueError, match=r"x\.tiff is not a readable image: .*tag removed"):
        load_image(path, 1)


def test_a_tiff_with_orientation_1_or_none_reads_its_stored_pixels(tmp_path: Path) -> None:
    expected = torch.from_numpy(STORED).float()[None] / 255
    for name, info in (("one.tiff", {0x0112: 1}), ("none.tiff", {})):
        Image.fromarray(STORED).save(tmp_path / name, tiffinfo=info)
        assert tuple(image_header(tmp_path / name)) == (3, 2, 1, 1)
        torch.testing.assert_close(read_image(tmp_path / name, 1), expected, rtol=0, atol=0)
