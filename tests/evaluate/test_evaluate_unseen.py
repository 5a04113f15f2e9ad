"""A run is not scored on images it learned from (:mod:`torchlap.evaluate.unseen`).

Before: ``compare --data`` read every run's data with split seed 0 and the default image count
when the runs read it differently, and nothing checked those images against each run's own
training split: a folder without a split column is split by the seed (a run of ``--seed 1``
had 3 of the 4 test images of split seed 0 in its training split), and a built-in run of
``--n-images 2500`` had every test image of the default 2000 among its training images.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from tiny_runs import tiny_lesions, tiny_run
from torchlap.cli import app
from torchlap.data import load_dataset
from torchlap.evaluate import EvaluateOptions
from torchlap.evaluate.provenance import DataSettings, common_data_settings
from torchlap.evaluate.split_data import OpenedSplit, open_run_splits
from torchlap.evaluate.unseen import check_unseen
from torchlap.runs import read_run_facts

CLASSES = ["negative", "positive"]


def _builtin_run(n_images: int | None, seed: int = 0, data: str = "lesions") -> SimpleNamespace:
    train = {"data": data, "n_images": n_images, "seed": seed}
    return SimpleNamespace(config={"train": train}, classes=CLASSES, image_size=32)


def _default_test(split: str = "test") -> OpenedSplit:
    dataset = load_dataset("lesions", split=split, image_size=32)  # n_images 2000, seed 0
    return OpenedSplit(dataset, "lesions", split, DataSettings())


def test_a_builtin_run_of_more_images_trained_on_the_default_test_images() -> None:
    with pytest.raises(ValueError) as refused:
        check_unseen(_builtin_run(2500), _default_test(), "lesions")
    message = str(refused.value)
    assert message.startswith(
        "200 of the 200 images of the test split of lesions read with split seed 0, n_images "
        "default, no data options (the images every run is evaluated on) are images this run "
        "learned from (200 in its training split, read as it was trained: split seed 0, "
        "n_images 2500, no data options)"
    )
    assert "compare runs trained with the same split seed, n_images and data options" in message


@pytest.mark.parametrize(
    "run",
    [
        _builtin_run(2000),
        _builtin_run(1000),
        _builtin_run(2500, seed=1),
        _builtin_run(2500, 0, "digits"),
    ],
    ids=["the same images", "fewer images", "another seed: other images", "other data"],
)
def test_builtin_readings_that_share_no_learned_image_pass(run) -> None:
    check_unseen(run, _default_test(), "lesions")


def test_the_validation_split_evaluated_is_checked_against_training_only() -> None:
    run = _builtin_run(2100)  # train [0, 1680), val [1680, 1890): the val of 2000 is [1600, 1800)
    with pytest.raises(ValueError, match=r"80 in its training split, read as"):
        check_unseen(run, _default_test("val"), "lesions")
    with pytest.raises(ValueError, match=r"learned from \(9 in its validation split, read as"):
        check_unseen(_builtin_run(2010), _default_test(), "lesions")  # val [1608, 1809)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The tiny lesions folder (its split column) and a copy without it; runs of split seeds 0
    and 1 on each."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("unseen")
    given = tiny_lesions(root)
    seeded = Path(shutil.copytree(given, root / "seeded"))
    with open(given / "annotations.csv", newline="", encoding="utf-8") as handle:
        rows = [{k: v for k, v in row.items() if k != "split"} for row in csv.DictReader(handle)]
    with open(seeded / "annotations.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    made = {"given": given, "seeded": seeded}
    for data in ("given", "seeded"):
        for seed in (0, 1):
            made[f"{data}{seed}"] = tiny_run(made[data], root / f"{data}{seed}", seed=seed)
    return made


def test_compare_refuses_a_run_whose_training_images_would_be_scored(runs, tmp_path) -> None:
    out = tmp_path / "cmp"
    args = ["compare", str(runs["seeded0"]), str(runs["seeded1"]), "--data", str(runs["seeded"])]
    args += ["--methods", "gradcam", "--bootstrap-resamples", "0", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"run seeded1 ({runs['seeded1']}): " in result.stderr
    assert "images this run learned from (" in result.stderr
    assert not out.exists()


def test_a_folder_giving_the_splits_passes_whatever_the_seeds(runs) -> None:
    configs = {name: read_run_facts(runs[name]).config for name in ("given0", "given1")}
    settings, _ = common_data_settings(str(runs["given"]), configs)
    assert settings.seed == 0 and not settings.own  # the runs read it differently
    options = EvaluateOptions(methods=("gradcam",))
    for name in configs:
        split = open_run_splits(read_run_facts(runs[name]), str(runs["given"]), options, settings)
        assert len(split.test.dataset) == 4


def test_the_training_split_evaluated_on_purpose_is_not_checked() -> None:
    check_unseen(_builtin_run(2500), _default_test("train"), "lesions")  # (--split train)
