"""The files torchlap reads, each damaged in one way at a time (the file fuzzer).

Starting from VALID files made here (a tiny annotated folder written by ``torchlap data
export``, the suite's tiny trained run, a tiny evaluation's ``results.json``), every mutation
of the tables in :mod:`file_fuzz` is applied to a private copy:

- ``annotations.csv``: each column deleted / renamed / duplicated; each cell of one boxed,
  masked row emptied or set to text, NaN, inf, -1, 1e30, a float; boxes outside the image,
  zero-area, ``x2 < x1``; an unknown class; a path that does not exist, leaves the folder
  (``../x.png``, absolute) or is a folder; an empty file, header only, BOM, a non-UTF-8 byte,
  CRLF, a 1 MB line, a duplicated / short / long row;
- that row's image and mask: zero bytes, truncated, text, 16-bit, CMYK, LA, P with
  transparency, 1x1 px, another size; a mask of grey (non-binary) values;
- the run's ``config.json``: every top-level key and every key of ``model`` deleted or set to
  null / a string / a list / a nested dict / NaN; truncated, empty, an array; its
  ``model.safetensors`` truncated, emptied, text, a tensor's dtype or shape changed, a tensor
  dropped, added or made NaN (each also with the damaged file's SHA-256 recorded, so that the
  checks behind the integrity record are reached);
- ``results.json``: every top-level key deleted or retyped; truncated; an array.

The contract of a case:

- through the CLI (``torchlap data check FOLDER`` for the data, ``torchlap explain IMAGE --run
  RUN`` for the run): exit code 2 (no command documents 1 for a damaged file: the CLI fuzzer's
  contract), one ``Error`` line that names the file (and, for a row, its ``line N``; for a
  config key, the key) and says what is accepted without a leaked Python message (a bare
  ``KeyError`` repr, ``unhashable type``, ``has no attribute``... see :data:`LEAKS`), no
  traceback, nothing written or changed in the folder (and no output folder);
- through the Python API (:func:`torchlap.data.load_dataset` and decoding every sample,
  :func:`torchlap.runs.load_run`; ``json.loads`` and :func:`torchlap.report.tables_markdown`
  for ``results.json``, whose report API takes the parsed dict): a ValueError / TypeError (or
  the project's own, :class:`~torchlap.runs.RunError`) naming the file (``results.json``: the
  key, as the report's path ``results_by_run[...]``);
- a mutation torchlap legitimately accepts is listed in :data:`SAME` (it must give the clean
  file's result: the same ``data check`` output and the same samples) or in an ``ACCEPTED``
  table with the reason (exit 0, nothing changed in the folder, the Python API loads it).

:data:`KNOWN_GAPS` lists a case that misses the contract, as a strict xfail.
The fast variant samples each table with a fixed seed (every case of a table is covered over
the exhaustive ``slow`` variant, which tries them all).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from file_fuzz import (
    CLEAN_CONCEPT_SETS,
    PICTURE_MAKERS,
    RESULTS_NESTED,
    concept_set_cases,
    config_cases,
    config_key_paths,
    csv_cases,
    error_lines,
    invoke,
    pick,
    picture_cases,
    read_rows,
    results_cases,
    stop_train_at_work,
    target_line,
    weights_cases,
)
from file_fuzz_accepted import (
    CONCEPT_SETS_ACCEPTED,
    CONFIG_ACCEPTED,
    DATA_ACCEPTED,
    KNOWN_GAPS,
    NAMED_BY,
    PICTURE_ACCEPTED,
    PICTURE_SAME,
    PRETRAINED_ACCEPTED,
    RECORD_KEYS,
    REGRESSIONS,
    RESULTS_DICT,
    RESULTS_NESTED_ACCEPTED,
    RESULTS_NULL,
    RESULTS_UNREAD,
    SAME,
)

from conftest import snapshot
from torchlap.data import load_dataset, load_image
from torchlap.data.export import export_builtin
from torchlap.evaluate import EvaluateOptions, evaluate_run
from torchlap.report import tables_markdown
from torchlap.runs import RunError, load_run

SPLITS = ("train", "val", "test")
#: Python's own messages, which say neither what was wrong in the file nor what is accepted
LEAKS = re.compile(
    r"unhashable type|object is not|has no attribute|not subscriptable|'NoneType' object|"
    r"unexpected keyword|invalid literal|could not convert|Exception raised from"
)
#: a message ending in a bare KeyError's repr (``...: 'num_classes'``), not ``got str: 'x'``
_BARE_KEY = re.compile(r"(\w+ )?\w+: '[A-Za-z_]\w*'$")


def leaks(message: str) -> bool:
    """Whether ``message`` ends in (or holds) Python's own words instead of torchlap's."""
    bare = _BARE_KEY.search(message)
    return LEAKS.search(message) is not None or (bare is not None and bare.group(1) != "got ")


def _fast(labels: list[str], share: int, seed: int) -> list[str]:
    """The fast variant's cases: a seeded sample of ``labels``, and the regressions and known
    gaps among them."""
    return sorted(set(pick(labels, share, seed)) | ((REGRESSIONS | set(KNOWN_GAPS)) & set(labels)))


def _xfail(labels: list[str]) -> list[Any]:
    return [
        pytest.param(label, marks=pytest.mark.xfail(reason=KNOWN_GAPS[label], strict=True))
        if label in KNOWN_GAPS
        else label
        for label in labels
    ]


# ------------------------------------------------------------------------------------------
# the clean files
@pytest.fixture(scope="module")
def clean_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny annotated folder (40 lesion images of 32 px, boxes and masks)."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("filefuzz") / "data"
    export_builtin("lesions", folder, n_images=40, image_size=32)
    return folder


@pytest.fixture(scope="module")
def clean_results(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The results of a tiny evaluation of the tiny run (lap and Grad-CAM, 4 images)."""
    options = EvaluateOptions(
        methods=["lap", "gradcam"], max_images=4, max_val_images=4, stability_images=1,
        bootstrap_resamples=0,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("filefuzz") / "eval"
    evaluate_run(tiny_run, out=out, options=options, write_report=False)
    return json.loads((out / "results.json").read_text())


HEADER = ["image", "label", "split", "x_min", "y_min", "x_max", "y_max", "mask"]
DATA_CASES = {**csv_cases(HEADER), **picture_cases()}
_CONFIG_KEYS: list[tuple[Any, ...]] = [
    ("format",), ("format_version",), ("torchlap_version",), ("model",), ("lap_layers",),
    ("discriminative_scorers",), ("input",), ("classes",), ("in_channels",), ("image_size",),
    ("mean",), ("std",), ("concept_sets",), ("losses",), ("seed",), ("shuffle_labels",),
    ("data",), ("phases",), ("lap_options",), ("selection",), ("balanced_batches",),
    ("train",), ("integrity",), ("model", "builder"), ("model", "arch"),
    ("model", "num_classes"), ("model", "in_channels"), ("model", "lap"), ("model", "lapify"),
    ("model", "pretrained"),
    *[("model", "lapify", 0, key) for key in ("where", "sites", "lap_names", "n_concepts",
      "hidden_channels", "aggregation", "alpha", "eps", "head_hidden", "input_size")],
    ("concept_sets", "n_classes"), ("concept_sets", "n_concepts"), ("concept_sets", "mapping"),
    ("train", "image_size"),
]  # fmt: skip
RUN_CASES = {**config_cases(_CONFIG_KEYS), **weights_cases()}
_RESULT_KEYS = ["format", "run", "data", "options", "protocol", "model", "lap_predictors",
                "localization", "faithfulness", "stability", "timing", "examples", "skipped",
                "methods", "maps"]  # fmt: skip
RESULTS_CASES = results_cases([(key,) for key in _RESULT_KEYS] + RESULTS_NESTED)


def _copy(source: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(source, tmp_path / name))


# ------------------------------------------------------------------------------------------
# the data folder
def _samples(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every split of ``folder`` loaded and every sample decoded (the Python API)."""
    loaded = {}
    for split in SPLITS:
        dataset = load_dataset(folder, split=split, image_size=None)
        loaded[split] = [dataset[i] for i in range(len(dataset))]
    return loaded


def _same_samples(case: dict[str, list[Any]], clean: dict[str, list[Any]]) -> None:
    for split in SPLITS:
        assert len(case[split]) == len(clean[split]), split
        for got, want in zip(case[split], clean[split], strict=True):
            assert got["label"] == want["label"]
            assert torch.allclose(got["image"], want["image"], atol=1 / 255 + 1e-6)
            assert torch.equal(got["mask"].bool(), want["mask"].bool())


def _expected_names(label: str, folder: Path) -> list[str]:
    """What the error of a data case names: the file, and the row's line."""
    rows = read_rows(folder) if label.startswith(("image:", "mask:")) else None
    if rows is not None:  # a picture: the CSV row and the picture's path
        line = target_line(rows)
        return [
            f"annotations.csv line {line + 1}",
            rows[line][rows[0].index(label[:5].rstrip(":"))],
        ]
    if label.startswith(("cell:", "box-", "image-", "mask-", "row-", "file-non-utf8", "file-1mb")):
        return ["annotations.csv line"]
    return ["annotations.csv"]


def _check_data_case(label: str, clean: Path, tmp_path: Path) -> None:
    folder = _copy(clean, tmp_path, "data")
    names = _expected_names(label, folder)
    DATA_CASES[label](folder)
    before = snapshot(folder)
    outcome = invoke(["data", "check", str(folder)], folder)
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.changed == [] and snapshot(folder) == before, outcome.changed
    if label in SAME or label in DATA_ACCEPTED:
        assert outcome.code == 0, outcome.output
        samples = _samples(folder)
        if label in SAME:
            reference = invoke(["data", "check", str(clean)], clean).output
            assert outcome.output.replace(str(folder), str(clean)) == reference
            _same_samples(samples, _samples(clean))
        return
    _check_refusal(outcome, names)
    with pytest.raises((ValueError, TypeError, FileNotFoundError)) as raised:
        _samples(folder)
    assert not isinstance(raised.value, AssertionError)
    for name in names:
        assert name in str(raised.value), (name, str(raised.value))
    assert snapshot(folder) == before


def _check_refusal(outcome: Any, names: list[str]) -> None:
    assert outcome.code == 2, outcome.output
    errors = error_lines(outcome.output)
    assert len(errors) == 1, outcome.output
    for name in names:
        assert name in errors[0], (name, errors[0])
    assert not leaks(errors[0]), errors[0]


_DATA_LABELS = sorted(DATA_CASES)


@pytest.mark.parametrize("label", _xfail(_fast(_DATA_LABELS, 3, seed=0)))
def test_damaged_data_folder(label: str, clean_data: Path, tmp_path: Path) -> None:
    _check_data_case(label, clean_data, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("label", _xfail(_DATA_LABELS))
def test_damaged_data_folder_every_case(label: str, clean_data: Path, tmp_path: Path) -> None:
    _check_data_case(label, clean_data, tmp_path)


# ------------------------------------------------------------------------------------------
# the run folder
def _config_accepted(label: str) -> str | None:
    """Why ``label`` (a run case) is accepted, or None."""
    if label in CONFIG_ACCEPTED:
        return CONFIG_ACCEPTED[label]
    key = label.split(":", 1)[-1].split("=", 1)[0]
    return RECORD_KEYS.get(key) if label.startswith("config") else None


def _check_run_case(label: str, run: Path, image: Path, tmp_path: Path) -> None:
    folder = _copy(run, tmp_path, "run")
    RUN_CASES[label](folder)
    before = snapshot(folder)
    out = tmp_path / "out"
    outcome = invoke(["explain", str(image), "--run", str(folder), "--methods", "lap",
                      "--out", str(out)], folder)  # fmt: skip
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.changed == [] and snapshot(folder) == before, outcome.changed
    if _config_accepted(label) is not None:
        assert outcome.code == 0, outcome.output
        load_run(folder)
        return
    assert not out.exists()
    file = "config.json" if label.startswith("config") else "model.safetensors"
    names = [file]
    if label.startswith("config") and ":" in label:  # the key
        key = label.split(":", 1)[1].split("=", 1)[0].rsplit(".", 1)[-1]
        names.append(NAMED_BY.get(label, key))
    _check_refusal(outcome, names)
    with pytest.raises((RunError, ValueError, TypeError)) as raised:
        load_run(folder)
    assert file in str(raised.value), str(raised.value)
    assert snapshot(folder) == before


_RUN_LABELS = sorted(RUN_CASES)


@pytest.fixture(scope="module")
def an_image(clean_data: Path) -> Path:
    return next((clean_data / "images" / "test").glob("*.png"))


@pytest.mark.parametrize("label", _xfail(_fast(_RUN_LABELS, 6, seed=1)))
def test_damaged_run(label: str, tiny_run: Path, an_image: Path, tmp_path: Path) -> None:
    _check_run_case(label, tiny_run, an_image, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("label", _xfail(_RUN_LABELS))
def test_damaged_run_every_case(label: str, tiny_run: Path, an_image: Path, tmp_path: Path) -> None:
    _check_run_case(label, tiny_run, an_image, tmp_path)


# ------------------------------------------------------------------------------------------
# results.json
def _results_accepted(label: str) -> bool:
    key, _, value = label.split(":", 1)[-1].partition("=")
    kind = "deleted" if label.startswith("results-deleted") else value
    if "." in key:  # a nested entry
        kinds, _why = RESULTS_NESTED_ACCEPTED.get(key, ((), ""))
        return kind in kinds or kinds == "all"
    return (
        key in RESULTS_UNREAD
        or kind == "deleted"
        or (kind == "null" and key in RESULTS_NULL)
        or (kind == "dict" and key in RESULTS_DICT)
    )


def _check_results_case(label: str, clean: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(clean))
    RESULTS_CASES[label](tmp_path)
    text = (tmp_path / "results.json").read_text()
    if _results_accepted(label):
        tables_markdown({"run": json.loads(text)})
        return
    with pytest.raises((ValueError, TypeError)) as raised:
        tables_markdown({"run": json.loads(text)})
    message = str(raised.value)
    if label.startswith("results:"):
        key = label.split(":", 1)[1].split("=", 1)[0].rsplit(".", 1)[-1]
        assert f"[{key!r}]" in message, message  # the entry, in the report's path
    assert not leaks(message), message


_RESULTS_LABELS = sorted(RESULTS_CASES)


@pytest.mark.parametrize("label", _xfail(_fast(_RESULTS_LABELS, 3, seed=2)))
def test_damaged_results(label: str, clean_results: dict[str, Any], tmp_path: Path) -> None:
    _check_results_case(label, clean_results, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("label", _xfail(_RESULTS_LABELS))
def test_damaged_results_every_case(
    label: str, clean_results: dict[str, Any], tmp_path: Path
) -> None:
    _check_results_case(label, clean_results, tmp_path)


# ------------------------------------------------------------------------------------------
# an image given to explain, an image of an ImageFolder
_PICTURE_LABELS = sorted(PICTURE_MAKERS)


def _explain(image: Path, run: Path, out: Path, watched: Path) -> Any:
    args = ["explain", str(image), "--run", str(run), "--methods", "lap", "--out", str(out)]
    return invoke(args, watched)


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
    outcome = _explain(image, run, tmp_path / "out", folder)
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.changed == [] and snapshot(folder) == before
    if label in PICTURE_SAME or label in PICTURE_ACCEPTED:
        assert outcome.code == 0, outcome.output
        if label in PICTURE_SAME:
            reference = tmp_path / "clean"
            reference.mkdir()
            shutil.copy(clean, reference / "a.png")
            assert _explain(reference / "a.png", run, tmp_path / "ref", reference).code == 0
            got, want = _maps(tmp_path / "out"), _maps(tmp_path / "ref")
            assert got.keys() == want.keys()
            for key in want:
                if want[key].dtype.kind == "f":
                    assert abs(got[key] - want[key]).max() <= 1e-5, key
        return
    assert not (tmp_path / "out").exists()
    _check_refusal(outcome, ["a.png"])
    with pytest.raises((ValueError, TypeError)) as raised:
        load_image(image, channels=1)
    assert "a.png" in str(raised.value)


@pytest.mark.parametrize("label", _PICTURE_LABELS[::2])
def test_damaged_image_to_explain(
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
        samples = _samples(folder)
        if label in PICTURE_SAME:
            reference = invoke(["data", "check", str(clean)], clean).output
            assert outcome.output.replace(str(folder), str(clean)) == reference
            _same_samples(samples, _samples(clean))
        return
    _check_refusal(outcome, ["train/a/0.png"])
    with pytest.raises((ValueError, TypeError)) as raised:
        _samples(folder)
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
    _check_refusal(outcome, ["--concept-sets", str(folder / "sets.json")])


@pytest.mark.parametrize("label", _xfail(_fast(_CONCEPT_SET_LABELS, 3, seed=3)))
def test_damaged_concept_sets(label: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _check_concept_sets(label, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("label", _xfail(_CONCEPT_SET_LABELS))
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
    _check_refusal(outcome, [str(folder / "model.safetensors")])


@pytest.mark.parametrize("label", _PRETRAINED_LABELS)
def test_damaged_pretrained_file(
    label: str, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check_pretrained(label, tiny_run, tmp_path, monkeypatch)


# ------------------------------------------------------------------------------------------
# the tables themselves
def test_tables_cover_the_clean_files(
    tiny_run: Path, clean_data: Path, clean_results: dict[str, Any]
) -> None:
    """Every accepted / same / gap label is a case of a table, and the tables cover every
    column of the clean CSV, every key the run records at the top level and in ``model``,
    and every top-level key of results.json."""
    for label in [*SAME, *DATA_ACCEPTED]:
        assert label in DATA_CASES, label
    for label in [*CONFIG_ACCEPTED, *NAMED_BY]:
        assert label in RUN_CASES, label
    every = {**DATA_CASES, **RUN_CASES, **RESULTS_CASES, **CONCEPT_SET_CASES}
    for label in [*KNOWN_GAPS, *REGRESSIONS, *CONCEPT_SETS_ACCEPTED]:
        assert label in every, label
    assert set(PRETRAINED_ACCEPTED) <= set(PRETRAINED_CASES)
    assert not set(SAME) & set(DATA_ACCEPTED)
    assert set(PICTURE_SAME) | set(PICTURE_ACCEPTED) <= set(PICTURE_MAKERS)
    config = json.loads((tiny_run / "config.json").read_text())
    assert config_key_paths(config) == _CONFIG_KEYS
    assert read_rows(clean_data)[0] == HEADER
    assert list(clean_results) == _RESULT_KEYS
