"""read_run_facts on a hand-written run folder (a config.json and a weights file; no model is
built): each key a command needs is refused at the boundary of what it accepts, naming the key,
and the values at the edge of what is accepted are read as written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from torchlap.data.transforms import MAX_IMAGE_SIDE
from torchlap.runs import RunError, read_run_facts

Edit = Callable[[dict[str, Any]], None]


def _config(**changes: Any) -> dict[str, Any]:
    """A grey two-class run without LAP layers, as ``torchlap train`` records one."""
    config = {
        "format": "torchlap-run",
        "format_version": 1,
        "model": {"arch": "smallcnn", "num_classes": 2, "in_channels": 1},
        "classes": ["cat", "dog"],
        "mean": [0.5],
        "std": [0.25],
        "in_channels": 1,
        "image_size": 16,
    }
    config.update(changes)
    return config


def _run(tmp_path: Path, config: dict[str, Any]) -> Path:
    """A run folder holding ``config`` and a weights file (read_run_facts only checks that it
    is there: its digest is checked when the model is built)."""
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"not read here")
    return tmp_path


def _refused(tmp_path: Path, config: dict[str, Any], message: str) -> str:
    with pytest.raises(RunError, match=message) as error:
        read_run_facts(_run(tmp_path, config))
    text = str(error.value)
    assert text.startswith(str(tmp_path / "config.json")), text
    return text


def test_the_facts_are_the_keys_as_written(tmp_path: Path) -> None:
    facts = read_run_facts(_run(tmp_path, _config(mean=[1], std=[3])))
    assert facts.classes == ["cat", "dog"]
    assert facts.mean == [1.0] and facts.std == [3.0]
    assert all(isinstance(v, float) for v in facts.mean + facts.std)
    assert (facts.image_size, facts.in_channels, facts.concept_sets) == (16, 1, None)
    assert facts.weights == tmp_path / "model.safetensors"


def test_a_model_record_that_is_not_a_dict_is_refused(tmp_path: Path) -> None:
    text = _refused(tmp_path, _config(model=["smallcnn"]), r"'model' must be a dict")
    assert "['smallcnn']" in text


@pytest.mark.parametrize(
    "classes",
    [["cat", ""], ["cat", 1], ["cat", None], ["cat", "cat"], "cat,dog", [["cat"], "dog"]],
)
def test_class_names_must_be_distinct_non_empty_strings(tmp_path: Path, classes: Any) -> None:
    _refused(tmp_path, _config(classes=classes), r"'classes' must be a list of distinct class")


@pytest.mark.parametrize("in_channels", [0, -1, 2**63, True, 1.0, "1"])
def test_in_channels_out_of_range_is_named_as_such(tmp_path: Path, in_channels: Any) -> None:
    """Named as in_channels (not as a mean of another length) even past 64 bits."""
    config = _config(in_channels=in_channels, model={"arch": "smallcnn"})
    _refused(tmp_path, config, r"'in_channels' must be an int >= 1 that fits in 64 bits")


def test_in_channels_is_any_positive_int(tmp_path: Path) -> None:
    """127 channels (an int >= 1 below 2**63) with one mean and std per channel is read."""
    config = _config(in_channels=127, mean=[0.0] * 127, std=[1.0] * 127, model={})
    facts = read_run_facts(_run(tmp_path, config))
    assert facts.in_channels == 127 and len(facts.std) == 127


@pytest.mark.parametrize(
    ("key", "values"),
    [
        ("mean", [0.5, 0.5]),
        ("mean", []),
        ("mean", [float("inf")]),
        ("mean", ["0.5"]),
        ("mean", 0.5),
        ("std", [0.25, 0.25]),
        ("std", [float("nan")]),
        ("std", [True]),
    ],
)
def test_normalization_needs_one_finite_number_per_channel(
    tmp_path: Path, key: str, values: Any
) -> None:
    text = _refused(tmp_path, _config(**{key: values}), rf"'{key}' must be a list of 1 finite")
    assert ("each > 0" in text) == (key == "std")


@pytest.mark.parametrize("std", [[0.0], [-0.25], [0]])
def test_a_std_that_is_not_positive_is_refused(tmp_path: Path, std: list[float]) -> None:
    text = _refused(tmp_path, _config(std=std), r"'std' must be a list of 1 finite number")
    assert "one per input channel, each > 0" in text


def test_a_mean_may_be_zero_or_negative(tmp_path: Path) -> None:
    facts = read_run_facts(_run(tmp_path, _config(mean=[-0.5], std=[1e-6])))
    assert facts.mean == [-0.5] and facts.std == [1e-6]


@pytest.mark.parametrize("value", [None, 0, "false"])
def test_discriminative_scorers_must_be_a_bool(tmp_path: Path, value: Any) -> None:
    _refused(tmp_path, _config(discriminative_scorers=value), r"must be true or false")


@pytest.mark.parametrize("value", [True, False])
def test_discriminative_scorers_true_or_false_is_read(tmp_path: Path, value: bool) -> None:
    assert (
        read_run_facts(_run(tmp_path, _config(discriminative_scorers=value))).config[
            "discriminative_scorers"
        ]
        is value
    )


def test_a_train_record_must_be_a_dict_when_present(tmp_path: Path) -> None:
    _refused(tmp_path, _config(train=["--epochs", "2"]), r"'train' must be a dict")
    assert "train" not in read_run_facts(_run(tmp_path, _config())).config


def test_model_in_channels_must_agree_with_in_channels(tmp_path: Path) -> None:
    config = _config(model={"arch": "smallcnn", "num_classes": 2, "in_channels": 3})
    text = _refused(tmp_path, config, r"'model\.in_channels' is 3 but 'in_channels' is 1")
    assert "they must agree" in text
    # a model record without in_channels (or a non-int one, checked with the model) is read
    for record in ({"arch": "smallcnn"}, {"arch": "smallcnn", "in_channels": "3"}):
        assert read_run_facts(_run(tmp_path, _config(model=record))).in_channels == 1


def test_one_class_name_per_model_output(tmp_path: Path) -> None:
    config = _config(model={"arch": "smallcnn", "num_classes": 3})
    text = _refused(tmp_path, config, r"'classes' names 2 class\(es\) \(\['cat', 'dog'\]\)")
    assert "the model has 3 outputs (model.num_classes)" in text
    # no int num_classes recorded: nothing to compare here (the model is checked when built)
    for record in ({"arch": "smallcnn"}, {"arch": "smallcnn", "num_classes": "3"}):
        assert read_run_facts(_run(tmp_path, _config(model=record))).classes == ["cat", "dog"]


@pytest.mark.parametrize(("value", "side"), [(1, 1), (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), ([7, 7], 7)])
def test_image_size_from_one_to_the_largest_side_or_a_square_pair(
    tmp_path: Path, value: Any, side: int
) -> None:
    assert read_run_facts(_run(tmp_path, _config(image_size=value))).image_size == side


@pytest.mark.parametrize(
    "value", [0, MAX_IMAGE_SIDE + 1, [7, 8], [7, 7, 7], [7], [0, 0], 16.0, True, "16", None]
)
def test_other_image_sizes_are_refused_as_written(tmp_path: Path, value: Any) -> None:
    text = _refused(tmp_path, _config(image_size=value), r"'image_size' must be an int from 1")
    assert f"to {MAX_IMAGE_SIDE} (or a square pair [n, n]), got {value!r}" in text


@pytest.mark.parametrize("value", [[7, 7.0], [7.0, 7], [True, 1], [1, True]])
def test_a_pair_of_equal_numbers_that_are_not_both_ints_is_refused(
    tmp_path: Path, value: list[Any]
) -> None:
    """[7, 7.0] was read as 7 (only its first side was checked) while [7.0, 7] was refused."""
    _refused(tmp_path, _config(image_size=value), r"'image_size' must be an int from 1")


#: two classes, one concept present in the second only (what ConceptSets.to_dict writes)
SETS = {"n_classes": 2, "n_concepts": 1, "mapping": {"0": [], "1": [0]}}


def test_concept_sets_are_read_when_recorded(tmp_path: Path) -> None:
    facts = read_run_facts(_run(tmp_path, _config(concept_sets=SETS, lap_layers=["pool"])))
    assert facts.concept_sets is not None
    assert facts.concept_sets.to_dict() == SETS


def test_null_concept_sets_only_in_a_run_without_lap_layers(tmp_path: Path) -> None:
    for lap_layers in (None, []):
        config = _config(concept_sets=None, lap_layers=lap_layers)
        assert read_run_facts(_run(tmp_path, config)).concept_sets is None
    config = _config(concept_sets=None, lap_layers=["layer1.pool"])
    text = _refused(tmp_path, config, r"'concept_sets' must be, in a run with LAP layers")
    assert "(['layer1.pool'])" in text


def test_bad_concept_sets_of_a_run_without_lap_layers_may_be_null(tmp_path: Path) -> None:
    text = _refused(tmp_path, _config(concept_sets={"x": 1}), r"'concept_sets' must be null or ")
    assert "what ConceptSets.to_dict() writes" in text


def test_concept_sets_must_map_the_run_classes(tmp_path: Path) -> None:
    sets = {"n_concepts": 1, "mapping": {"0": [0], "1": [], "2": [0]}}
    config = _config(concept_sets=sets, model={"arch": "smallcnn"})
    text = _refused(tmp_path, config, r"'concept_sets' maps 3 classes but 'classes' names 2")
    assert "they must agree" in text


def test_the_lapify_record_is_checked_before_any_model_is_built(tmp_path: Path) -> None:
    """read_run_facts alone (no model is built) names a damaged ``model.lapify``."""
    record = {"arch": "smallcnn", "lapify": [{"sites": ["layer1"]}]}
    text = _refused(tmp_path, _config(model=record), r": model\.lapify\[0\] lacks the key")
    assert text.endswith("(was config.json edited?)")
    _refused(tmp_path, _config(model={"lapify": "layer1"}), r"model\.lapify must be a list")
    assert read_run_facts(_run(tmp_path, _config(model={"lapify": None}))).classes


@pytest.mark.parametrize(
    ("recorded", "side"),
    [([7, 7], 7), (7, 7), ([7, 7.0], [7, 7.0]), ([7.0, 7.0], [7.0, 7.0]),
     ([True, True], [True, True]), ([7, 8], [7, 8]), ([7, 7, 7], [7, 7, 7]), ("7", "7"),
     (None, None)],
)  # fmt: skip
def test_image_side_reads_only_a_square_pair_of_ints_as_its_side(recorded, side) -> None:
    # the one reading of the pair that run facts, load_run and provenance share
    from torchlap.runs.facts import image_side

    assert image_side(recorded) == side and type(image_side(recorded)) is type(side)
