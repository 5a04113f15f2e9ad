"""Chance levels written out by hand for results.json files of every age: the majority share
from the sensitivity/specificity sample counts (before label_counts), whose counts must be
ints >= 1 to count."""

from __future__ import annotations

import pytest

from torchlap.report.table_data import _label_chance, flat_maps, model_chance, region_chance


def _binary(positives: object, negatives: object) -> dict:
    """A binary run from before label_counts: the counts are the metrics' ``n``."""
    return {
        "model": {
            "sensitivity": {"value": 0.5, "n": positives},
            "specificity": {"value": 0.5, "n": negatives},
        }
    }


def test_the_majority_share_from_one_positive_and_three_negatives() -> None:
    assert _label_chance(_binary(1, 3)) == pytest.approx(3 / 4)
    assert model_chance(_binary(3, 1), "accuracy") == pytest.approx(3 / 4)


@pytest.mark.parametrize("positives", [0, True, 1.0, "1", None, -2])
def test_counts_that_are_not_ints_from_1_give_one_over_two_classes(positives: object) -> None:
    """Not a count: the old rule's 1/classes, two classes (sensitivity is reported)."""
    assert _label_chance(_binary(positives, 3)) == pytest.approx(1 / 2)


def test_a_class_absent_from_the_test_split_counts_zero() -> None:
    run = {"data": {"n_classes": 3, "label_counts": [3, 0, 1]}, "model": {}}
    assert model_chance(run, "top1_accuracy") == pytest.approx(3 / 4)
    assert model_chance(run, "top2_accuracy") == pytest.approx(4 / 4)


@pytest.mark.parametrize("counts", [5, [], "12", [2, -1], None])
def test_label_counts_that_are_not_a_list_of_counts_are_ignored(counts: object) -> None:
    run = {"data": {"n_classes": 4, "label_counts": counts}, "model": {}}
    assert model_chance(run, "accuracy") == pytest.approx(1 / 4)


@pytest.mark.parametrize("key", ["sensitivity", "specificity"])
def test_either_binary_rate_says_two_classes(key: str) -> None:
    run = {"model": {key: {"value": 0.5, "n": 4}}}
    assert model_chance(run, "balanced_accuracy") == pytest.approx(1 / 2)
    assert model_chance({"model": {}}, "balanced_accuracy") is None


def test_n_classes_counts_from_two_and_label_counts_need_an_image() -> None:
    assert model_chance({"data": {"n_classes": 2}}, "balanced_accuracy") == pytest.approx(1 / 2)
    assert model_chance({"data": {"n_classes": 1}}, "balanced_accuracy") is None
    one_image = {"data": {"n_classes": 2, "label_counts": [1, 0]}}
    assert model_chance(one_image, "accuracy") == pytest.approx(1.0)
    no_image = {"data": {"n_classes": 2, "label_counts": [0, 0]}}
    assert model_chance(no_image, "accuracy") == pytest.approx(1 / 2)  # the old rule


@pytest.mark.parametrize(
    ("fraction", "chance"),
    [(0.25, 0.25), (0.999, 0.999), (1, None), (1.0, None), (1.2, None), (0.0, None),
     (-0.1, None), (True, None), ("0.2", None)],
)  # fmt: skip
def test_region_chance_is_a_share_strictly_between_0_and_1(fraction, chance) -> None:
    assert region_chance({"data": {"region_fraction": fraction}}) == chance


def test_flat_maps_name_the_methods_with_a_flat_map() -> None:
    run = {
        "maps": {
            "lap": {"n": 4, "n_flat": 1, "tolerance": 0.001},
            "rise": {"n": 4, "n_flat": 2, "tolerance": "?"},
            "gradcam": {"n": 4, "n_flat": 0, "tolerance": 0.001},
            "sise": {"n": 4.0, "n_flat": 1},
            "odd": "not a mapping",
        }
    }
    assert flat_maps(run) == {
        "lap": "1 of 4 maps flat, constant within 0.001",
        "rise": "2 of 4 maps flat",
    }
