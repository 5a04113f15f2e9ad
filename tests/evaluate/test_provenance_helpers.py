"""The provenance helpers on their own (no run trained): the data settings a split is read
with, one spelling of a data source, which runs saw the same images, the tensor fingerprint,
and the choice and check of a BLA run's LIME baseline (paper 002, section 4.3)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from torchlap.evaluate.provenance import (
    DataSettings,
    check_lime_baseline,
    common_data_settings,
    data_identity,
    data_settings,
    describe_identities,
    lime_baseline_of,
    same_data,
    source_key,
    tensor_fingerprint,
)

VANILLA = {"builder": "torchlap.train.SmallCNN", "arch": "smallcnn", "num_classes": 2,
           "in_channels": 3, "lap": "none", "lapify": [], "pretrained": None}  # fmt: skip
BLA = VANILLA | {"blaify": {"variant": "bla-t", "module_name": "avgpool"}}
LAP = VANILLA | {"lap": "auto", "lapify": [{"where": "auto", "sites": ["avgpool"]}]}


def _config(model=VANILLA, **train) -> dict:
    """A run's config.json: trained on ``lesions`` (seed 0) unless ``train`` says otherwise."""
    return {"model": model, "classes": ["benign", "malignant"], "in_channels": 3,
            "image_size": 32, "train": {"data": "lesions", "seed": 0} | train}  # fmt: skip


# ------------------------------------------------------------------------- DataSettings


def test_default_settings_are_split_seed_0_and_not_the_runs_own():
    settings = DataSettings()
    assert settings.describe() == "split seed 0, n_images default, no data options"
    assert settings.to_dict() == {"seed": 0, "n_images_option": None, "data_options": {},
                                  "own_training_settings": False}  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 3  # shared by every run of a compare: never changed in place


def test_settings_describe_and_record_what_they_read():
    settings = DataSettings(seed=3, n_images=60, data_options={"b": 2, "a": "x"}, own=True)
    assert settings.describe() == "split seed 3, n_images 60, data options a='x', b=2"
    assert settings.to_dict() == {"seed": 3, "n_images_option": 60,
                                  "data_options": {"b": 2, "a": "x"},
                                  "own_training_settings": True}  # fmt: skip
    same = DataSettings(seed=3, n_images=60, data_options={"a": "x", "b": 2})
    assert settings.reading() == same.reading()  # ``own`` and the options' order aside
    for other in (DataSettings(seed=4, n_images=60, data_options={"a": "x", "b": 2}),
                  DataSettings(seed=3, data_options={"a": "x", "b": 2}),
                  DataSettings(seed=3, n_images=60, data_options={"a": "y", "b": 2})):  # fmt: skip
        assert settings.reading() != other.reading()


# ------------------------------------------------------------------------ data sources


def test_a_source_has_one_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    assert source_key(None) == source_key("") == ""
    assert source_key("lesions") == "lesions"  # a built-in's name, not ./lesions
    assert source_key("data") == source_key("./data") == str(tmp_path.resolve() / "data")
    assert source_key(Path("sub/../data")) == str(tmp_path.resolve() / "data")


def test_same_data_compares_the_one_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert same_data("data", str(tmp_path / "data")) is True
    assert same_data("lesions", "lesions") is True
    assert same_data("lesions", "data") is False
    assert same_data(None, None) is False and same_data("", "") is False  # no data is no data
    assert same_data("data", None) is False and same_data(None, "data") is False


def test_the_runs_own_data_is_read_with_its_own_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _config(data="folder", seed=3, n_images="60", data_options={"noise": 0.1})
    assert data_settings(config, "./folder") == DataSettings(
        seed=3, n_images=60, data_options={"noise": 0.1}, own=True
    )
    assert data_settings(config, "lesions") == DataSettings()  # other data: the defaults


NULLS = {"seed": None, "n_images": None, "data_options": None}


@pytest.mark.parametrize("train", [{"data": "lesions"}, {"data": "lesions", **NULLS}])
def test_own_data_without_recorded_settings_reads_the_defaults(train):
    settings = data_settings({"train": train}, "lesions")
    assert settings == DataSettings(own=True)
    assert settings.describe() == "split seed 0, n_images default, no data options"


@pytest.mark.parametrize("config", [{}, {"train": None}, {"train": {}}])
def test_a_config_without_training_data_reads_the_defaults(config):
    assert data_settings(config, "lesions") == DataSettings()
    assert data_identity(config) == {"data": "", "n_images": None, "seed": 0,
                                     "image_size": None, "data_options": {}}  # fmt: skip


def test_a_seed_of_0_stays_0():
    assert data_settings(_config(seed=0), "lesions").seed == 0
    assert data_settings(_config(seed=5), "lesions").seed == 5


# -------------------------------------------------------------------- which runs saw what


def test_data_identity_names_what_decides_the_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _config(data="./folder", n_images=40, seed=2, data_options={"noise": 0.1})
    assert data_identity(config) == {"data": str(tmp_path.resolve() / "folder"),
                                     "n_images": 40, "seed": 2, "image_size": 32,
                                     "data_options": {"noise": 0.1}}  # fmt: skip
    config["train"]["data_options"] = None
    assert data_identity(config)["data_options"] == {}


def test_identities_are_described_with_the_settings_that_differ():
    one = data_identity(_config(n_images=60))
    other = data_identity(_config(n_images=40))
    assert describe_identities({"lap": one, "other": other}) == (
        "lap: lesions n_images=60, other: lesions n_images=40"
    )
    assert describe_identities({"a": one, "b": one}) == "a: lesions, b: lesions"


def test_runs_reading_the_data_alike_keep_their_settings_without_a_note():
    configs = {"a": _config(seed=3), "b": _config(seed=3)}
    settings, note = common_data_settings("lesions", configs)
    assert settings == DataSettings(seed=3, own=True) and note is None


def test_runs_of_other_image_sizes_are_noted():
    configs = {"a": _config(seed=3), "b": _config(seed=3) | {"image_size": 64}}
    settings, note = common_data_settings("lesions", configs)
    assert settings.seed == 3
    assert note == (
        "evaluated on lesions with split seed 3, n_images default, no data options; each run "
        "reads it at its own image size (a: 32 px, b: 64 px)"
    )


def test_data_no_run_or_only_some_runs_were_trained_on_is_noted():
    configs = {"a": _config(data="other"), "b": _config(data="other")}
    settings, note = common_data_settings("lesions", configs)
    assert settings == DataSettings()
    assert note == (
        "evaluated on lesions, which no run was trained on, with split seed 0, n_images "
        "default, no data options"
    )
    configs = {"a": _config(), "b": _config(data="other")}  # a's own reading is the default
    settings, note = common_data_settings("lesions", configs)
    assert settings.reading() == DataSettings().reading()
    assert note == (
        "evaluated on lesions, the data of a, with split seed 0, n_images default, no data options"
    )


def test_runs_reading_the_data_differently_all_read_the_defaults():
    configs = {"a": _config(seed=3), "b": _config(seed=5)}
    settings, note = common_data_settings("lesions", configs)
    assert settings == DataSettings()
    assert note == (
        "evaluated on lesions with split seed 0, n_images default, no data options for every "
        "run, so that all see the same images (the runs read lesions differently: a: split "
        "seed 3, n_images default, no data options, b: split seed 5, n_images default, no "
        "data options)"
    )


# ------------------------------------------------------------------------- fingerprint


def test_the_fingerprint_follows_values_shapes_and_dtypes():
    images = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    key = tensor_fingerprint(images, torch.tensor([0, 1, 1]))
    assert len(key) == 16 and int(key, 16) >= 0
    assert key == tensor_fingerprint(images.clone(), torch.tensor([0, 1, 1]))
    assert key == tensor_fingerprint(images.t().contiguous().t(), torch.tensor([0, 1, 1]))
    others = [
        tensor_fingerprint(images, torch.tensor([0, 1, 0])),  # a label
        tensor_fingerprint(images.reshape(4, 3), torch.tensor([0, 1, 1])),  # the same bytes
        tensor_fingerprint(images.view(torch.int32), torch.tensor([0, 1, 1])),  # the same bytes
        tensor_fingerprint(torch.tensor([0, 1, 1]), images),  # the order
    ]
    assert len({key, *others}) == 5


# ------------------------------------------------------------------------ LIME baseline


def test_the_lime_baseline_is_the_first_vanilla_run_of_the_same_model_and_data():
    configs = {
        "bla": _config(BLA),
        "lap": _config(LAP),
        "shuffled": _config() | {"shuffle_labels": True},
        "resnet": _config(VANILLA | {"arch": "resnet18"}),
        "cats": _config() | {"classes": ["cat", "dog"]},
        "seed1": _config(seed=1),
        "unknown": _config({"builder": "my.Net"}),
        "first": _config(),
        "second": _config(),
    }
    assert lime_baseline_of("bla", configs) == "first"
    assert lime_baseline_of("first", configs) == "second"  # never the run itself
    del configs["first"], configs["second"]
    assert lime_baseline_of("bla", configs) is None


def test_a_run_without_a_model_record_has_no_lime_baseline():
    configs = {"bla": _config(None), "vanilla": _config()}
    assert lime_baseline_of("bla", configs) is None


def _loaded(config: dict) -> SimpleNamespace:
    return SimpleNamespace(config=config, run_dir=Path("runs/base"))


def test_a_lime_baseline_must_be_vanilla_with_the_bla_runs_facts():
    bla = _config(BLA)
    check_lime_baseline(bla, _loaded(_config()), "--lime-baseline")  # accepted
    for refused in (_config(LAP), _config() | {"shuffle_labels": True}, _config(None)):
        with pytest.raises(ValueError, match=r"--lime-baseline runs.base is not a vanilla run"):
            check_lime_baseline(bla, _loaded(refused), "--lime-baseline")
    for key, value in (("classes", ["cat", "dog"]), ("in_channels", 1), ("image_size", 64)):
        message = rf"has {key} {value!r}, the BLA run {bla[key]!r}: pass a vanilla run"
        with pytest.raises(ValueError, match=message.replace("[", r"\[")):
            check_lime_baseline(bla, _loaded(_config() | {key: value}), "--lime-baseline")


def test_a_square_pair_image_size_is_read_as_its_side():
    """Before: ``compare --data`` over a run whose config.json holds ``image_size: [32, 32]``
    (a square pair, which load_run reads as 32) failed with "unhashable type: 'list'";
    without ``--data`` it was refused as trained on other data than a run of size 32, and a
    vanilla run of that form was no LIME baseline of a BLA run of size 32."""
    pair, side = _config() | {"image_size": [32, 32]}, _config()
    assert common_data_settings("lesions", {"a": pair, "b": pair}) == (DataSettings(own=True), None)
    assert common_data_settings("lesions", {"a": pair, "b": side})[1] is None
    _, note = common_data_settings("lesions", {"a": pair, "b": _config() | {"image_size": 64}})
    assert note.endswith("reads it at its own image size (a: 32 px, b: 64 px)")
    assert data_identity(pair) == data_identity(side)
    assert lime_baseline_of("bla", {"bla": _config(BLA), "vanilla": pair}) == "vanilla"
    check_lime_baseline(_config(BLA), _loaded(pair), "--lime-baseline")  # accepted
    with pytest.raises(ValueError, match=r"has image_size 32, the BLA run 64: pass a vanilla"):
        check_lime_baseline(_config(BLA) | {"image_size": [64, 64]}, _loaded(pair), "--x")
