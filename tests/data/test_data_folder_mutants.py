"""AnnotatedFolder's records, splits, cuts, sizes, boxes and refusals at their boundaries, on
tiny folders written here, against values worked out by hand from the documented format.

Written from a mutation run of torchlap/data/folder.py: each test pins a rule a survivor broke.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from folder_files import HEADER, SPLIT_ROWS, make_folder, make_records, plain_folder
from PIL import Image

from torchlap.data import AnnotatedFolder, ImageRecord

# --- construction and options ---------------------------------------------------------------


def test_a_missing_dataset_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"dataset folder .*nowhere does not exist"):
        AnnotatedFolder(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AnnotatedFolder(tmp_path / "file")


def test_the_options_are_checked_before_the_csv_is_parsed(tmp_path: Path) -> None:
    (tmp_path / "annotations.csv").write_text("not,the,columns\n1,2,3\n")
    with pytest.raises(TypeError, match=r"seed must be an int"):
        AnnotatedFolder(tmp_path, seed=1.7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown split 'dev'; accepted splits are train"):
        AnnotatedFolder(tmp_path, split="dev")


def test_from_records_checks_its_options(tmp_path: Path) -> None:
    root = plain_folder(tmp_path, 4)
    records = make_records(4, "train")
    with pytest.raises(ValueError, match=r"unknown split 'dev'; accepted splits are train"):
        AnnotatedFolder.from_records(root, records, source="s", has_regions=False, split="dev")
    with pytest.raises(TypeError, match=r"unknown folder dataset option\(s\) colour"):
        AnnotatedFolder.from_records(root, records, source="s", has_regions=False, colour=3)


def test_from_records_needs_a_split_for_every_image_or_for_none(tmp_path: Path) -> None:
    root = plain_folder(tmp_path, 4)
    records = make_records(4, "train")
    records[3] = ImageRecord(image="3.png", label="b", split=None, source="rec 3")
    message = r"^src: either every image has a split or none has one$"
    with pytest.raises(ValueError, match=message):
        AnnotatedFolder.from_records(root, records, source="src", has_regions=False)
    with pytest.raises(ValueError, match=r"^src: no images$"):
        AnnotatedFolder.from_records(root, [], source="src", has_regions=False)


def test_the_default_seed_is_zero_and_recorded(tmp_path: Path) -> None:
    rows = [f"{k}.png,{'ab'[k % 2]}" for k in range(20)]
    root = plain_folder(tmp_path / "d", 20)
    (root / "annotations.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    dataset = AnnotatedFolder(root)
    assert dataset.split_seed == 0 and dataset.metadata()["split_seed"] == 0
    assert dataset.split_assignment == AnnotatedFolder(root, seed=0).split_assignment
    records = [ImageRecord(image=f"{k}.png", label="ab"[k % 2]) for k in range(20)]
    built = AnnotatedFolder.from_records(root, records, source="s", has_regions=False)
    assert built.split_seed == 0 and built.split_assignment == dataset.split_assignment
    assert not built.split_given and built.metadata()["dataset"] == str(root)


def test_a_given_split_is_kept_and_no_seed_recorded(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", SPLIT_ROWS)
    dataset = AnnotatedFolder(root, split="val", seed=5)
    assert dataset.split_given and dataset.split_seed is None
    assert dataset.metadata()["split_seed"] is None
    assert dataset.split_assignment == {
        "a0.png": "train", "b0.png": "train", "a1.png": "val", "b1.png": "val", "a2.png": "test",
    }  # fmt: skip
    assert [r.image for r in dataset.records] == ["a1.png", "b1.png"]
    assert [r.image for r in AnnotatedFolder(root, split="test").records] == ["a2.png"]


def test_a_seeded_split_puts_every_image_in_one_split(tmp_path: Path) -> None:
    root = plain_folder(tmp_path, 20)
    records = [ImageRecord(image=f"{k}.png", label="ab"[k % 2]) for k in range(20)]
    splits = {
        name: AnnotatedFolder.from_records(
            root, records, source="s", has_regions=False, split=name, seed=3
        )
        for name in ("train", "val", "test")
    }
    seen = [r.image for name in splits for r in splits[name].records]
    assert sorted(seen) == sorted(r.image for r in records)  # each image once
    for name, dataset in splits.items():
        assert all(r.split == name for r in dataset.records)
        assert all(dataset.split_assignment[r.image] == name for r in dataset.records)
    # (0.8, 0.1, 0.1) of 10 images per class: 8 train, 1 val, 1 test
    assert [len(splits[name]) for name in ("train", "val", "test")] == [16, 2, 2]


def test_the_classes_are_the_sorted_labels_or_the_given_list(tmp_path: Path) -> None:
    root = plain_folder(tmp_path, 4)
    records = [
        ImageRecord(image=f"{k}.png", label=label, split="train")
        for k, label in enumerate(["zeta", "alpha", "mid", "alpha"])
    ]
    dataset = AnnotatedFolder.from_records(root, records, source="s", has_regions=False)
    assert dataset.classes == ["alpha", "mid", "zeta"]
    assert dataset.class_to_index == {"alpha": 0, "mid": 1, "zeta": 2}
    assert [dataset[k]["label"] for k in range(4)] == [2, 0, 1, 0]
    given = ["zeta", "mid", "extra", "alpha"]
    fixed = AnnotatedFolder.from_records(
        root, records, source="s", has_regions=False, classes=given
    )
    assert fixed.classes == given and [fixed[k]["label"] for k in range(4)] == [0, 3, 1, 3]


def test_a_given_class_list_need_not_have_training_images(tmp_path: Path) -> None:
    root = plain_folder(tmp_path, 3)
    records = [
        ImageRecord(image="0.png", label="a", split="train"),
        ImageRecord(image="1.png", label="b", split="val"),
        ImageRecord(image="2.png", label="a", split="test"),
    ]
    with pytest.raises(ValueError, match=r"label 'b' appears only in the val split\(s\)"):
        AnnotatedFolder.from_records(root, records, source="s", has_regions=False)
    val = AnnotatedFolder.from_records(
        root, records, source="s", has_regions=False, split="val", classes=["a", "b"]
    )
    assert val.classes == ["a", "b"] and val[0]["label"] == 1


def test_a_label_outside_a_given_class_list_is_named(tmp_path: Path) -> None:
    root = plain_folder(tmp_path, 2)
    records = [
        ImageRecord(image="0.png", label="a", split="train", source="line 2"),
        ImageRecord(image="1.png", label="zz", split="train", source="line 3"),
    ]
    few = ["a", "b"]
    with pytest.raises(
        ValueError, match=r"^line 3: unknown label 'zz'; the 2 known classes are a, b$"
    ):
        AnnotatedFolder.from_records(root, records, source="s", has_regions=False, classes=few)
    many = [f"c{k:02d}" for k in range(11)] + ["a"]
    message = r"the 12 known classes are c00, c01, .*, c09, \.\.\.$"
    with pytest.raises(ValueError, match=message):
        AnnotatedFolder.from_records(root, records, source="s", has_regions=False, classes=many)
    ten = [f"c{k}" for k in range(9)] + ["a"]
    with pytest.raises(ValueError, match=r"classes are c0, c1, .*, c8, a$"):
        AnnotatedFolder.from_records(root, records, source="s", has_regions=False, classes=ten)


def test_a_label_only_in_val_and_test_names_both_splits(tmp_path: Path) -> None:
    rows = [*SPLIT_ROWS, "c0.png,c,test,,,,,", "c1.png,c,val,,,,,"]
    root = make_folder(tmp_path / "d", rows)
    message = r"line 7: label 'c' appears only in the test and val split\(s\), never in train"
    with pytest.raises(ValueError, match=message):
        AnnotatedFolder(root)


def test_an_empty_split_is_refused_when_selected(tmp_path: Path) -> None:
    rows = SPLIT_ROWS[:4]  # no test image
    root = make_folder(tmp_path / "d", rows)
    with pytest.raises(ValueError, match=r"annotations\.csv: the 'test' split has no images"):
        AnnotatedFolder(root, split="test")
    train = AnnotatedFolder(root)
    with pytest.raises(ValueError, match=r"the 'test' split has no images"):
        train.with_split("test")
    with pytest.raises(ValueError, match=r"unknown split 'dev'"):
        train.with_split("dev")


# --- the cut of n_images and with_split -----------------------------------------------------


def test_a_cut_of_val_or_test_may_lose_a_class_but_not_of_train(tmp_path: Path) -> None:
    rows = [f"t{k}.png,{'ab'[k % 2]},train,,,,," for k in range(4)]
    rows += [f"v{k}.png,{'ab'[k % 2]},val,,,,," for k in range(4)]
    rows += ["s0.png,a,test,,,,,"]
    root = make_folder(tmp_path / "d", rows)
    val = AnnotatedFolder(root, split="val", n_images=1)  # one of the two classes: taken
    assert len(val) == 1 and val.records[0].image.startswith("v")
    with pytest.raises(ValueError, match=r"n_images=1 keeps 1 of the 4 training images"):
        AnnotatedFolder(root, split="train", n_images=1)
    train = AnnotatedFolder(root, split="train", n_images=2)
    assert sorted(r.label for r in train.records) == ["a", "b"]
    assert len(AnnotatedFolder(root, split="train", n_images=9)) == 4
    # with_split cuts the other split the same way, as loading it anew does
    assert len(train.with_split("val")) == 2
    assert [r.image for r in train.with_split("val").records] == [
        r.image for r in AnnotatedFolder(root, split="val", n_images=2).records
    ]
    with pytest.raises(ValueError, match=r"n_images=1 keeps 1 of the 4 training images"):
        val.with_split("train")


def test_with_split_keeps_the_options_and_decodes_that_splits_masks(tmp_path: Path) -> None:
    rows = [
        "t0.png,a,train,1,1,4,4,",
        "t1.png,b,train,,,,,",
        "v0.png,a,val,0,0,2,2,empty.png",
        "v1.png,b,val,,,,,",
    ]
    root = make_folder(tmp_path / "d", rows, sizes={"t0.png": (10, 8)})
    Image.new("L", (10, 8), 0).save(root / "empty.png")  # an empty mask next to a box
    train = AnnotatedFolder(root, image_size=(6, 12), mean=[0.25], std=[2.0])
    with pytest.raises(ValueError, match=r"mask file .*empty\.png is empty but the image has 1"):
        train.with_split("val")
    Image.new("L", (10, 8), 255).save(root / "empty.png")
    val = train.with_split("val")
    assert val.split == "val" and train.split == "train"
    assert [r.image for r in val.records] == ["v0.png", "v1.png"]
    assert val.image_size == (6, 12) and (val.mean, val.std) == ((0.25,), (2.0,))
    assert val[0]["image"].shape == (1, 6, 12) and int(val[0]["mask"].sum()) == 6 * 12
    lazy = AnnotatedFolder(root, verify_images=False)
    Image.new("L", (10, 8), 0).save(root / "empty.png")
    lazy_val = lazy.with_split("val")  # not verified: the mask is decoded when it loads
    with pytest.raises(ValueError, match=r"empty\.png is empty but the image has 1 box"):
        lazy_val[0]


# --- files, channels and sizes --------------------------------------------------------------


def test_records_reaching_outside_the_folder_are_refused(tmp_path: Path) -> None:
    root = plain_folder(tmp_path / "d", 2)
    plain_folder(tmp_path, 1)  # tmp_path/0.png exists, outside the dataset folder
    outside = [
        ImageRecord(image="../0.png", label="a", split="train", source="rec 0"),
        ImageRecord(image="1.png", label="a", split="train", source="rec 1"),
    ]
    with pytest.raises(ValueError, match=r"rec 0: image path '\.\./0\.png' leaves the"):
        AnnotatedFolder.from_records(root, outside, source="s", has_regions=False)
    mask_outside = [
        ImageRecord(image="0.png", label="a", split="train", source="rec 0", mask="../0.png")
    ]
    with pytest.raises(ValueError, match=r"rec 0: mask path '\.\./0\.png' leaves the"):
        AnnotatedFolder.from_records(root, mask_outside, source="s", has_regions=True)


@pytest.mark.parametrize("verify_images", [True, False])
def test_a_missing_mask_file_is_named(tmp_path: Path, verify_images: bool) -> None:
    root = make_folder(tmp_path / "d", ["a.png,a,train,,,,,gone.png", "b.png,b,train,,,,,"])
    with pytest.raises(FileNotFoundError, match=r"line 2: mask file .*gone\.png not found"):
        AnnotatedFolder(root, verify_images=verify_images)
    (root / "gone.png").mkdir()
    with pytest.raises(FileNotFoundError, match=r"mask file .*gone\.png is a folder"):
        AnnotatedFolder(root, verify_images=verify_images)


def _mixed_folder(root: Path, first_mode: str, second_mode: str) -> Path:
    root.mkdir(parents=True)
    Image.new(first_mode, (4, 4), 0 if first_mode == "L" else (0, 0, 0)).save(root / "a.png")
    Image.new(second_mode, (4, 4), 0 if second_mode == "L" else (0, 0, 0)).save(root / "b.png")
    (root / "annotations.csv").write_text("image,label,split\na.png,a,train\nb.png,b,train\n")
    return root


@pytest.mark.parametrize("verify_images", [True, False])
def test_channels_are_inferred_from_every_header(tmp_path: Path, verify_images: bool) -> None:
    # one grey image decides nothing: the colour image after it makes the dataset RGB
    mixed = _mixed_folder(tmp_path / "mixed", "L", "RGB")
    assert AnnotatedFolder(mixed, verify_images=verify_images).n_channels == 3
    grey = _mixed_folder(tmp_path / "grey", "L", "L")
    assert AnnotatedFolder(grey, verify_images=verify_images).n_channels == 1
    assert AnnotatedFolder(grey, verify_images=verify_images, channels=3).n_channels == 3
    assert AnnotatedFolder(mixed, verify_images=verify_images, channels=1)[1]["image"].shape == (
        1, 4, 4,
    )  # fmt: skip


def test_an_unreadable_image_fails_at_once_only_with_verification(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path / "d", "L", "L")
    (root / "a.png").write_text("no image")
    with pytest.raises(ValueError, match=r"line 2: image file .*a\.png is unreadable"):
        AnnotatedFolder(root)
    lazy = AnnotatedFolder(root, verify_images=False)  # the grey b.png decides: 1 channel
    assert lazy.n_channels == 1 and not lazy.verified and lazy.image_size is None
    with pytest.raises(ValueError, match=r"line 2: image file .*a\.png is unreadable"):
        lazy[0]
    assert lazy[1]["image"].shape == (1, 4, 4)


def test_the_native_size_is_height_by_width_when_shared(tmp_path: Path) -> None:
    rows = ["a.png,a,train,,,,,", "b.png,b,train,,,,,", "c.png,a,val,,,,,", "d.png,b,test,,,,,"]
    sizes = {"a.png": (7, 3), "b.png": (7, 3), "c.png": (5, 9), "d.png": (7, 3)}
    root = make_folder(tmp_path / "d", rows, sizes=sizes)
    train = AnnotatedFolder(root)
    assert train.image_size == (3, 7) and train[0]["image"].shape == (1, 3, 7)
    assert AnnotatedFolder(root, split="val").image_size == (9, 5)
    assert train.with_split("val").image_size == (9, 5)
    (root / "annotations.csv").write_text(HEADER + "".join(r + "\n" for r in rows[:2]))
    Image.new("L", (7, 4)).save(root / "b.png")
    assert AnnotatedFolder(root).image_size is None  # sizes differ: none to report
    assert AnnotatedFolder(root, image_size=5).image_size == (5, 5)
    assert AnnotatedFolder(root, verify_images=False, channels=1).image_size is None


def test_augmentation_needs_an_image_size_on_train_only(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", SPLIT_ROWS)
    with pytest.raises(ValueError, match=r"^augment=True needs an image_size$"):
        AnnotatedFolder(root, augment=True)
    assert AnnotatedFolder(root, split="val", augment=True)[0]["image"].shape == (1, 8, 10)
    train = AnnotatedFolder(root, augment=True, image_size=6)
    assert train[0]["image"].shape == (1, 6, 6)
    with pytest.raises(ValueError, match="augment=True needs an image_size"):
        AnnotatedFolder(root, split="val", augment=True).with_split("train")


@pytest.mark.parametrize(
    ("mean", "std", "message"),
    [
        ([0.5, 0.5], [1.0], r"mean and std need 1 value\(s\), got \(0\.5, 0\.5\), \(1\.0,\)"),
        ([0.5], [1.0, 1.0], r"mean and std need 1 value\(s\)"),
        ([float("nan")], [1.0], r"mean must be finite and std finite and positive"),
        ([float("inf")], [1.0], r"mean must be finite"),
        ([0.5], [0.0], r"std finite and positive, got \(0\.5,\), \(0\.0,\)"),
        ([0.5], [-1.0], r"std finite and positive"),
        ([0.5], [float("inf")], r"std finite and positive"),
        ([0.5], [float("nan")], r"std finite and positive"),
    ],
)
def test_normalization_statistics_are_checked(tmp_path: Path, mean, std, message) -> None:
    root = make_folder(tmp_path / "d", SPLIT_ROWS)
    with pytest.raises(ValueError, match=message):
        AnnotatedFolder(root, mean=mean, std=std)


def test_normalization_statistics_are_kept_as_floats(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", SPLIT_ROWS)
    dataset = AnnotatedFolder(root, mean=[1], std=[3])
    assert dataset.mean == (1.0,) and dataset.std == (3.0,)
    assert all(type(v) is float for v in dataset.mean + dataset.std)
    rgb = AnnotatedFolder(root, channels=3, mean=(0.1, 0.2, 0.3), std=(1, 2, 3))
    assert rgb.mean == (0.1, 0.2, 0.3) and rgb.std == (1.0, 2.0, 3.0)
    assert len(AnnotatedFolder(root, channels=3).mean) == 3
