"""A box with a coordinate below 0 lies outside every image: it is refused when the CSV row is
parsed, naming the line, before any image header is read (also with ``verify_images=False``,
which reads headers only as samples load)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from torchlap.data import AnnotatedFolder

HEADER = "image,label,split,x_min,y_min,x_max,y_max,mask"


def _folder(tmp_path: Path, box: str) -> Path:
    (tmp_path / "img").mkdir()
    rows = [HEADER]
    for index, label in enumerate(["neg", "pos", "neg", "pos"]):
        Image.new("L", (16, 16)).save(tmp_path / "img" / f"{index}.png")
        split = "train" if index < 2 else "test"
        rows.append(f"img/{index}.png,{label},{split},2,2,10,10,")
    rows[2] = f"img/1.png,pos,train,{box},"
    (tmp_path / "annotations.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


@pytest.mark.parametrize("box", ["-1,2,10,10", "2,-0.5,10,10", "-3,-3,-1,-1"])
@pytest.mark.parametrize("verify_images", [True, False])
def test_a_negative_coordinate_is_refused_at_parse_time(
    tmp_path: Path, box: str, verify_images: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _folder(tmp_path, box)
    opened: list[str] = []
    import torchlap.data.folder as folder_module

    real = folder_module.image_header
    monkeypatch.setattr(
        folder_module, "image_header", lambda path: opened.append(str(path)) or real(path)
    )
    with pytest.raises(ValueError) as error:
        AnnotatedFolder(root, verify_images=verify_images)
    text = str(error.value)
    assert "annotations.csv line 3: box (" in text
    assert "lies outside every image: a coordinate is below 0" in text
    assert "rejected, not clipped" in text
    assert opened == []  # no image header was read


def test_a_box_touching_the_origin_is_taken(tmp_path: Path) -> None:
    data = AnnotatedFolder(_folder(tmp_path, "0,0,10,10"))
    assert data[1]["boxes"].tolist() == [[0.0, 0.0, 10.0, 10.0]]
