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
