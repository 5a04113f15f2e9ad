"""Chance levels written out by hand for results.json files of every age: the majority share
from the sensitivity/specificity sample counts (before label_counts), whose counts must be
ints >= 1 to count."""

from __future__ import annotations

import pytest

from torchlap.report.table_data import _label_chance, model_chance


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
