"""`torchlap explain` on an image file named directly reads its label from annotations.csv."""

from __future__ import annotations

from torchlap.data import read_annotations
from torchlap.data.export import export_builtin
from torchlap.evaluate.explain import collect_images


def test_directly_named_file_gets_its_annotated_label(tmp_path) -> None:
    root = export_builtin("lesions", tmp_path / "lesions", n_images=12, image_size=32, seed=0)
    records, _, _ = read_annotations(root / "annotations.csv")
    record = records[3]
    (found,) = collect_images([root / record.image])
    assert found.label == record.label
    stray = tmp_path / "stray.png"
    stray.write_bytes((root / record.image).read_bytes())
    assert collect_images([stray])[0].label is None  # no annotations.csv above it


def test_annotations_are_read_once_per_folder_per_call(tmp_path, monkeypatch) -> None:
    """Files named directly (a shell glob) share one parse of their dataset's annotations.csv:
    it used to be re-read, and every record path resolved, for each file (files x records)."""
    from torchlap.evaluate import explain as explain_module

    root = export_builtin("lesions", tmp_path / "lesions", n_images=12, image_size=32, seed=0)
    records, _, _ = read_annotations(root / "annotations.csv")
    reads: list[object] = []

    def counting_reader(path, *args, **kwargs):
        reads.append(path)
        return read_annotations(path, *args, **kwargs)

    monkeypatch.setattr(explain_module, "read_annotations", counting_reader)
    named = [root / record.image for record in records[:6]]
    found = collect_images(named)
    assert [image.label for image in found] == [record.label for record in records[:6]]
    assert len(reads) == 1
    collect_images(named[:2])  # a new call reads the file again (no global cache)
    assert len(reads) == 2


def test_files_of_a_folder_that_are_not_images_are_said(tmp_path, caplog):
    """Before: a .gif or a .txt in a folder given to `torchlap explain` vanished in silence."""
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    Image.new("RGB", (8, 8)).save(folder / "b.gif")
    (folder / "notes.txt").write_text("x")
    with caplog.at_level("WARNING", logger="torchlap.evaluate.explain"):
        found = collect_images([folder])
    assert [image.name for image in found] == ["a"]
    assert "skipped 2 file(s) that are not images torchlap reads (suffixes .gif, .txt" in (
        caplog.text
    )
