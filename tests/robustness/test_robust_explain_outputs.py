"""`torchlap explain` and the manifest of its --out folder: a manifest of the wrong shape is
named as damaged (it was ``'int' object is not iterable``, ``unhashable type: 'list'`` or, for
a folder in its place, ``[Errno 21] Is a directory`` after the output folder was set up)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_errors import error_line
from torchlap.evaluate.explain import MANIFEST


@pytest.mark.parametrize(
    ("manifest", "why"),
    [
        ({"files": 5}, "explain writes"),
        ({"files": [["x.png"]]}, "explain writes"),
        ({"files": "x.png"}, "explain writes"),
        ([1], "explain writes"),
        ("folder", "it is not a file"),
        ("not json", "not JSON"),
    ],
)
def test_a_damaged_manifest_is_named(tiny_run: Path, tmp_path: Path, manifest, why) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((32, 32), 40, np.uint8)).save(images / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    if manifest == "folder":
        (out / MANIFEST).mkdir()
    elif manifest == "not json":
        (out / MANIFEST).write_text("{")
    else:
        (out / MANIFEST).write_text(json.dumps(manifest))
    before = sorted(p.name for p in out.iterdir())
    line = error_line(["explain", str(images), "--run", str(tiny_run), "--methods", "gradcam",
                       "--out", str(out)])  # fmt: skip
    assert f"{MANIFEST} is damaged ({why}" in line, line
    assert "delete it" in line and "choose another --out" in line
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize("manifest", [{}, {"files": []}, {"files": ["x.png"], "format": "mine"}])
def test_a_manifest_explain_did_not_write_is_refused_and_kept(
    tiny_run: Path, tmp_path: Path, manifest
) -> None:
    """Before: a ``.torchlap-explain.json`` of the right shape without explain's format was read
    as explain's and replaced by its claim (and ``x.png`` counted as explain's output)."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((32, 32), 40, np.uint8)).save(images / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    text = json.dumps(manifest)
    (out / MANIFEST).write_text(text)
    line = error_line(["explain", str(images), "--run", str(tiny_run), "--methods", "gradcam",
                       "--out", str(out)])  # fmt: skip
    assert f"{out / MANIFEST} was not written by torchlap explain" in line, line
    assert (out / MANIFEST).read_text() == text
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST]


def test_an_output_name_that_is_a_link_to_nothing_is_refused(tiny_run: Path, tmp_path: Path):
    """Before: exists() is False for a dangling link, so the check passed and the .npz write
    replaced the user's link."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((32, 32), 40, np.uint8)).save(images / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.npz").symlink_to(tmp_path / "elsewhere.npz")
    line = error_line(["explain", str(images), "--run", str(tiny_run), "--methods", "gradcam",
                       "--out", str(out)])  # fmt: skip
    assert f"already holds {out / 'x.npz'}, which torchlap explain did not write" in line, line
    assert (out / "x.npz").is_symlink() and [p.name for p in out.iterdir()] == ["x.npz"]


@pytest.mark.parametrize(
    ("inputs", "methods", "error", "match"),
    [
        ("IMAGES", ["gradcam"], TypeError, r"inputs must be a list of image files or folders"),
        (Path("IMAGES"), ["gradcam"], TypeError, r"got PosixPath\('.*images'\); pass \["),
        ([], ["gradcam"], ValueError, r"inputs is empty; pass at least one"),
        ([5], ["gradcam"], TypeError, r"inputs must be paths \(str or os.PathLike\), got 5"),
        (["IMAGES"], "gradcam", TypeError, r"methods must be a list of method names, got 'grad"),
        (["IMAGES"], [], ValueError, r"methods is empty; pass at least one"),
    ],
)
def test_explain_files_refuses_arguments_of_the_wrong_shape(
    tiny_run: Path, tmp_path: Path, inputs, methods, error, match
) -> None:
    """Before: a str was iterated (``i does not exist``; ``unknown method(s) ['g', 'r', ...]``),
    a Path was ``not iterable``, and ``methods=[]`` wrote figures of no method."""
    from torchlap.evaluate.explain import explain_files

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((32, 32), 40, np.uint8)).save(images / "x.png")
    if inputs == "IMAGES" or isinstance(inputs, Path):
        inputs = type(inputs)(images)
    elif inputs == ["IMAGES"]:
        inputs = [images]
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        explain_files(tiny_run, inputs, methods, out)
    assert not out.exists()


def test_an_out_folder_that_cannot_be_made_is_named(tiny_run: Path, tmp_path: Path) -> None:
    """Before: ``[Errno 17] File exists: 'dl'`` (a dangling symlink) and ``[Errno 20] Not a
    directory`` (a path inside a file), after every image was decoded."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((32, 32), 40, np.uint8)).save(images / "x.png")
    dangling = tmp_path / "dl"
    dangling.symlink_to(tmp_path / "nowhere")
    args = ["explain", str(images), "--run", str(tiny_run), "--methods", "gradcam", "--out"]
    line = error_line([*args, str(dangling)])
    assert "is a symlink to" in line and "which does not exist; create that folder" in line
    line = error_line([*args, str(images / "x.png" / "sub")])
    assert "is inside" in line and "x.png, which is not a folder; pass a folder path" in line
    assert not (tmp_path / "nowhere").exists()
