"""Bad source files found by probing the data layer: undecodable masks, importer rows Python
would bend, options of the wrong type, folder layouts that hide a wrong class."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from dicom_files import write_dicom
from PIL import Image
from torchvision import transforms as v1
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.data import (
    AnnotatedFolder,
    celeba,
    imagenet_folder,
    load_dataset,
    rsna_pneumonia,
)
from torchlap.data.images import load_image

runner = CliRunner()


def _mask_only_folder(root: Path) -> Path:
    """Eight 12x10 images of two classes in train, val and test; image 0 has a mask and no
    box (a mask-only region, which loading does not decode up front)."""
    (root / "img").mkdir(parents=True)
    rows = []
    for k, split in enumerate(["train", "train", "train", "train", "val", "val", "test", "test"]):
        Image.new("L", (12, 10), 20 * k).save(root / f"img/{k}.png")
        rows.append([f"img/{k}.png", "ab"[k % 2], split, "", "", "", "", ""])
    mask = np.zeros((10, 12), dtype=np.uint8)
    mask[2:6, 3:9] = 255
    Image.fromarray(mask).save(root / "img/mask0.png")
    rows[0][-1] = "img/mask0.png"
    with open(root / "annotations.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "split", "x_min", "y_min", "x_max", "y_max", "mask"])
        writer.writerows(rows)
    return root


@pytest.mark.parametrize("verify_images", [True, False])
def test_a_truncated_mask_is_named_with_its_csv_line(tmp_path: Path, verify_images: bool) -> None:
    # before: a bare OSError 'image file is truncated' (no file, no line), exit 1 in data check
    root = _mask_only_folder(tmp_path / "data")
    data = (root / "img/mask0.png").read_bytes()
    (root / "img/mask0.png").write_bytes(data[: len(data) // 2])
    dataset = AnnotatedFolder(root, verify_images=verify_images)
    with pytest.raises(ValueError, match=r"line 2: mask file .*mask0\.png is unreadable"):
        dataset[0]
    check = runner.invoke(app, ["data", "check", str(root)])
    assert check.exit_code == 2, check.output
    assert "annotations.csv line 2: mask file" in check.output


def _rsna(root: Path, rows: list[str], detailed: str | None = None) -> Path:
    """The RSNA labels file (header and ``rows``) and six 40x32 images p0..p5."""
    (root / "stage_2_train_images").mkdir(parents=True)
    header = "patientId,x,y,width,height,Target\n"
    (root / "stage_2_train_labels.csv").write_text(header + "".join(r + "\n" for r in rows))
    for k in range(6):
        Image.new("L", (40, 32), 10 * k).save(root / "stage_2_train_images" / f"p{k}.png")
    if detailed is not None:
        (root / "detailed.csv").write_text(detailed)
    return root


_RSNA_ROWS = ["p0,2,3,10,8,1", "p1,,,,,0", "p2,0,0,40,32,1", "p3,,,,,0", "p4,5,5,4,4,1", "p5,,,,,0"]


@pytest.mark.parametrize(
    ("row", "message"),
    [  # before: float() read '1_0' as 10 and '١' as 1; a negative width said 'x_min >= x_max'
        ("p0,1_0,3,10,8,1", r"line 2: x is '1_0', not a number"),
        ("p0,\u0661,3,10,8,1", r"line 2: x is '\u0661', not a number"),
        ("p0,12,3,-10,8,1", r"line 2: width is '-10'; a box's width and height must be > 0"),
        ("p0,12,3,10,0,1", r"line 2: height is '0'; a box's width and height must be > 0"),
    ],
)
def test_rsna_box_fields_are_plain_positive_numbers(tmp_path: Path, row: str, message: str) -> None:
    root = _rsna(tmp_path / "rsna", [row, *_RSNA_ROWS[1:]])
    with pytest.raises(ValueError, match=message):
        rsna_pneumonia(root)


@pytest.mark.parametrize(
    ("text", "message"),
    [  # before: a short row was AttributeError: 'NoneType' object has no attribute 'strip'; a
        # long row and a misspelt class were taken, keeping the patients meant to be dropped
        ("patientId,class\np1\n", r"detailed\.csv line 2: 1 field\(s\) for the 2 header"),
        ("patientId,class\np1,Normal,x\n", r"detailed\.csv line 2: more fields than the 2"),
        (
            "patientId,class\np1,Normal\np3,No Lung Opacity/Not Normal\n",
            r"detailed\.csv line 3: class is 'No Lung Opacity/Not Normal'; accepted: 'Lung "
            r"Opacity', 'Normal', 'No Lung Opacity / Not Normal'",
        ),
        ("patientId,class\n,Normal\n", r"detailed\.csv line 2: empty patientId"),
    ],
)
def test_rsna_detailed_class_info_rows_are_checked(tmp_path: Path, text: str, message: str) -> None:
    root = _rsna(tmp_path / "rsna", _RSNA_ROWS, detailed=text)
    with pytest.raises(ValueError, match=message):
        rsna_pneumonia(root, detailed_class_info="detailed.csv")
    drop_all = "patientId,class\n" + "".join(
        f"p{k},No Lung Opacity / Not Normal\n" for k in range(6)
    )
    (root / "detailed.csv").write_text(drop_all)
    with pytest.raises(ValueError, match=r"no patients \(6 dropped by the detailed class info\)"):
        rsna_pneumonia(root, detailed_class_info="detailed.csv")


def test_an_empty_dataset_name_is_refused_not_read_as_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # before: Path("") is ".", so load_dataset("") and `data check ""` read the current folder
    _mask_only_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in ("", "  "):
        with pytest.raises(ValueError, match=r"the dataset name or folder is empty"):
            load_dataset(name)
    check = runner.invoke(app, ["data", "check", ""])
    assert check.exit_code == 2 and "train:" not in check.output
    assert "the dataset name or folder is empty ('')" in check.output
    with pytest.raises(
        TypeError, match=r"name_or_path must be .* \(a str or os\.PathLike\), got int"
    ):
        load_dataset(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [  # before: float() took '0.5' and True, and '0.8,0.1,0.1' failed with "could not convert
        # string to float: '.'", 0.5 with "'float' object is not iterable"
        ("mean", ["0.5"], r"mean must hold numbers \(not texts or bools\), e\.g\. \(0\.5,\)"),
        ("std", [True], r"std must hold numbers \(not texts or bools\)"),
        ("mean", 0.5, r"mean must be a list or tuple of numbers, e\.g\. \(0\.5,\) for one"),
        ("split_fractions", "0.8,0.1,0.1", r"split_fractions must be a list or tuple of numbers"),
        ("split_fractions", (0.8, 0.1, "0.1"), r"split_fractions must hold numbers"),
        ("split_fractions", None, r"split_fractions must be a list or tuple of numbers"),
    ],
)
def test_normalisation_and_split_numbers_are_not_bent(
    tmp_path: Path, option: str, value: object, message: str
) -> None:
    root = _mask_only_folder(tmp_path / "data")
    with pytest.raises(TypeError, match=message):
        load_dataset(root, **{option: value})
    if option == "split_fractions":  # a built-in's split too
        with pytest.raises(TypeError, match=message):
            load_dataset("lesions", n_images=20, **{option: value})


def _imagenet(root: Path) -> Path:
    """train/ (two images per wnid) and val/ (one) of three wnids."""
    for split, n in (("train", 2), ("val", 1)):
        for c, wnid in enumerate(["n01440764", "n01443537", "n01484850"]):
            (root / split / wnid).mkdir(parents=True)
            for k in range(n):
                Image.new("RGB", (12, 9), (80 * c, 10, 10)).save(root / split / wnid / f"{k}.JPEG")
    return root


@pytest.mark.parametrize("folder", [".ipynb_checkpoints", "n09999999"])
def test_imagenet_train_folders_without_images_are_named_for_every_split(
    tmp_path: Path, folder: str
) -> None:
    # before: the val split took them as classes (.ipynb_checkpoints became class 0, shifting
    # every label by one) while the train split failed with torchvision's message
    root = _imagenet(tmp_path / "imagenet")
    (root / "train" / folder).mkdir()
    for split in ("train", "val"):
        with pytest.raises(ValueError, match=rf"1 folder\(s\) hold no image files \({folder}/\)"):
            imagenet_folder(root, split=split)


def test_imagenet_val_images_not_sorted_into_wnid_folders_are_explained(tmp_path: Path) -> None:
    root = _imagenet(tmp_path / "imagenet")
    for wnid_folder in list((root / "val").iterdir()):
        for image in wnid_folder.iterdir():
            image.rename(root / "val" / f"{wnid_folder.name}_{image.name}")
        wnid_folder.rmdir()
    # before: torchvision's "Couldn't find any class folder in .../val."
    first = sorted(p.name for p in (root / "val").iterdir())[0]  # the example: the first name
    with pytest.raises(
        FileNotFoundError, match=rf"val holds 3 image file\(s\) \(e\.g\. {first}\) but no wnid"
    ):
        imagenet_folder(root, split="val")
    assert len(imagenet_folder(root, split="train")) == 6


def _class_folders(root: Path, names: list[str], n: int = 10) -> Path:
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            Image.new("L", (8, 8), 20 * c + k).save(root / name / f"{k}.png")
    return root


@pytest.mark.parametrize(
    ("names", "message"),
    [  # before: each was read as a class of its own, the AppleDouble file as an unreadable image
        (["cats", "dogs", ".thumbs"], r"\.thumbs/ would be read as class folder\(s\): a hidden"),
        (["cats", "dogs", "__MACOSX"], r"__MACOSX/ would be read as class folder\(s\)"),
        (["cats", "dogs", "a\nb"], r"class folder name 'a\\nb' holds a control character"),
        (["cats", "dogs", "dogs "], r"class folder name 'dogs ' holds .* spaces around it"),
        (["caf\u00e9", "cafe\u0301"], r"class folders 'cafe\\u0301' and 'caf\\xe9' have the same"),
    ],
)
def test_class_folders_a_listing_would_misread_are_named(
    tmp_path: Path, names: list[str], message: str
) -> None:
    root = _class_folders(tmp_path / "data", names)
    with pytest.raises(ValueError, match=message):
        load_dataset(root)
    check = runner.invoke(app, ["data", "check", str(root)])
    assert check.exit_code == 2 and "train:" not in check.output


def test_macos_appledouble_files_are_named_not_read_as_images(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "data", ["cats", "dogs"])
    (root / "cats" / "._0.png").write_bytes(b"\x00\x05\x16\x07" + bytes(80))
    # before: "image file .../._0.png is unreadable: ... cannot identify image file"
    with pytest.raises(ValueError, match=r"1 file\(s\) named \._\* \(e\.g\. cats/\._0\.png\) are"):
        load_dataset(root)


@pytest.mark.parametrize("count", ["4_0", "\uff14", "image_id,Smiling,Young"])
def test_celeba_image_count_is_plain_digits(tmp_path: Path, count: str) -> None:
    # before: int() read '4_0' as 40 ("line 1 announces 40 images") and a fullwidth 4 as 4;
    # the Kaggle CSV's header was "expected the number of images", without what was found
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    lines = [count, "Smiling Young"]
    for k in range(4):
        Image.new("RGB", (8, 10), (30 * k, 0, 0)).save(root / "img_align_celeba" / f"{k}.jpg")
        lines.append(f"{k}.jpg {'1' if k % 2 else '-1'} 1")
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    message = rf"line 1: expected the number of images \(ASCII digits\), got {count!r}"
    with pytest.raises(ValueError, match=message):
        celeba(root)


@pytest.mark.parametrize("element", ["BitsStored", "PixelData"])
def test_a_dicom_file_whose_pixels_cannot_be_decoded_is_named(tmp_path: Path, element: str) -> None:
    # before: pydicom's AttributeError ("Missing required element: (0028,0101) 'Bits
    # Stored'") left load_image and the dataset without the file or the CSV line, exit 1
    pydicom = pytest.importorskip("pydicom")

    root = _mask_only_folder(tmp_path / "data")
    write_dicom(root / "img/0.dcm", np.full((10, 12), 40))
    header = pydicom.dcmread(root / "img/0.dcm")
    delattr(header, element)
    header.save_as(root / "img/0.dcm")
    text = (root / "annotations.csv").read_text().replace("img/0.png", "img/0.dcm")
    (root / "annotations.csv").write_text(text.replace(",img/mask0.png", ","))
    with pytest.raises(
        ValueError, match=r"0\.dcm is not a readable image: the pixels of this DICOM"
    ):
        load_image(root / "img/0.dcm", channels=1)
    check = runner.invoke(app, ["data", "check", str(root)])
    assert check.exit_code == 2, check.output
    assert "line 2: image file" in check.output and "cannot be decoded" in check.output


def test_a_csv_path_written_with_backslashes_says_so(tmp_path: Path) -> None:
    # before: "image file .../img\0.png not found", with nothing on why
    root = _mask_only_folder(tmp_path / "data")
    text = (root / "annotations.csv").read_text()
    (root / "annotations.csv").write_text(text.replace("img/0.png", "img\\0.png", 1))
    message = r"line 2: image file .*img\\0\.png not found: paths use '/' between folders .* exists"
    with pytest.raises(FileNotFoundError, match=message):
        load_dataset(root)


def test_data_check_says_which_classes_a_split_lacks(tmp_path: Path) -> None:
    # before: "val: 3 images, classes ['a', 'b']" for a val split without an image of 'b'
    for split in ("train", "val", "test"):
        for label in ("a", "b") if split != "val" else ("a",):
            (tmp_path / split / label).mkdir(parents=True)
            for k in range(3):
                Image.new("L", (8, 8), 40 * k).save(tmp_path / split / label / f"{k}.png")
    check = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert check.exit_code == 0, check.output
    assert "val: 3 images, classes ['a', 'b'] (no image of class(es) ['b'])" in check.output
    assert "test: 6 images, classes ['a', 'b']\n" in check.output


def test_an_importer_image_folder_outside_the_root_is_named(tmp_path: Path) -> None:
    # before: RSNA raised pathlib's "'/x/p0.png' is not in the subpath of '/root'", CelebA
    # blamed its attribute file ("line 3: image path '/.../000001.jpg' is absolute") for an
    # image folder given as an absolute path, even one inside the root
    root = _rsna(tmp_path / "rsna", _RSNA_ROWS)
    elsewhere = _rsna(tmp_path / "other", _RSNA_ROWS) / "stage_2_train_images"
    for images_dir in (str(elsewhere), "../other/stage_2_train_images"):
        with pytest.raises(ValueError, match=r"images_dir .* is not a folder inside the root"):
            rsna_pneumonia(root, images_dir=images_dir)
    inside = str(root / "stage_2_train_images")
    assert len(rsna_pneumonia(root, images_dir=inside, split_fractions=(1.0, 0.0, 0.0))) == 6
    celeb = tmp_path / "celeba"
    (celeb / "img").mkdir(parents=True)
    lines = ["4", "Smiling"]
    for k in range(4):
        Image.new("RGB", (8, 10), (30 * k, 0, 0)).save(celeb / "img" / f"{k}.jpg")
        lines.append(f"{k}.jpg {'1' if k % 2 else '-1'}")
    (celeb / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    dataset = celeba(celeb, images_dir=str(celeb / "img"), split_fractions=(0.5, 0.0, 0.5))
    assert dataset.records[0].image == "img/0.jpg"
    with pytest.raises(ValueError, match=r"images_dir .* is not a folder inside the root"):
        celeba(celeb, images_dir=str(elsewhere))


def test_dicom_files_in_class_folders_are_images(tmp_path: Path) -> None:
    # before: the class-folder listing took torchvision's extensions only: .dcm files were
    # dropped in silence (or the folder "held no image files"), while explain read them
    pytest.importorskip("pydicom")
    root = _class_folders(tmp_path / "data", ["cats", "dogs"], n=5)
    for name in ("cats", "dogs"):
        for k in range(5, 10):
            write_dicom(root / name / f"{k}.dcm", np.full((8, 8), 20 * k))
    train = load_dataset(root, split="train")
    assert sum(r.image.endswith(".dcm") for r in train.records) > 0
    total = sum(len(load_dataset(root, split=s)) for s in ("train", "val", "test"))
    assert total == 20


def test_files_a_class_folder_listing_leaves_out_are_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # before: a loose image in the root and a .gif next to the PNGs were left out in silence
    root = _class_folders(tmp_path / "data", ["cats", "dogs"])
    Image.new("L", (8, 8)).save(root / "stray.png")
    Image.new("L", (8, 8)).save(root / "cats" / "x.gif")
    (root / "dogs" / "notes.txt").write_text("not an image")
    (root / "dogs" / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level("WARNING", logger="torchlap.data._layout"):
        for split in ("train", "val", "test"):
            load_dataset(root, split=split)
    messages = [r.getMessage() for r in caplog.records if r.name == "torchlap.data._layout"]
    assert len(messages) == 2, messages  # said once, not once per split
    assert "1 image file(s) directly in the folder (e.g. stray.png)" in messages[0]
    assert "2 file(s) in the class folders are not images torchlap reads" in messages[1]
    assert "(.gif: 1, .txt: 1)" in messages[1]


@pytest.mark.parametrize("out", ["", ".", ".."])
def test_data_export_into_the_current_or_a_parent_folder_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str
) -> None:
    # before: "Error: PosixPath('.') has an empty name" (pathlib's, from the rename)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    result = runner.invoke(app, ["data", "export", "lesions", "--out", out, "--n-images", "10"])
    assert result.exit_code == 2, result.output
    said = "--out is empty or blank" if not out else "names no new folder (it is the current, "
    assert said in result.output
    assert not any((tmp_path / "cwd").iterdir())


def test_save_annotations_to_a_folder_or_under_a_file_says_so(tmp_path: Path) -> None:
    # before: a folder was "already exists; pass overwrite=True", and with overwrite=True an
    # IsADirectoryError naming the temporary file; under a file "[Errno 17] File exists"
    dataset = AnnotatedFolder(_mask_only_folder(tmp_path / "data"))
    (tmp_path / "out").mkdir()
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=r"out is a folder; pass the path of the CSV"):
            dataset.save_annotations(tmp_path / "out", overwrite=overwrite)
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(FileExistsError, match=r"afile is a file, so .* cannot be written under"):
        dataset.save_annotations(tmp_path / "afile" / "annotations.csv")
    assert (tmp_path / "afile").read_text() == "mine" and not any((tmp_path / "out").iterdir())


def test_transforms_that_do_not_take_the_sample_dict_are_named(tmp_path: Path) -> None:

    root = _mask_only_folder(tmp_path / "data")
    # before: torchvision's "Unexpected type <class 'dict'>" at the first sample
    for transform in (v1.Resize(8), v1.Compose([v1.Resize(8)])):
        with pytest.raises(TypeError, match=r"is of torchvision\.transforms \(v1\), which takes"):
            load_dataset(root, transform=transform)
        with pytest.raises(TypeError, match=r"torchvision\.transforms \(v1\)"):
            load_dataset("lesions", n_images=20, transform=transform)
    # before: "No bounding boxes were found in the sample" and KeyError: 'mask'
    for transform, got in (
        (lambda s: s["image"], "got Image"),
        (lambda s: {k: v for k, v in s.items() if k != "mask"}, r"got a dict without \['mask'\]"),
    ):
        dataset = load_dataset(root, transform=transform)
        with pytest.raises(TypeError, match=rf"must take and return the whole sample dict .*{got}"):
            dataset[0]
