"""``torchlap data check`` parses a folder's ``annotations.csv`` and opens each image header
once for its three splits (before: each split was loaded anew, three parses and three opens of
every header), and says what loading each split anew says."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from folder_reads import count_folder_reads
from torchlap.cli import app
from torchlap.data import load_dataset
from torchlap.data.export import export_builtin


@pytest.fixture(scope="module")
def lesions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-image ``lesions`` folder (boxes, masks, the split given)."""
    return export_builtin("lesions", tmp_path_factory.mktemp("dc") / "les", n_images=40,
                          image_size=32)  # fmt: skip


def _expected_lines(data: Path) -> list[str]:
    """The split lines, from each split loaded anew."""
    lines = []
    for split in ("train", "val", "test"):
        dataset = load_dataset(data, split=split, image_size=None)
        lines.append(f"{split}: {len(dataset)} images, classes {dataset.classes}")
    return lines


def test_data_check_reads_the_csv_and_each_header_once(lesions: Path, monkeypatch) -> None:
    expected = _expected_lines(lesions)
    headers, parses = count_folder_reads(monkeypatch)
    result = CliRunner().invoke(app, ["data", "check", str(lesions)])
    assert result.exit_code == 0, result.output
    assert sum(parses.values()) == 1
    with open(lesions / "annotations.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    files = {lesions / row[k] for row in rows for k in ("image", "mask") if row.get(k)}
    assert set(headers) == files and set(headers.values()) == {1}  # images and masks
    said = [
        line
        for line in result.stdout.splitlines()
        if line.split(":")[0] in {"train", "val", "test"}
    ]
    assert [line.split(" (no image")[0] for line in said] == expected


def test_an_empty_split_is_still_said_after_the_first_split(lesions: Path, tmp_path) -> None:
    """The val split emptied: said as ``val: empty`` and refused, as when each split was
    loaded anew."""
    data = tmp_path / "les"
    data.mkdir()
    with open(lesions / "annotations.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["split"] == "val":
            row["split"] = "train"
        source = lesions / row["image"]
        (data / row["image"]).parent.mkdir(parents=True, exist_ok=True)
        (data / row["image"]).write_bytes(source.read_bytes())
        if row.get("mask"):
            (data / row["mask"]).parent.mkdir(parents=True, exist_ok=True)
            (data / row["mask"]).write_bytes((lesions / row["mask"]).read_bytes())
    with open(data / "annotations.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = CliRunner().invoke(app, ["data", "check", str(data)])
    assert result.exit_code == 2, result.output
    assert "val: empty" in result.stdout
    assert "the 'val' split(s) have no images" in result.stderr
    assert any(
        line.startswith("test: ") and "images" in line for line in result.stdout.splitlines()
    )
