"""The files torchlap reads, each damaged in one way at a time (the file fuzzer).

Starting from VALID files made here (a tiny annotated folder written by ``torchlap data
export``, the suite's tiny trained run, a tiny evaluation's ``results.json``), every mutation
of the tables in :mod:`file_fuzz` is applied to a private copy:

- ``annotations.csv``: each column deleted / renamed / duplicated; each cell of one boxed,
  masked row emptied or set to text, NaN, inf, -1, 1e30, a float; boxes outside the image,
  zero-area, ``x2 < x1``; an unknown class; a path that does not exist, leaves the folder
  (``../x.png``, absolute) or is a folder; an empty file, header only, BOM, a non-UTF-8 byte,
  CRLF, a 1 MB line, a duplicated / short / long row, a NUL, an unclosed quote, UTF-16,
  binary bytes, a folder in its place, blank lines, backslashes, spaces around a path;
- that row's image and mask: zero bytes, truncated, text, 16-bit, CMYK, LA, P with
  transparency, 1x1 px, another size; a mask of grey (non-binary) values;
- the run's ``config.json``: every top-level key, every key of ``model``, of its first lapify
  record and of ``concept_sets``, and ``train.image_size``, deleted or set to null / a string /
  a list / a nested dict / NaN / -1 / 1e30; truncated, empty, an array; its
  ``model.safetensors`` truncated, emptied, text, a tensor's dtype or shape changed, a tensor
  dropped, added or made NaN (each also with the damaged file's SHA-256 recorded, so that the
  checks behind the integrity record are reached);
- ``results.json``: every top-level key and some nested entries (a metric's fields, a timing,
  a method's display name...) deleted or retyped; truncated; an array.

``test_robust_file_fuzz_inputs.py`` holds the other inputs under the same contract: an image
given to ``torchlap explain``, an image of an ImageFolder, a torchvision run's model record,
``train --concept-sets FILE`` and ``train --pretrained FILE``.

The contract of a case:

- through the CLI (``torchlap data check FOLDER`` for the data, ``torchlap explain IMAGE --run
  RUN`` for the run): exit code 2 (no command documents 1 for a damaged file: the CLI fuzzer's
  contract), one ``Error`` line that names the file (and, for a row, its ``line N``; for a
  config key, the key) and says what is accepted without a leaked Python message (a bare
  ``KeyError`` repr, ``unhashable type``, ``has no attribute``, torch's overflow text... see
  :data:`file_fuzz_checks.LEAKS`), no
  traceback, nothing written or changed in the folder (and no output folder);
- through the Python API (:func:`torchlap.data.load_dataset` and decoding every sample,
  :func:`torchlap.runs.load_run`; ``json.loads`` and :func:`torchlap.report.tables_markdown`
  for ``results.json``, whose report API takes the parsed dict): a ValueError / TypeError (or
  the project's own, :class:`~torchlap.runs.RunError`) naming the file (``results.json``: the
  key, as the report's path ``results_by_run[...]``);
- a mutation torchlap legitimately accepts is listed in :data:`SAME` (it must give the clean
  file's result: the same ``data check`` output and the same samples) or in an ``ACCEPTED``
  table with the reason (exit 0, nothing changed in the folder, the Python API loads it); the
  tables are in :mod:`file_fuzz_accepted`.

``KNOWN_GAPS`` (:mod:`file_fuzz_accepted`) lists a case that misses the contract, as a strict
xfail; ``REGRESSIONS`` the cases that failed before their fix, always run.
The fast variant samples each table with a fixed seed (every case of a table is covered over
the exhaustive ``slow`` variant, which tries them all).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from file_fuzz import (
    RESULTS_NESTED,
    config_cases,
    config_key_paths,
    csv_cases,
    picture_cases,
    read_rows,
    results_cases,
    target_line,
    weights_cases,
)
from file_fuzz_accepted import (
    CONFIG_ACCEPTED,
    DATA_ACCEPTED,
    KNOWN_GAPS,
    NAMED_BY,
    REGRESSIONS,
    RESULTS_DICT,
    RESULTS_NESTED_ACCEPTED,
    RESULTS_NULL,
    RESULTS_UNREAD,
    SAME,
)
from file_fuzz_checks import (
    check_refusal,
    config_accepted,
    copy_tree,
    fast,
    invoke,
    leaks,
    same_samples,
    samples,
    xfail_params,
)

from conftest import snapshot
from torchlap.evaluate import EvaluateOptions, evaluate_run
from torchlap.report import tables_markdown
from torchlap.runs import RunError, load_run


# ------------------------------------------------------------------------------------------
# the clean files
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
_RESULT_KEYS = ["format", "run", "data", "options", "protocol", "environment", "model",
                "lap_predictors", "localization", "faithfulness", "stability", "timing",
                "examples", "skipped", "methods", "maps"]  # fmt: skip
RESULTS_CASES = results_cases([(key,) for key in _RESULT_KEYS] + RESULTS_NESTED)


# ------------------------------------------------------------------------------------------
# the data folder
def _expected_names(label: str, folder: Path) -> list[str]:
    """What the error of a data case names: the file, and the row's line."""
    rows = read_rows(folder) if label.startswith(("image:", "mask:")) else None
    if rows is not None:  # a picture: the CSV row and the picture's path
        line = target_line(rows)
        return [
            f"annotations.csv line {line + 1}",
            rows[line][rows[0].index(label.split(":", 1)[0])],  # the image's or mask's path
        ]
    if label.startswith(("cell:", "box-", "image-", "mask-", "row-", "file-non-utf8", "file-1mb")):
        return ["annotations.csv line"]
    return ["annotations.csv"]


def _check_data_case(label: str, clean: Path, tmp_path: Path) -> None:
    folder = copy_tree(clean, tmp_path, "data")
    names = _expected_names(label, folder)
    DATA_CASES[label](folder)
    before = snapshot(folder)
    outcome = invoke(["data", "check", str(folder)], folder)
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.changed == [] and snapshot(folder) == before, outcome.changed
    if label in SAME or label in DATA_ACCEPTED:
        assert outcome.code == 0, outcome.output
        loaded = samples(folder)
        if label in SAME:
            reference = invoke(["data", "check", str(clean)], clean).output
            assert outcome.output.replace(str(folder), str(clean)) == reference
            same_samples(loaded, samples(clean))
        return
    check_refusal(outcome, names)
    with pytest.raises((ValueError, TypeError, FileNotFoundError)) as raised:
        samples(folder)
    for name in names:
        assert name in str(raised.value), (name, str(raised.value))
    assert snapshot(folder) == before


_DATA_LABELS = sorted(DATA_CASES)


@pytest.mark.parametrize("label", xfail_params(fast(_DATA_LABELS, 3, seed=0)))
def test_damaged_data_folder(label: str, clean_data: Path, tmp_path: Path) -> None:
    _check_data_case(label, clean_data, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("label", xfail_params(_DATA_LABELS))
def test_damaged_data_folder_every_case(label: str, clean_data: Path, tmp_path: Path) -> None:
    _check_data_case(label, clean_data, tmp_path)


# ------------------------------------------------------------------------------------------
# the run folder
def _check_run_case(label: str, run: Path, image: Path, tmp_path: Path) -> None:
    folder = copy_tree(run, tmp_path, "run")
    RUN_CASES[label](folder)
    before = snapshot(folder)
    out = tmp_path / "out"
    outcome = invoke(["explain", str(image), "--run", str(folder), "--methods", "lap",
                      "--out", str(out)], folder)  # fmt: skip
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.changed == [] and snapshot(folder) == before, outcome.changed
    if config_accepted(label) is not None:
        assert outcome.code == 0, outcome.output
        load_run(folder)
        return
    assert not out.exists()
    file = "config.json" if label.startswith("config") else "model.safetensors"
    names = [file]
    if label.startswith("config") and ":" in label:  # the key
        key = label.split(":", 1)[1].split("=", 1)[0].rsplit(".", 1)[-1]
        names.append(NAMED_BY.get(label, key))
    check_refusal(outcome, names)
    with pytest.raises((RunError, ValueError, TypeError)) as raised:
        load_run(folder)
    assert file in str(raised.value), str(raised.value)
    assert snapshot(folder) == before


_RUN_LABELS = sorted(RUN_CASES)


@pytest.mark.parametrize("label", xfail_params(fast(_RUN_LABELS, 6, seed=1)))
def test_damaged_run(label: str, tiny_run: Path, an_image: Path, tmp_path: Path) -> None:
    _check_run_case(label, tiny_run, an_image, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("label", xfail_params(_RUN_LABELS))
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


@pytest.mark.parametrize("label", xfail_params(fast(_RESULTS_LABELS, 3, seed=2)))
def test_damaged_results(label: str, clean_results: dict[str, Any], tmp_path: Path) -> None:
    _check_results_case(label, clean_results, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("label", xfail_params(_RESULTS_LABELS))
def test_damaged_results_every_case(
    label: str, clean_results: dict[str, Any], tmp_path: Path
) -> None:
    _check_results_case(label, clean_results, tmp_path)


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
    assert not set(SAME) & set(DATA_ACCEPTED)
    other = ("resnet18/", "concept-sets", "dicom")  # test_robust_file_fuzz_inputs.py's
    for label in [*CONFIG_ACCEPTED, *(k for k in NAMED_BY if not k.startswith(other))]:
        assert label in RUN_CASES, label
    every = {**DATA_CASES, **RUN_CASES, **RESULTS_CASES}
    for label in [*KNOWN_GAPS, *REGRESSIONS]:
        assert label.startswith(other) or label in every, label
    config = json.loads((tiny_run / "config.json").read_text())
    assert config_key_paths(config) == _CONFIG_KEYS
    assert read_rows(clean_data)[0] == HEADER
    assert list(clean_results) == _RESULT_KEYS
