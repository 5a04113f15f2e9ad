"""Folder datasets: the n_images cut, saving and reloading, masks checked up front, encodings,
files not overwritten, unknown ImageNet classes."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data_folder import HEADER, _csv

import torchlap.data.folder as folder_module
from torchlap.data import (
    AnnotatedFolder,
    celeba,
    first_images,
    image_folder,
    imagenet_folder,
    load_dataset,
    rsna_pneumonia,
    write_annotations,
)
from torchlap.data.annotations import ImageRecord
from torchlap.data.importers import RsnaFolder


def _png(path: Path, value: int = 100, size: tuple[int, int] = (16, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


def _cats_then_dogs(root: Path, split: str | None = None) -> Path:
    """40 images, all 20 cats listed before all 20 dogs; with ``split``, all in that split
    plus one image of each class in the other two."""
    rows = []
    for k in range(40):
        _png(root / f"img/{k}.png", value=k)
        rows.append([f"img/{k}.png", "cat" if k < 20 else "dog"])
    if split is None:
        _csv(root, rows, header=["image", "label"])
    else:
        others = [s for s in ("train", "val", "test") if s != split]
        rows = [[*row, split] for row in rows]
        for j, other in enumerate(others):
            rows[j] = [*rows[j][:2], other]
            rows[20 + j] = [*rows[20 + j][:2], other]
        _csv(root, rows, header=["image", "label", "split"])
    return root


# ------------------------------------------------------------------------------- n_images


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_n_images_is_a_class_stratified_cut(tmp_path: Path, split: str) -> None:
    # the first 8 CSV rows of a split used to be 8 cats and no dog
    root = _cats_then_dogs(tmp_path / "ds", split=split)
    dataset = load_dataset(root, split=split, image_size=16, n_images=8)
    assert Counter(r.label for r in dataset.records) == {"cat": 4, "dog": 4}


def test_n_images_cut_is_seeded_and_independent_of_row_order(tmp_path: Path) -> None:
    root = _cats_then_dogs(tmp_path / "ds")
    first = AnnotatedFolder(root, split="train", n_images=10, seed=3)
    again = AnnotatedFolder(root, split="train", n_images=10, seed=3)
    other = AnnotatedFolder(root, split="train", n_images=10, seed=4)
    images = [r.image for r in first.records]
    assert images == [r.image for r in again.records]
    assert images != [r.image for r in other.records]
    assert Counter(r.label for r in first.records) == {"cat": 5, "dog": 5}
    # the same rows in reverse order, with the split the seed made: the same images are kept
    with open(root / "annotations.csv", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    reversed_root = tmp_path / "reversed"
    for k in range(40):
        _png(reversed_root / f"img/{k}.png", value=k)
    rows = [[image, label, first.split_assignment[image]] for image, label in rows]
    _csv(reversed_root, rows[::-1], header=["image", "label", "split"])
    mirrored = AnnotatedFolder(reversed_root, split="train", n_images=10, seed=3)
    assert sorted(r.image for r in mirrored.records) == sorted(images)


def test_n_images_that_drops_a_training_class_is_refused(tmp_path: Path) -> None:
    root = _cats_then_dogs(tmp_path / "ds", split="train")
    message = r"n_images=1 keeps 1 of the 36 training images.*\['dog'\] would have no training"
    with pytest.raises(ValueError, match=message + r" image.*n_images >= 2"):
        AnnotatedFolder(root, split="train", n_images=1)
    assert len(AnnotatedFolder(root, split="val", n_images=1)) == 1  # val may lack a class


# ------------------------------------------------------------------------- save and reload


def _image_folder_tree(root: Path) -> Path:
    for label in ("cats", "dogs"):
        for k in range(10):
            _png(root / label / f"{k}.png", value=10 * k)
    return root


def test_saved_dataset_without_regions_reloads_without_regions(tmp_path: Path) -> None:
    root = _image_folder_tree(tmp_path / "folder")
    dataset = image_folder(root, split="train", image_size=16)
    assert dataset.has_regions is False
    dataset.save_annotations(root / "annotations.csv")
    assert (root / "annotations.csv").read_text().splitlines()[0] == "image,label,split"
    reloaded = AnnotatedFolder(root, split="train")
    assert reloaded.has_regions is False and reloaded[0]["has_region"] is False
    assert reloaded.split_assignment == dataset.split_assignment


def test_saved_dataset_with_regions_keeps_them(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for k in range(4):
        _png(root / f"img/{k}.png")
    empty = ["", "", "", "", ""]
    rows = [["img/0.png", "a", "train", 1, 1, 5, 5, ""], ["img/1.png", "b", "train", *empty]]
    _csv(root, [*rows, ["img/2.png", "a", "val", *empty], ["img/3.png", "b", "test", *empty]])
    dataset = AnnotatedFolder(root, split="train")
    dataset.save_annotations(tmp_path / "saved.csv")
    lines = (tmp_path / "saved.csv").read_text().splitlines()
    assert lines[:3] == [",".join(HEADER), "img/0.png,a,train,1,1,5,5,", "img/1.png,b,train,,,,,"]


def _rsna(root: Path) -> Path:
    (root / "stage_2_train_images").mkdir(parents=True)
    rows = [f"p{k},,,,,0" for k in range(4)] + [f"p{k},2,2,6,6,1" for k in range(4, 8)]
    for k in range(8):
        _png(root / "stage_2_train_images" / f"p{k}.png")
    text = "patientId,x,y,width,height,Target\n" + "\n".join(rows) + "\n"
    (root / "stage_2_train_labels.csv").write_text(text)
    return root


def test_saving_rsna_normal_images_is_refused(tmp_path: Path) -> None:
    # annotations.csv reads an image without boxes as a known empty region (has_region True)
    dataset = rsna_pneumonia(_rsna(tmp_path / "rsna"), split="train")
    assert isinstance(dataset, RsnaFolder)
    with pytest.raises(ValueError, match=r"4 of the 8 images .*has_region=False.*cannot express"):
        dataset.save_annotations(tmp_path / "saved.csv")
    assert not (tmp_path / "saved.csv").exists()


# ---------------------------------------------------------------------- masks up front


def test_empty_mask_next_to_boxes_is_refused_when_the_dataset_loads(tmp_path: Path) -> None:
    # it used to be found only when the sample was read (train had written its run folder)
    root = tmp_path / "ds"
    for k in range(4):
        _png(root / f"img/{k}.png")
    Image.new("L", (16, 16), 0).save(root / "img/empty.png")
    empty = ["", "", "", "", ""]
    rows = [["img/0.png", "a", "train", *empty], ["img/1.png", "b", "train", *empty]]
    rows += [["img/2.png", "a", "val", 2, 2, 8, 8, "img/empty.png"]]
    _csv(root, [*rows, ["img/3.png", "b", "test", *empty]])
    message = r"line 4: mask file .*empty\.png is empty but the image has 1 box\(es\)"
    with pytest.raises(ValueError, match=message):  # the split that holds the image
        AnnotatedFolder(root, split="val")
    AnnotatedFolder(root, split="train")  # its own masks only: training builds every split
    dataset = AnnotatedFolder(root, split="val", verify_images=False)
    with pytest.raises(ValueError, match=message):  # without verification: at the sample
        dataset[0]


# ---------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("encoding", "line", "byte"), [("latin-1", 3, "0xe9"), ("utf-16", 1, "0xff")]
)
def test_annotations_in_another_encoding_are_named(
    tmp_path: Path, encoding: str, line: int, byte: str
) -> None:
    root = tmp_path / "ds"
    for k in range(2):
        _png(root / f"img/{k}.png")
    text = "image,label\nimg/0.png,a\nimg/1.png,café\n"
    (root / "annotations.csv").write_bytes(text.encode(encoding))
    message = rf"annotations\.csv line {line}: byte {byte} is not UTF-8; the annotations\.csv"
    with pytest.raises(ValueError, match=message + r" must be UTF-8 \(a BOM is fine\)"):
        AnnotatedFolder(root)
    (root / "annotations.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert AnnotatedFolder(root, split_fractions=(1.0, 0.0, 0.0)).classes == ["a", "café"]


def test_importer_files_in_another_encoding_are_named(tmp_path: Path) -> None:
    root = _rsna(tmp_path / "rsna")
    labels = root / "stage_2_train_labels.csv"
    labels.write_bytes(labels.read_bytes() + "pé,,,,,0\n".encode("latin-1"))
    message = r"labels\.csv line 10: byte 0xe9 is not UTF-8; the RSNA labels file must be UTF-8"
    with pytest.raises(ValueError, match=message):
        rsna_pneumonia(root)
    celeba_root = tmp_path / "celeba"
    (celeba_root / "img_align_celeba").mkdir(parents=True)
    (celeba_root / "list_attr_celeba.txt").write_bytes("1\nSmiling\né.jpg 1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"list_attr_celeba\.txt line 3: byte 0xe9 is not UTF-8"):
        celeba(celeba_root)


# ----------------------------------------------------------------------- no overwriting


def test_save_annotations_does_not_replace_a_file_without_overwrite(tmp_path: Path) -> None:
    root = _image_folder_tree(tmp_path / "folder")
    dataset = image_folder(root, split="train")
    target = tmp_path / "mine.csv"
    target.write_text("image,label,reader\nx.png,a,dr_1\n")
    with pytest.raises(FileExistsError, match=r"mine\.csv already exists; pass overwrite=True"):
        dataset.save_annotations(target)
    assert target.read_text() == "image,label,reader\nx.png,a,dr_1\n"
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        dataset.save_annotations(target, overwrite="yes")  # type: ignore[arg-type]
    dataset.save_annotations(target, overwrite=True)
    assert target.read_text().startswith("image,label,split\n")


def test_write_annotations_refuses_a_link_to_nothing_without_overwrite(tmp_path: Path) -> None:
    """Before: exists() is False for a dangling link: the CSV was built, then publication
    failed with ``[Errno 17]`` naming the temporary file."""
    link = tmp_path / "annotations.csv"
    link.symlink_to(tmp_path / "elsewhere.csv")
    records = [ImageRecord("a.png", "a", "train")]
    with pytest.raises(FileExistsError, match=r"annotations\.csv already exists; pass overwrite"):
        write_annotations(link, records, regions=False)
    assert link.is_symlink() and not link.exists()
    write_annotations(link, records, regions=False, overwrite=True)
    assert not link.is_symlink() and link.read_text().startswith("image,label,split")


# ------------------------------------------------------------------------------ ImageNet


def test_imagenet_val_class_without_train_folder_is_named(tmp_path: Path) -> None:
    root = tmp_path / "imagenet"
    for split, wnids in (("train", ["n01", "n02"]), ("val", ["n01", "n02", "n03"])):
        for wnid in wnids:
            (root / split / wnid).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(root / split / wnid / "a.JPEG")
    message = r"val/n03: class 'n03' has no .*train/n03 folder.*the classes are the 2 wnids of "
    with pytest.raises(ValueError, match=message + r".*train: n01, n02"):
        imagenet_folder(root, split="val")


def test_unknown_label_lists_the_known_classes(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    records = [ImageRecord("a.png", "zebra", "train", source="rows line 2")]
    classes = [f"c{k:02d}" for k in range(12)]
    message = (
        r"rows line 2: unknown label 'zebra'; the 12 known classes are c00, c01, .*c09, \.\.\."
    )
    with pytest.raises(ValueError, match=message):
        AnnotatedFolder.from_records(
            tmp_path, records, source="rows", has_regions=False, classes=classes
        )


def test_mask_of_a_box_image_is_decoded_once_up_front(tmp_path: Path, monkeypatch) -> None:
    """The sample itself still reads (no second refusal of a good mask)."""
    root = tmp_path / "ds"
    for k in range(2):
        _png(root / f"img/{k}.png")
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[2:8, 2:8] = 255
    Image.fromarray(mask).save(root / "img/m.png")
    rows = [["img/0.png", "a", "train", 2, 2, 8, 8, "img/m.png"]]
    _csv(root, [*rows, ["img/1.png", "b", "train", "", "", "", "", ""]])
    decoded = []
    original = folder_module.read_mask
    monkeypatch.setattr(
        folder_module, "read_mask", lambda path: decoded.append(path) or original(path)
    )
    dataset = AnnotatedFolder(root, split="train")
    assert [p.name for p in decoded] == ["m.png"]  # at construction, once
    assert int(dataset[0]["mask"].sum()) == 36


def test_a_val_split_decodes_its_own_masks_only(tmp_path: Path, monkeypatch) -> None:
    """Each split decodes the masks of its own images (a run builds all three): every mask once
    per run, not three times."""
    root = tmp_path / "ds"
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[2:8, 2:8] = 255
    rows = []
    for k, split in enumerate(["train", "train", "val", "test"]):
        _png(root / f"img/{k}.png")
        Image.fromarray(mask).save(root / f"img/m{k}.png")
        rows.append([f"img/{k}.png", "ab"[k % 2], split, 2, 2, 8, 8, f"img/m{k}.png"])
    _csv(root, rows)
    decoded = []
    original = folder_module.read_mask
    monkeypatch.setattr(
        folder_module, "read_mask", lambda path: decoded.append(path.name) or original(path)
    )
    AnnotatedFolder(root, split="val")
    assert decoded == ["m2.png"]


def test_max_images_of_an_evaluation_is_class_stratified(tmp_path: Path) -> None:
    """evaluate --max-images on a folder listing all cats first: both classes (the first rows
    were 8 cats)."""
    dataset = AnnotatedFolder(_cats_then_dogs(tmp_path / "ds", split="test"), split="test")
    kept = first_images(dataset, 8, seed=0)
    labels = Counter(dataset.records[i].label for i in kept)
    assert labels == {"cat": 4, "dog": 4}
    assert kept == sorted(kept) and first_images(dataset, 8, seed=0) == kept


def test_write_annotations_keeps_negatives_by_default(tmp_path: Path) -> None:
    """Records without boxes written by the public function stay known negatives (regions=True
    is the default; only save_annotations of class-only data writes image,label,split)."""
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    records = [ImageRecord("a.png", "x", "train"), ImageRecord("b.png", "y", "train")]
    write_annotations(tmp_path / "annotations.csv", records)
    header = (tmp_path / "annotations.csv").read_text().splitlines()[0]
    assert header == "image,label,split,x_min,y_min,x_max,y_max,mask"


def test_write_annotations_never_replaces_a_file_that_appears_while_writing(
    tmp_path: Path, monkeypatch
) -> None:
    """Without overwrite the CSV is published without replacing: a file created between the
    existence check and the publication stays (FileExistsError)."""
    import torchlap.data.annotations as annotations_module

    target = tmp_path / "annotations.csv"
    write = annotations_module.atomic_write

    def write_after_someone(path, data, replace=True):
        target.write_text("theirs\n")
        return write(path, data, replace)

    monkeypatch.setattr(annotations_module, "atomic_write", write_after_someone)
    with pytest.raises(FileExistsError):
        write_annotations(target, [ImageRecord("a.png", "x", "train")])
    assert target.read_text() == "theirs\n"


@pytest.mark.parametrize("kind", ["a folder", "a link to nothing or a link loop"])
def test_something_else_in_place_of_annotations_csv_is_named(tmp_path: Path, kind: str) -> None:
    """Before: read as an ImageFolder whose class folders hold no images ("a dataset folder has
    annotations.csv or one subfolder of images per class"), though it has one of that name."""
    root = tmp_path / "data"
    (root / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "cats" / "a.png")
    if kind == "a folder":
        (root / "annotations.csv").mkdir()
    else:
        (root / "annotations.csv").symlink_to(root / "nowhere.csv")
    with pytest.raises(ValueError, match=rf"annotations\.csv is {kind}, not the CSV file of an"):
        load_dataset(str(root))
    if kind == "a folder":
        (root / "annotations.csv").rmdir()
    else:
        (root / "annotations.csv").unlink()
    assert len(load_dataset(str(root))) == 1  # without it: one subfolder of images per class
