"""`torchlap explain` output names: two inputs that would write the same figure are refused
with advice that fits the case."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from torchlap.evaluate.explain import collect_images


def _image(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(path)


def test_same_stem_in_one_folder_is_told_to_rename(tmp_path):
    _image(tmp_path / "xin" / "a.png")
    _image(tmp_path / "xin" / "a.jpg")
    for inputs in ([tmp_path / "xin" / "a.png", tmp_path / "xin" / "a.jpg"], [tmp_path / "xin"]):
        with pytest.raises(ValueError, match=r"map to the same output name: rename one") as info:
            collect_images(inputs)
        assert "name their folders" not in str(info.value)


def test_same_name_in_two_folders_is_told_to_name_a_folder_holding_both(tmp_path):
    _image(tmp_path / "a" / "x.png")
    _image(tmp_path / "b" / "x.png")
    for inputs in ([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"],
                   [tmp_path / "a", tmp_path / "b"]):  # fmt: skip
        with pytest.raises(ValueError, match=r"x\.npz; name one folder that holds both"):
            collect_images(inputs)
    names = sorted(image.name for image in collect_images([tmp_path]))  # as advised
    assert names == ["a/x", "b/x"]
