"""Files a user hands torchlap, damaged: every one is refused naming the file, what was wrong
and what is accepted, before any work (no output written, no model trained); never a raw
KeyError/AttributeError, never a silent wrong result. (The damage load_run already names is in
test_robust_library.py; checkpoints and stale temporaries in test_robust_faults.py.)"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import TINY, snapshot
from torchlap.cli import app
from torchlap.runs import RunError, RunFileNotFoundError, load_run

_DAMAGED_TRAIN = {"text": "lesions", "number": 3, "list": [], "null": None}


def _edit_config(run: Path, **changes: object) -> None:
    """Set (or, for the value ``...``, delete) top-level keys of the run's config.json."""
    config = json.loads((run / "config.json").read_text())
    for key, value in changes.items():
        if value is ...:
            del config[key]
        else:
            config[key] = value
    (run / "config.json").write_text(json.dumps(config))


def _train_args(out: Path) -> list[str]:
    return [
        "train", "--data", TINY["data"], "--out", str(out), "--arch", TINY["arch"],
        "--epochs", "1", "--n-images", str(TINY["n_images"]), "--image-size",
        str(TINY["image_size"]), "--batch-size", str(TINY["batch_size"]), "--no-progress",
        "--accelerator", "cpu", "--devices", "1",
    ]  # fmt: skip


def _refused(args: list[str]) -> str:
    """Run ``torchlap ARGS``; check it is refused as bad input (exit 2, one Error line, no
    traceback) and return that line."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def _without_log(folder: Path) -> dict[str, str]:
    files = snapshot(folder)
    files.pop("train.log", None)  # the run's log may record the refusal
    return files


# ----------------------------------------------------------------------------- config.json


@pytest.mark.parametrize("value", _DAMAGED_TRAIN.values(), ids=_DAMAGED_TRAIN)
def test_load_run_refuses_a_train_record_that_is_not_a_dict(run_copy: Path, value) -> None:
    """``train`` (the options the run trained with, which evaluate, explain and export read)
    of another type gave AttributeError: 'str' object has no attribute 'get'."""
    _edit_config(run_copy, train=value)
    with pytest.raises(RunError, match=r"config\.json: 'train' must be a dict \(the options"):
        load_run(run_copy)


def test_load_run_still_reads_a_run_without_a_train_record(run_copy: Path) -> None:
    _edit_config(run_copy, train=...)
    assert load_run(run_copy).classes == ["negative", "positive"]


@pytest.mark.parametrize("command", ["explain", "export", "evaluate"])
def test_commands_name_a_damaged_train_record_before_any_work(
    run_copy: Path, tmp_path: Path, command: str
) -> None:
    _edit_config(run_copy, train="lesions")
    image = tmp_path / "image.png"
    Image.new("L", (32, 32)).save(image)
    out = tmp_path / "out"
    args = {
        "explain": ["explain", "--run", str(run_copy), str(image), "--out", str(out)],
        "export": ["export", "--run", str(run_copy), "--out", str(tmp_path / "model.onnx")],
        "evaluate": ["evaluate", "--run", str(run_copy), "--out", str(out)],
    }[command]
    line = _refused(args)
    assert "config.json: 'train' must be a dict" in line and "got 'lesions'" in line, line
    assert not out.exists() and not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("value", [None, ...], ids=["null", "missing"])
def test_a_lap_run_without_its_concept_sets_is_refused(run_copy: Path, value) -> None:
    """Deleted (or null) in a LAP run's config.json, the concept sets were read as "none":
    the LAP explainer then built its maps without the run's class -> concept mapping, a
    silently different map (and evaluate's LAP predictors, protocol and caches followed)."""
    _edit_config(run_copy, concept_sets=value)
    message = (
        r"config\.json: 'concept_sets' must be, in a run with LAP layers \(\['layer3\.pool', "
        r"'avgpool'\]\), what ConceptSets\.to_dict\(\) writes \(.*got None\)"
    )
    with pytest.raises(RunError, match=message):
        load_run(run_copy)


def test_concept_sets_of_a_lap_run_cannot_be_edited_away(run_copy: Path) -> None:
    """(Runs without LAP layers record none: tests/train's vanilla and BLA runs load.)"""
    config = json.loads((run_copy / "config.json").read_text())
    assert config["lap_layers"] == ["layer3.pool", "avgpool"]  # the tiny run: LAP
    _edit_config(run_copy, concept_sets="x")
    with pytest.raises(RunError, match=r"'concept_sets' must be, in a run with LAP layers"):
        load_run(run_copy)
    # nor is the check bypassed by leaving the layers out of the record: the model has them
    _edit_config(run_copy, concept_sets=None, lap_layers=[])
    message = r"config\.json: 'lap_layers' is \[\], the model's are \['avgpool', 'layer3\.pool'\]"
    with pytest.raises(RunError, match=message):
        load_run(run_copy)


def test_concept_sets_for_other_heads_than_the_lap_layers_are_refused(run_copy: Path) -> None:
    """Concept sets of 3 concepts on layers of 1 head loaded, and explain failed later with a
    message naming no file; naming only head 0 of 3 heads would have used a third of them."""
    sets = {"n_classes": 2, "n_concepts": 3, "mapping": {"0": [1], "1": [0, 2]}}
    _edit_config(run_copy, concept_sets=sets)
    message = (
        r"config\.json: 'concept_sets' are for 3 concept\(s\), but the LAP layers have "
        r"\{'net\.layer3\.pool': 1, 'net\.avgpool': 1\} heads; they must agree"
    )
    with pytest.raises(RunError, match=message):
        load_run(run_copy)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (..., r"'train' must be a dict \(the options torchlap train ran with\), it has none"),
        ("lesions", r"'train' must be a dict .*got 'lesions'"),
        ([], r"'train' must be a dict .*got \[\]"),
        ({"seed": 0}, r"'train' is not a record torchlap train wrote \(.*'data'"),
    ],
    ids=["missing", "text", "list", "no data"],
)
@pytest.mark.parametrize("resume", [True, False], ids=["--resume", "same --out"])
def test_train_names_a_damaged_train_record_of_the_run_it_continues(
    run_copy: Path, value, message: str, resume: bool
) -> None:
    """``--resume`` (and a plain train into the run's folder) compare the recorded options:
    a damaged record failed with "missing key 'train'" or "'NoneType' object is not
    iterable", naming no file."""
    (run_copy / "model.safetensors").unlink()  # an unfinished run, to be resumed
    _edit_config(run_copy, train=value)
    before = _without_log(run_copy)
    line = _refused([*_train_args(run_copy), *(["--resume"] if resume else [])])
    assert str(run_copy / "config.json") in line and "--overwrite" in line, line
    assert re.search(message, line), line
    assert _without_log(run_copy) == before


@pytest.mark.parametrize("value", ["sha", [], 7], ids=["text", "list", "number"])
def test_resume_refuses_a_damaged_integrity_record(run_copy: Path, value) -> None:
    """A record of digests that is not a dict was read as "no record" (a run from before
    digests), so --resume trusted the checkpoint on the archive's checks alone and trained on."""
    (run_copy / "model.safetensors").unlink()  # an unfinished run, to be resumed
    _edit_config(run_copy, integrity=value)
    before = _without_log(run_copy)
    line = _refused([*_train_args(run_copy), "--resume"])
    assert "config.json: 'integrity' must be a dict of file name" in line, line
    assert _without_log(run_copy) == before


# ----------------------------------------------------------------------------- odd entries


def _folder(path: Path) -> None:
    path.mkdir()


def _loop(path: Path) -> None:
    os.symlink(path.name, path)  # a link to itself


def _dangling(path: Path) -> None:
    os.symlink(path.with_name("nothing-here"), path)


_ODD = {
    "a folder": (_folder, "a folder"),
    "a link loop": (_loop, "a link to nothing or a link loop"),
    "a dangling link": (_dangling, "a link to nothing or a link loop"),
}


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
@pytest.mark.parametrize("odd", _ODD)
def test_a_run_file_replaced_by_something_else_is_named_as_such(
    run_copy: Path, name: str, odd: str
) -> None:
    """A folder or a broken link in place of config.json said "not a torchlap run folder: no
    config.json in it", in place of the weights "does not exist: the run has not finished
    (resume it)": a resume that cannot help."""
    make, what = _ODD[odd]
    (run_copy / name).unlink()
    make(run_copy / name)
    with pytest.raises(
        RunError, match=rf"{re.escape(name)} is {what}; torchlap train writes"
    ) as caught:
        load_run(run_copy)
    assert not isinstance(caught.value, RunFileNotFoundError)  # it is there, but not a file


def test_a_missing_run_file_is_still_missing(run_copy: Path) -> None:
    (run_copy / "model.safetensors").unlink()
    with pytest.raises(RunFileNotFoundError, match=r"does not exist: the run has not finished"):
        load_run(run_copy)


# ----------------------------------------------------------------------------- method caches


def _cache_damage(cache: Path, case: str) -> None:
    from torchlap.evaluate.common import write_cache

    write_cache(cache, "key", {"options": 1}, {"iou": 0.5})
    entry = json.loads(cache.read_text())
    if case == "empty":
        cache.write_bytes(b"")
    elif case == "truncated":
        cache.write_bytes(cache.read_bytes()[:20])
    elif case == "not UTF-8":
        cache.write_bytes(b"\xff\xfe" + cache.read_bytes())
    elif case == "a list":
        cache.write_text("[]")
    elif case == "no results":
        cache.write_text(json.dumps({"fingerprint": "key"}))
    elif case == "NaN":
        cache.write_text(cache.read_text().replace("0.5", "NaN"))
    elif case == "edited results":
        entry["results"]["iou"] = 0.9
        cache.write_text(json.dumps(entry))
    elif case == "no checksum":
        del entry["results_sha256"]
        cache.write_text(json.dumps(entry))
    elif case == "other settings":
        entry["fingerprint"] = "another"
        cache.write_text(json.dumps(entry))
    elif case == "refused by the check":
        entry["results"] = {"iou": "high"}
        cache.write_text(json.dumps(entry))
    elif case == "a dangling link":
        cache.unlink()
        os.symlink(cache.with_name("gone.json"), cache)
    elif case == "a link loop":
        cache.unlink()
        os.symlink(cache.name, cache)


_CACHE_CASES = [
    "empty", "truncated", "not UTF-8", "a list", "no results", "NaN", "edited results",
    "no checksum", "other settings", "refused by the check", "a dangling link", "a link loop",
]  # fmt: skip


@pytest.mark.parametrize("case", _CACHE_CASES)
def test_a_damaged_method_cache_is_recomputed_and_the_log_says_so(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    from torchlap.evaluate.common import read_cache

    def check(results: object) -> None:
        if not isinstance(results, dict) or not isinstance(results.get("iou"), float):
            raise TypeError("iou must be a number")

    cache = tmp_path / "methods" / "gradcam.json"
    cache.parent.mkdir()
    _cache_damage(cache, case)
    with caplog.at_level(logging.INFO, logger="torchlap"):
        assert read_cache(cache, "key", "gradcam", {"options": 1}, check) is None
    said = [r.getMessage() for r in caplog.records if "recomputing" in r.getMessage()]
    assert len(said) == 1 and str(cache) in said[0], caplog.text


def test_an_intact_method_cache_is_reused(tmp_path: Path) -> None:
    from torchlap.evaluate.common import read_cache, write_cache

    cache = tmp_path / "gradcam.json"
    write_cache(cache, "key", {"options": 1}, {"iou": 0.5})
    assert read_cache(cache, "key", "gradcam", {"options": 1}) == {"iou": 0.5}
    assert read_cache(tmp_path / "missing.json", "key", "gradcam") is None  # no cache yet


@pytest.mark.parametrize("odd", _ODD)
def test_resume_names_a_checkpoint_replaced_by_something_else(run_copy: Path, odd: str) -> None:
    """Skipped as "no checkpoint" before: the run started over from epoch 1 (its progress
    silently lost) and then failed saving there ("[Errno 21] Is a directory", "Symlink loop
    from ...", or "leads to ... outside the run folder"), after training."""
    make, what = _ODD[odd]
    checkpoint = run_copy / "checkpoints" / "phase1" / "last.ckpt"
    checkpoint.unlink()
    make(checkpoint)
    (run_copy / "model.safetensors").unlink()  # an unfinished run, to be resumed
    before = _without_log(run_copy)
    line = _refused([*_train_args(run_copy), "--resume"])
    assert f"--resume: {checkpoint} is {what}; torchlap writes its checkpoints as files" in line
    assert _without_log(run_copy) == before


# ----------------------------------------------------------------------------- dataset folders


def _class_folders(root: Path, splits: bool = False) -> Path:
    """``cats/a.png`` and ``dogs/b.png`` (under ``train/`` with ``splits``, and the same
    under ``test/``); returns the folder holding the class folders."""
    for split in ["train", "test"] if splits else [""]:
        for name, colour in (("cats", 0), ("dogs", 255)):
            (root / split / name).mkdir(parents=True)
            Image.new("L", (32, 32), colour).save(root / split / name / f"{name[0]}.png")
    return root / "train" if splits else root


@pytest.mark.parametrize(
    ("link", "target", "splits"),
    [
        ("cats/loop", "..", False),  # a loop: cats/loop/cats/loop/... to the link limit
        ("cats/self", ".", False),
        ("dogs/more", "../cats", False),  # the cats again, as dogs
        ("train/cats/x", "../../test/cats", True),  # test images in the training split
    ],
    ids=["loop to the root", "loop to itself", "another class", "another split"],
)
def test_a_class_folder_link_back_into_the_dataset_is_refused(
    tmp_path: Path, link: str, target: str, splits: bool
) -> None:
    """torchvision's listing follows links to folders: one image of a loop was listed 33
    times (train 66 images of 2, val and test 8 each: the same images in every split)."""
    from torchlap.data import image_folder

    root = tmp_path / "data"
    _class_folders(root, splits)
    os.symlink(target, root / link)
    message = rf"{re.escape(str(root / link))} is a link to .*, inside the dataset folder"
    with pytest.raises(ValueError, match=message):
        image_folder(root, split="train")
    assert _refused(["data", "check", str(root)]).startswith(f"Error: {root / link} is a link")


def test_a_class_folder_link_to_images_elsewhere_is_read_once(tmp_path: Path) -> None:
    from torchlap.data import image_folder

    store = tmp_path / "store" / "more"
    store.mkdir(parents=True)
    Image.new("L", (32, 32), 128).save(store / "c.png")
    root = tmp_path / "data"
    _class_folders(root)
    os.symlink(store, root / "cats" / "more")
    images = [record.image for record in image_folder(root, split="train").records_all]
    assert sorted(images) == ["cats/c.png", "cats/more/c.png", "dogs/d.png"]


@pytest.mark.parametrize("line", [1, 3], ids=["in the header", "in a row"])
def test_an_annotations_field_over_the_csv_limit_is_named(tmp_path: Path, line: int) -> None:
    """csv's refusal said only "field larger than field limit (131072)", naming no file."""
    from torchlap.data import AnnotatedFolder

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    rows = ["image,label", "images/a.png,cats", "images/b.png,dogs"]
    for row in rows[1:]:
        Image.new("L", (32, 32)).save(root / row.split(",")[0])
    rows[line - 1] = rows[line - 1].replace(",", "x" * 140_000 + ",", 1)
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    csv_path = root / "annotations.csv"
    message = rf"{re.escape(str(csv_path))} line {line}: field larger than field limit"
    with pytest.raises(ValueError, match=message):
        AnnotatedFolder(root)
    assert re.search(message, _refused(["data", "check", str(root)]))


# ----------------------------------------------------------------------------- --pretrained


def test_a_pretrained_run_whose_weights_changed_is_refused(run_copy: Path, tmp_path: Path) -> None:
    """Weights of the right names, shapes and dtypes, but not the run's (replaced, or edited):
    --pretrained RUN loaded them (only load_run compared the recorded SHA-256)."""
    from safetensors.torch import load_file, save_file

    from torchlap.runs import pretrained_weights

    weights = run_copy / "model.safetensors"
    assert pretrained_weights(run_copy) == str(weights)  # intact: taken
    state = load_file(str(weights))
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key] = state[key] * 0.5
    save_file(state, str(weights))
    with pytest.raises(RunError, match=r"model\.safetensors is damaged or was changed"):
        pretrained_weights(run_copy)
    out = tmp_path / "new"
    line = _refused([*_train_args(out), "--pretrained", str(run_copy)])
    assert "model.safetensors is damaged or was changed" in line, line
    assert not out.exists()
