"""``--data-option``: keys checked against the dataset before the run folder is written, values
parsed by the option's type."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.train import TrainConfig
from torchlap.train.data_options import (
    check_data_options,
    data_option_kinds,
    parse_data_options,
)
from torchlap.train.loaders import load_splits

N_IMAGES = 40


def _train(tmp_path: Path, *options: str) -> tuple[object, Path]:
    out = tmp_path / "run"
    args = ["train", "--data", "lesions", "--out", str(out), "--n-images", str(N_IMAGES)]
    args += ["--image-size", "32", "--arch", "smallcnn", "--epochs", "1", "--no-progress"]
    return CliRunner().invoke(app, [*args, *options]), out


@pytest.mark.parametrize(
    ("option", "message"),
    [
        # used to be recorded in config.json and silently overridden by --n-images
        ("n_images=50", r"n_images has its own flag; use --n-images"),
        # used to fail with load_dataset()'s "got multiple values for keyword argument"
        ("seed=7", r"seed has its own flag; use --seed"),
        ("image_size=48", r"image_size has its own flag; use --image-size"),
        ("split=val", r"split=\.\.\. is not a data option: the run loads the train, val and"),
        # used to fail mid-training with "'str' object is not callable", leaving the folder
        ("transform=x", r"transform=\.\.\. is not a data option: a Python callable"),
        ("foo=1", r"the built-in 'lesions' has no option\(s\) \['foo'\].*: split_fractions"),
        ("split_fractions=a,b", r"split_fractions takes a list of numbers .*got 'a,b'"),
    ],
)
def test_bad_data_options_are_refused_before_the_run_folder(
    tmp_path: Path, option: str, message: str
) -> None:
    result, out = _train(tmp_path, "--data-option", option)
    assert result.exit_code == 2, result.output
    assert re.search(message, " ".join(result.output.split())), result.output
    assert not out.exists()


def test_values_are_parsed_by_the_options_type(tmp_path: Path) -> None:
    # a comma list used to become tuple("0.5,...") -> "could not convert string to float: '.'"
    assert parse_data_options("lesions", {"split_fractions": "0.5,0.25,0.25"}) == {
        "split_fractions": [0.5, 0.25, 0.25]
    }
    assert parse_data_options("concepts", {"num_classes": "3"}) == {"num_classes": 3}
    folder = parse_data_options(str(tmp_path), {"channels": "null", "augment": "true"})
    assert folder == {"channels": None, "augment": True}
    with pytest.raises(TypeError, match=r"num_classes takes an int, got '3\.5'"):
        parse_data_options("concepts", {"num_classes": "3.5"})
    with pytest.raises(TypeError, match="augment takes true or false, got 'yes'"):
        parse_data_options(str(tmp_path), {"augment": "yes"})
    kinds, open_ended = data_option_kinds("concepts")
    assert kinds == {"num_classes": ("int", False), "split_fractions": ("floats", False)}
    assert not open_ended
    fractions = parse_data_options("lesions", {"split_fractions": "0.5,0.25,0.25"})
    config = TrainConfig(
        data="lesions", out="x", n_images=N_IMAGES, image_size=32, data_options=fractions
    )
    config.validate()
    sizes = {split: len(ds) for split, ds in load_splits(config).items()}
    assert sizes == {"train": 20, "val": 10, "test": 10}


def test_the_python_api_checks_data_options_too() -> None:
    with pytest.raises(ValueError, match="seed has its own flag; use --seed"):
        TrainConfig(data="lesions", out="x", data_options={"seed": 7}).validate()
    with pytest.raises(TypeError, match="split_fractions takes a list of numbers"):
        check_data_options("lesions", {"split_fractions": "0.5,0.25,0.25"})
    with pytest.raises(
        ValueError, match=r"dataset folder 'd' has no option\(s\) \['num_classes'\]"
    ):
        check_data_options("d", {"num_classes": 3})
    with pytest.raises(ValueError, match=r"transform=\.\.\. is not a data option"):
        check_data_options("d", {"transform": print})


def test_a_data_option_given_twice_is_refused(tmp_path: Path) -> None:
    result, out = _train(
        tmp_path, "--data-option", "split_fractions=0.5,0.25,0.25",
        "--data-option", "split_fractions=0.6,0.2,0.2",
    )  # fmt: skip
    assert result.exit_code == 2 and "split_fractions is given twice" in result.output
    assert not out.exists()
