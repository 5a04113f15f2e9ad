"""Importers of the paper's datasets, each on a tiny fixture written in the dataset's format."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from dicom_files import write_dicom
from PIL import Image

from torchlap.data import celeba, imagenet_folder, rsna_pneumonia


def _rsna_fixture(root: Path, suffix: str) -> Path:
    """Six patients in the challenge's format: stage_2_train_labels.csv + 32x32 images."""
    images = root / "stage_2_train_images"
    images.mkdir(parents=True)
    rows = [
        ["p0", 2, 3, 10, 8, 1],
        ["p0", 20, 20, 12, 10, 1],
        ["p1", "", "", "", "", 0],
        ["p2", 0, 0, 32, 32, 1],
        ["p3", "", "", "", "", 0],
        ["p4", 5, 5, 4, 4, 1],
        ["p5", "", "", "", "", 0],
    ]
    with open(root / "stage_2_train_labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patientId", "x", "y", "width", "height", "Target"])
        writer.writerows(rows)
    for k in range(6):
        pixels = np.full((32, 32), 10 * k, dtype=np.uint8)
        if suffix == ".dcm":
            write_dicom(images / f"p{k}.dcm", pixels)
        else:
            Image.fromarray(pixels).save(images / f"p{k}.png")
    return root


@pytest.mark.parametrize("suffix", [".png", ".dcm"])
def test_rsna(tmp_path: Path, suffix: str) -> None:
    root = _rsna_fixture(tmp_path / "rsna", suffix)
    splits = {
        s: rsna_pneumonia(root, split=s, split_fractions=(0.5, 0.0, 0.5)) for s in ("train", "test")
    }
    train = splits["train"]
    assert train.classes == ["normal", "pneumonia"] and train.n_channels == 1
    assert sum(len(d) for d in splits.values()) == 6
    by_patient = {}
    for dataset in splits.values():
        for k, record in enumerate(dataset.records):
            by_patient[Path(record.image).stem] = dataset[k]
    p0 = by_patient["p0"]
    assert p0["label"] == 1 and p0["has_region"] is True
    assert p0["boxes"].tolist() == [[2, 3, 12, 11], [20, 20, 32, 30]]
    assert p0["mask"].sum() == 10 * 8 + 12 * 10
    assert by_patient["p1"]["label"] == 0 and by_patient["p1"]["boxes"].shape == (0, 4)
    # only pneumonia images were annotated: a normal image has no region (paper 000, App. A)
    assert by_patient["p1"]["has_region"] is False and train.has_regions is True
    assert torch.allclose(by_patient["p3"]["image"], torch.full((1, 32, 32), 30 / 255))


def test_rsna_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    root = _rsna_fixture(tmp_path / "rsna", ".png")
    (root / "stage_2_train_images" / "p1.png").unlink()
    write_dicom(
        root / "stage_2_train_images" / "p1.dcm", np.full((32, 32), 51), photometric="MONOCHROME1"
    )
    dataset = rsna_pneumonia(root, split="train", split_fractions=(1.0, 0.0, 0.0))
    index = next(k for k, r in enumerate(dataset.records) if r.image.endswith("p1.dcm"))
    assert torch.allclose(dataset[index]["image"], torch.full((1, 32, 32), 0.8))


@pytest.mark.parametrize(
    ("old", "new", "error", "message"),
    [
        ("p1,,,,,0", "p1,1,1,2,2,0", ValueError, r"line 4: Target 0 \(normal\) must have empty"),
        ("p4,5,5,4,4,1", "p4,5,5,40,4,1", ValueError, r"line 7: box .* outside image .*p4\.png"),
        ("p5,,,,,0", "p9,,,,,0", FileNotFoundError, r"line 8: no image p9\.dcm or p9\.png"),
        ("Target", "Label", ValueError, r"missing column.*Target"),
        # a long row was accepted silently, a short one reported "Target is ''"
        ("p4,5,5,4,4,1", "p4,5,5,4,4,1,extra", ValueError, r"line 7: more fields than the 6"),
        ("p4,5,5,4,4,1", "p4,5,5", ValueError, r"line 7: 3 field\(s\) for the 6 header columns"),
    ],
)
def test_rsna_bad_rows(
    tmp_path: Path, old: str, new: str, error: type[Exception], message: str
) -> None:
    root = _rsna_fixture(tmp_path / "rsna", ".png")
    labels = root / "stage_2_train_labels.csv"
    labels.write_text(labels.read_text().replace(old, new))
    with pytest.raises(error, match=message):
        rsna_pneumonia(root)


def test_rsna_drops_other_abnormalities(tmp_path: Path) -> None:
    root = _rsna_fixture(tmp_path / "rsna", ".png")
    with open(root / "stage_2_detailed_class_info.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patientId", "class"])
        writer.writerows([["p1", "Normal"], ["p3", "No Lung Opacity / Not Normal"]])
        writer.writerows([["p5", "Normal"], ["p0", "Lung Opacity"]])
    dataset = rsna_pneumonia(
        root,
        split_fractions=(1.0, 0.0, 0.0),
        detailed_class_info="stage_2_detailed_class_info.csv",
    )
    assert sorted(Path(r.image).stem for r in dataset.records) == ["p0", "p1", "p2", "p4", "p5"]


def _celeba_fixture(root: Path) -> Path:
    """Eight 8x10 RGB images and list_attr_celeba.txt with three attributes."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    lines = ["8", "5_o_Clock_Shadow Smiling Young"]
    for k in range(8):
        name = f"{k + 1:06d}.jpg"
        Image.new("RGB", (8, 10), (30 * k, 0, 0)).save(images / name)
        smiling = "1" if k % 2 else "-1"
        lines.append(f"{name} -1  {smiling} {'1' if k in (0, 5, 6) else '-1'}")
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    partition = [f"{k + 1:06d}.jpg {0 if k < 4 else 1 if k < 6 else 2}" for k in range(8)]
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return root


def test_celeba(tmp_path: Path) -> None:
    root = _celeba_fixture(tmp_path / "celeba")
    train = celeba(root, attribute="Smiling", split="train", split_fractions=(0.5, 0.25, 0.25))
    assert train.classes == ["not_smiling", "smiling"] and train.n_channels == 3
    assert len(train) == 4 and train[0]["has_region"] is False
    labels = {r.image: train[k]["label"] for k, r in enumerate(train.records)}
    for image, label in labels.items():
        assert label == int(int(Path(image).stem) % 2 == 0)  # odd k = even file number smiles
    official = celeba(
        root, attribute="Young", split="val", partition_file="list_eval_partition.txt"
    )
    assert [Path(r.image).name for r in official.records] == ["000005.jpg", "000006.jpg"]
    assert official.classes == ["not_young", "young"]
    with pytest.raises(ValueError, match=r"unknown CelebA attribute 'Smile'.*Smiling"):
        celeba(root, attribute="Smile")
    text = (root / "list_attr_celeba.txt").read_text()
    (root / "list_attr_celeba.txt").write_text(text.replace("000002.jpg -1  1", "000002.jpg -1  0"))
    with pytest.raises(ValueError, match="line 4: Smiling is '0'; accepted: 1 or -1"):
        celeba(root)
    # conflicting repeats used to pass: the last partition line or a second record won
    lines = text.splitlines()
    (root / "list_attr_celeba.txt").write_text("\n".join([*lines, lines[3]]) + "\n")
    with pytest.raises(ValueError, match=r"line 11: image 000002\.jpg is listed again \(first"):
        celeba(root)
    header = lines[1].split()
    (root / "list_attr_celeba.txt").write_text(
        "\n".join([lines[0], " ".join([header[0], *header]), *lines[2:]]) + "\n"
    )
    with pytest.raises(ValueError, match=rf"line 2: attribute\(s\) {header[0]} named twice"):
        celeba(root)
    (root / "list_attr_celeba.txt").write_text(text)
    partition = (root / "list_eval_partition.txt").read_text()
    (root / "list_eval_partition.txt").write_text(partition + "000001.jpg 2\n")
    with pytest.raises(ValueError, match=r"line 9: image 000001\.jpg is listed again"):
        celeba(root, partition_file="list_eval_partition.txt")


def _imagenet_fixture(root: Path, with_meta: bool) -> Path:
    wnids = ["n01440764", "n01443537", "n01484850"]
    for split, n in (("train", 3), ("val", 1)):
        for c, wnid in enumerate(wnids):
            for k in range(n):
                folder = root / split / wnid
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{wnid}_{k}.JPEG" if split == "train" else f"ILSVRC2012_val_{c:08d}.JPEG"
                Image.new("RGB", (12, 9), (80 * c, 10, 10)).save(folder / name, format="JPEG")
    if with_meta:  # what torchvision.datasets.ImageNet writes after parsing the devkit
        names = {"n01440764": ("tench", "Tinca tinca"), "n01443537": ("goldfish",)}
        names["n01484850"] = ("great white shark",)
        val_wnids = [w for w in wnids for _ in range(1)]
        torch.save((names, val_wnids), root / "meta.bin")
    return root


@pytest.mark.parametrize("with_meta", [True, False])
def test_imagenet_folder(tmp_path: Path, with_meta: bool) -> None:
    root = _imagenet_fixture(tmp_path / "imagenet", with_meta)
    train = imagenet_folder(root, split="train", image_size=16)
    val = imagenet_folder(root, split="val", image_size=16)
    test = imagenet_folder(root, split="test", image_size=16)
    assert train.classes == val.classes == ["n01440764", "n01443537", "n01484850"]
    assert (len(train), len(val), len(test)) == (9, 3, 3)
    assert [val[k]["label"] for k in range(3)] == [0, 1, 2]
    sample = train[4]
    assert sample["image"].shape == (3, 16, 16) and sample["label"] == 1
    expected = "goldfish" if with_meta else "n01443537"
    assert val.class_descriptions["n01443537"][0] == expected


def test_celeba_seed_must_be_an_int(tmp_path: Path) -> None:
    root = _celeba_fixture(tmp_path / "celeba")
    with pytest.raises(TypeError, match=r"seed must be an int from 0 to 4294967295, got 1\.7"):
        celeba(root, seed=1.7)  # type: ignore[arg-type]


def test_imagenet_one_grayscale_image_keeps_rgb(tmp_path: Path) -> None:
    # the channel count came from the first image's header only: one gray JPEG made all gray
    root = _imagenet_fixture(tmp_path / "imagenet", with_meta=False)
    first = sorted((root / "train" / "n01440764").iterdir())[0]
    Image.new("L", (12, 9), 128).save(first, format="JPEG")
    train = imagenet_folder(root, split="train", image_size=16)
    assert train.n_channels == 3 and train[0]["image"].shape == (3, 16, 16)


def test_imagenet_meta_problems_are_named(tmp_path: Path) -> None:
    root = _imagenet_fixture(tmp_path / "imagenet", with_meta=True)
    names, val_wnids = torch.load(root / "meta.bin", weights_only=True)
    del names["n01443537"]
    torch.save((names, val_wnids), root / "meta.bin")
    with pytest.raises(ValueError, match=r"meta\.bin has no class names for 1 wnid folder\(s\) "
                       r".*: n01443537"):  # fmt: skip
        imagenet_folder(root)
    (root / "meta.bin").write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match=r"meta\.bin cannot be read as an ImageNet meta file "
                       r"\(torch\.load with weights_only=True") as caught:  # fmt: skip
        imagenet_folder(root)
    assert "weights_only=False" not in str(caught.value)
    torch.save([1, 2, 3], root / "meta.bin")
    with pytest.raises(ValueError, match=r"meta\.bin holds a list of another form; expected"):
        imagenet_folder(root)
    (root / "meta.bin").unlink()
    (root / "ILSVRC2012_devkit_t12" / "data").mkdir(parents=True)  # extracted, not the archive
    with pytest.raises(FileNotFoundError, match=r"holds ILSVRC2012_devkit_t12 but neither "
                       r"meta\.bin nor ILSVRC2012_devkit_t12\.tar\.gz"):  # fmt: skip
        imagenet_folder(root)


@pytest.mark.parametrize("file", ["stage_2_train_labels.csv", "detailed_class_info.csv"])
def test_rsna_a_field_over_the_csv_limit_is_named(tmp_path: Path, file: str) -> None:
    """csv's refusal said only "field larger than field limit (131072)", naming no file."""
    root = _rsna_fixture(tmp_path / "rsna", ".png")
    path = root / file
    if file == "detailed_class_info.csv":
        path.write_text("patientId,class\np1,Normal\n")
    path.write_text(path.read_text().replace("p1,", "p1" + "x" * 140_000 + ",", 1))
    options = {"detailed_class_info": file} if file == "detailed_class_info.csv" else {}
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} line \d: field larger than"):
        rsna_pneumonia(root, **options)


def _missing_file_cases(root: Path) -> list[tuple[Any, type[Exception], str]]:
    """(call, error, whole message) of the importers' missing label files and image folders."""
    rsna_csv, celeba_txt = root / "stage_2_train_labels.csv", root / "list_attr_celeba.txt"
    return [
        (lambda: rsna_pneumonia(root, labels_csv="none.csv"), FileNotFoundError,
         f"RSNA labels file {root / 'none.csv'} not found"),
        (lambda: rsna_pneumonia(root, images_dir="none"), FileNotFoundError,
         f"RSNA image folder {root / 'none'} not found"),
        (lambda: celeba(root, attr_file="none.txt"), FileNotFoundError,
         f"CelebA attribute file {root / 'none.txt'} not found"),
        (lambda: celeba(root, images_dir="none"), FileNotFoundError,
         f"CelebA image folder {root / 'none'} not found"),
        (lambda: rsna_pneumonia(root, labels_csv=celeba_txt.name), ValueError,
         f"{celeba_txt}: missing column(s) patientId, x, y, width, height, Target (found 8); "
         "the RSNA labels file has columns patientId,x,y,width,height,Target"),
        (lambda: rsna_pneumonia(root, detailed_class_info=rsna_csv.name), ValueError,
         f"{rsna_csv}: needs the columns patientId,class (found patientId, x, y, width, "
         "height, Target)"),
    ]  # fmt: skip


def test_importers_name_a_missing_file_or_column(tmp_path: Path) -> None:
    """The refusals of the RSNA and CelebA readers' shared steps (the label file and image
    folder looked up, a CSV's header checked), each message whole."""
    root = _rsna_fixture(tmp_path / "both", ".png")
    _celeba_fixture(root)
    (root / "list_attr_celeba.txt").write_text("8\nSmiling\n")  # one column "8" as CSV
    for call, error, message in _missing_file_cases(root):
        with pytest.raises(error) as caught:
            call()
        assert str(caught.value) == message
