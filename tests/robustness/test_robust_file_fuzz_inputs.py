"""The other files torchlap reads, each damaged in one way at a time (the file fuzzer, part 2;
the contract is ``test_robust_file_fuzz.py``'s): an image given to ``torchlap explain``, an
image of an ImageFolder layout, the model record of a torchvision (ResNet-18) run and of the
other builders, ``train --concept-sets FILE`` and ``train --pretrained FILE.safetensors``
(stopped where train would write its run: a refusal must come before)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from file_fuzz import (
    CLEAN_CONCEPT_SETS,
    PICTURE_MAKERS,
    concept_set_cases,
    config_cases,
    dicom_cases,
    read_rows,
    target_line,
    weights_cases,
    write_rows,
)
from file_fuzz_accepted import (
    CONCEPT_SETS_ACCEPTED,
    DICOM_ACCEPTED,
    KNOWN_GAPS,
    NAMED_BY,
    PICTURE_ACCEPTED,
    PICTURE_SAME,
    PRETRAINED_ACCEPTED,
    REGRESSIONS,
    TORCHVISION_ACCEPTED,
)
from file_fuzz_checks import (
    SPLITS,
    check_refusal,
    config_accepted,
    copy_tree,
    explain,
    fast,
    invoke,
    leaks,
    same_samples,
    samples,
    stop_train_at_work,
    xfail_params,
)

from conftest import TINY, snapshot
from torchlap.data import load_dataset, load_image

# ------------------------------------------------------------------------------------------
# an image given to explain, an image of an ImageFolder
_PICTURE_LABELS = sorted(PICTURE_MAKERS)


def _maps(out: Path) -> dict[str, Any]:
    import numpy as np

    (npz,) = out.rglob("*.npz")
    with np.load(npz) as data:
        return {key: data[key] for key in data.files}


def _check_explain_image(label: str, run: Path, clean: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    image = Path(shutil.copy(clean, folder / "a.png"))
    PICTURE_MAKERS[label](image)
    before = snapshot(folder)
    outcome = explain(image, run, tmp_path / "out", folder)
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.changed == [] and snapshot(folder) == before
    if label in PICTURE_SAME or label in PICTURE_ACCEPTED:
        assert outcome.code == 0, outcome.output
        if label in PICTURE_SAME:
            reference = tmp_path / "clean"
            reference.mkdir()
            shutil.copy(clean, reference / "a.png")
            assert explain(reference / "a.png", run, tmp_path / "ref", reference).code == 0
            got, want = _maps(tmp_path / "out"), _maps(tmp_path / "ref")
            assert got.keys() == want.keys()
            for key in want:
                if want[key].dtype.kind == "f":
                    assert abs(got[key] - want[key]).max() <= 1e-5, key
        return
    assert not (tmp_path / "out").exists()
    check_refusal(outcome, ["a.png"])
    with pytest.raises((ValueError, TypeError)) as raised:
        load_image(image, channels=1)
    assert "a.png" in str(raised.value)


@pytest.mark.parametrize("label", _PICTURE_LABELS[::2])
def test_damaged_image_toexplain(
    label: str, tiny_run: Path, an_image: Path, tmp_path: Path
) -> None:
    _check_explain_image(label, tiny_run, an_image, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("label", _PICTURE_LABELS)
def test_damaged_image_to_explain_every_case(
    label: str, tiny_run: Path, an_image: Path, tmp_path: Path
) -> None:
    _check_explain_image(label, tiny_run, an_image, tmp_path)


def _image_folder(root: Path, clean_data: Path) -> Path:
    """An ImageFolder with splits: ``root/{train,val,test}/{a,b}/{0,1}.png``."""
    images = sorted((clean_data / "images" / "train").glob("*.png"))
    for split in SPLITS:
        for index, name in enumerate(("a", "b")):
            (root / split / name).mkdir(parents=True)
            for number in range(2):
                shutil.copy(images[2 * index + number], root / split / name / f"{number}.png")
    return root


def _check_image_folder(label: str, clean_data: Path, tmp_path: Path) -> None:
    clean = _image_folder(tmp_path / "clean", clean_data)
    folder = _image_folder(tmp_path / "case", clean_data)
    PICTURE_MAKERS[label](folder / "train" / "a" / "0.png")
    before = snapshot(folder)
    outcome = invoke(["data", "check", str(folder)], folder)
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.changed == [] and snapshot(folder) == before
    if label in PICTURE_SAME or label in PICTURE_ACCEPTED:
        assert outcome.code == 0, outcome.output
        loaded = samples(folder)
        if label in PICTURE_SAME:
            reference = invoke(["data", "check", str(clean)], clean).output
            assert outcome.output.replace(str(folder), str(clean)) == reference
            same_samples(loaded, samples(clean))
        return
    check_refusal(outcome, ["train/a/0.png"])
    with pytest.raises((ValueError, TypeError)) as raised:
        samples(folder)
    assert "train/a/0.png" in str(raised.value)


@pytest.mark.parametrize("label", _PICTURE_LABELS[1::2])
def test_damaged_image_in_image_folder(label: str, clean_data: Path, tmp_path: Path) -> None:
    _check_image_folder(label, clean_data, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("label", _PICTURE_LABELS)
def test_damaged_image_in_image_folder_every_case(
    label: str, clean_data: Path, tmp_path: Path
) -> None:
    _check_image_folder(label, clean_data, tmp_path)


# ------------------------------------------------------------------------------------------
# a DICOM image given to explain
DICOM_CASES = dicom_cases()


def _dicom_writer() -> Any:
    """``tests/data/dicom_files.write_dicom`` (the test is skipped without pydicom)."""
    pytest.importorskip("pydicom")
    sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
    from dicom_files import write_dicom

    return write_dicom


def _write_clean_dicom(path: Path) -> None:
    import numpy as np

    _dicom_writer()(path, (np.arange(10 * 12).reshape(10, 12) % 200).astype(np.uint8))


def _check_dicom(label: str, run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _write_clean_dicom(folder / "a.dcm")
    DICOM_CASES[label](folder)
    before = snapshot(folder)
    outcome = explain(folder / "a.dcm", run, tmp_path / "out", folder)
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.changed == [] and snapshot(folder) == before
    if label in DICOM_ACCEPTED:
        assert outcome.code == 0, outcome.output
        load_image(folder / "a.dcm", channels=1)
        return
    assert not (tmp_path / "out").exists()
    check_refusal(outcome, ["a.dcm"])
    with pytest.raises((ValueError, TypeError)) as raised:
        load_image(folder / "a.dcm", channels=1)
    assert "a.dcm" in str(raised.value) and not leaks(str(raised.value))


@pytest.mark.parametrize("label", xfail_params(fast(sorted(DICOM_CASES), 3, seed=4)))
def test_damaged_dicom_to_explain(label: str, tiny_run: Path, tmp_path: Path) -> None:
    _check_dicom(label, tiny_run, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("label", xfail_params(sorted(DICOM_CASES)))
def test_damaged_dicom_to_explain_every_case(label: str, tiny_run: Path, tmp_path: Path) -> None:
    _check_dicom(label, tiny_run, tmp_path)


def test_dicom_colour_model_refused_when_the_folder_is_loaded(
    clean_data: Path, tmp_path: Path
) -> None:
    """A palette DICOM is refused by loading (headers only), not first when training decodes
    it: the refusal comes before any work."""
    import numpy as np
    import pydicom

    folder = copy_tree(clean_data, tmp_path, "data")
    rows = read_rows(folder)
    line = target_line(rows)
    image = folder / rows[line][rows[0].index("image")]
    _dicom_writer()(folder / "images" / "a.dcm", np.zeros(image_size(image), np.uint8))
    header = pydicom.dcmread(folder / "images" / "a.dcm")
    header.PhotometricInterpretation = "PALETTE COLOR"
    header.save_as(folder / "images" / "a.dcm")
    rows[line][rows[0].index("image")] = "images/a.dcm"
    write_rows(folder, rows)
    split = rows[line][rows[0].index("split")]
    with pytest.raises(ValueError, match=r"a\.dcm.*PhotometricInterpretation 'PALETTE COLOR'"):
        load_dataset(folder, split=split, image_size=None)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of a PNG."""
    from PIL import Image

    with Image.open(path) as image:
        return image.height, image.width


# ------------------------------------------------------------------------------------------
# the model record of a torchvision run (ResNet-18), and of the other builders
_TORCHVISION_KEYS = [
    ("model", key)
    for key in (
        "builder",
        "arch",
        "num_classes",
        "in_channels",
        "arch_kwargs",
        "lap",
        "pretrained",
        "lapify",
    )
]
TORCHVISION_CASES = {f"resnet18/{k}": v for k, v in config_cases(_TORCHVISION_KEYS).items()}


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained ResNet-18 LAP run (torchvision builder; 40 lesion images of 32 px)."""
    from torchlap.train import TrainConfig, fit

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("filefuzz") / "resnet"
    settings = {**TINY, "arch": "resnet18"}
    return fit(TrainConfig(out=str(out), **settings))


def _torchvision_accepted(label: str) -> bool:
    inner = label.removeprefix("resnet18/")
    return inner in TORCHVISION_ACCEPTED or config_accepted(inner) is not None


@pytest.mark.slow
@pytest.mark.parametrize("label", xfail_params(sorted(TORCHVISION_CASES)))
def test_damaged_torchvision_model_record(
    label: str, resnet_run: Path, an_image: Path, tmp_path: Path
) -> None:
    folder = copy_tree(resnet_run, tmp_path, "run")
    TORCHVISION_CASES[label](folder)
    outcome = explain(an_image, folder, tmp_path / "out", folder)
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.changed == []
    if _torchvision_accepted(label):
        assert outcome.code == 0, outcome.output
        return
    names = ["config.json"]
    if ":" in label:  # the key
        key = label.split(":", 1)[1].split("=", 1)[0].rsplit(".", 1)[-1]
        names.append(NAMED_BY.get(label, key))
    check_refusal(outcome, names)


@pytest.mark.parametrize(
    ("record", "named"),
    [
        ({"arch_kwargs": "abc"}, "arch_kwargs"),
        ({"arch_kwargs": [1, 2]}, "arch_kwargs"),
        ({"arch_kwargs": 1e30}, "arch_kwargs"),
        ({"arch_kwargs": {"no_such_option": 1}}, "arch_kwargs"),
    ],
)
def test_torchvision_record_arch_kwargs(record: dict[str, Any], named: str) -> None:
    """A ResNet record whose arch_kwargs are no keyword arguments is refused naming them (it
    was a bare Python message: 'dictionary update sequence ...', ''float' object is not
    iterable', 'ResNet.__init__() got an unexpected keyword argument')."""
    from torchlap.models.backbones import rebuild_backbone

    base = {"builder": "torchlap.models.build_model", "arch": "resnet18", "num_classes": 2,
            "in_channels": 1, "lapify": []}  # fmt: skip
    with pytest.raises(ValueError, match=r"config\.json: the model record's arch_kwargs") as raised:
        rebuild_backbone({**base, **record})
    assert named in str(raised.value) and not leaks(str(raised.value))


@pytest.mark.parametrize("missing", ["arch", "num_classes", "in_channels"])
def test_bcos_record_lacking_a_key(missing: str) -> None:
    """A B-cos record lacking a key it needs names it (it was a bare KeyError: 'arch')."""
    from torchlap.models.backbones import BCOS_BUILDER, rebuild_backbone

    record = {"builder": BCOS_BUILDER, "arch": "resnet20", "num_classes": 2, "in_channels": 1}
    del record[missing]
    with pytest.raises(ValueError, match=f"the model record lacks {missing}"):
        rebuild_backbone(record)


# ------------------------------------------------------------------------------------------
# a --concept-sets file of train
CONCEPT_SET_CASES = concept_set_cases()
#: a train command line of the suite's tiny run (without --out)
_TRAIN = ["train", "--data", "lesions", "--arch", "smallcnn", "--n-images", "40",
          "--image-size", "32", "--epochs", "1"]  # fmt: skip
_CONCEPT_SET_LABELS = sorted(CONCEPT_SET_CASES)


def _check_concept_sets(label: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stop_train_at_work(monkeypatch)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "sets.json").write_text(json.dumps(CLEAN_CONCEPT_SETS))
    CONCEPT_SET_CASES[label](folder)
    before = snapshot(folder)
    out = tmp_path / "out"
    args = [*_TRAIN, "--out", str(out), "--concept-sets", str(folder / "sets.json")]
    outcome = invoke(args, folder)
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.changed == [] and snapshot(folder) == before
    assert not out.exists()
    if label in CONCEPT_SETS_ACCEPTED:
        assert outcome.code is None, outcome.output  # reached the training
        return
    check_refusal(outcome, ["--concept-sets", str(folder / "sets.json")])


@pytest.mark.parametrize("label", xfail_params(fast(_CONCEPT_SET_LABELS, 3, seed=3)))
def test_damaged_concept_sets(label: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _check_concept_sets(label, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("label", xfail_params(_CONCEPT_SET_LABELS))
def test_damaged_concept_sets_every_case(
    label: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check_concept_sets(label, tmp_path, monkeypatch)


# ------------------------------------------------------------------------------------------
# a --pretrained .safetensors file of train
PRETRAINED_CASES = {k: v for k, v in weights_cases().items() if not k.endswith("+rehash")}
_PRETRAINED_LABELS = sorted(PRETRAINED_CASES)


def _check_pretrained(
    label: str, run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop_train_at_work(monkeypatch)
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(run / "model.safetensors", folder / "model.safetensors")
    PRETRAINED_CASES[label](folder)
    before = snapshot(folder)
    out = tmp_path / "out"
    args = [*_TRAIN, "--out", str(out), "--pretrained", str(folder / "model.safetensors")]
    outcome = invoke(args, folder)
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.changed == [] and snapshot(folder) == before
    assert not out.exists()
    if label in PRETRAINED_ACCEPTED:
        assert outcome.code is None, outcome.output  # reached the training
        return
    check_refusal(outcome, [str(folder / "model.safetensors")])


@pytest.mark.parametrize("label", _PRETRAINED_LABELS)
def test_damaged_pretrained_file(
    label: str, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check_pretrained(label, tiny_run, tmp_path, monkeypatch)


# ------------------------------------------------------------------------------------------
# the tables themselves
def test_tables_name_only_existing_cases() -> None:
    """Every accepted / gap label of these inputs is a case of their tables."""
    assert set(PICTURE_SAME) | set(PICTURE_ACCEPTED) <= set(PICTURE_MAKERS)
    assert not set(PICTURE_SAME) & set(PICTURE_ACCEPTED)
    for label in TORCHVISION_ACCEPTED:
        assert f"resnet18/{label}" in TORCHVISION_CASES, label
    assert set(CONCEPT_SETS_ACCEPTED) <= set(CONCEPT_SET_CASES)
    assert set(PRETRAINED_ACCEPTED) <= set(PRETRAINED_CASES)
    assert set(DICOM_ACCEPTED) <= set(DICOM_CASES)
    ours = ("resnet18/", "concept-sets", "dicom")
    every = {**TORCHVISION_CASES, **CONCEPT_SET_CASES, **DICOM_CASES}
    for label in [*KNOWN_GAPS, *REGRESSIONS, *NAMED_BY]:
        assert not label.startswith(ours) or label in every, label
