"""A method cache's per-image scores are numbers or None, one per evaluated image: anything
else is refused before the bootstrap intervals use them (found by mutation testing: a text or
a bool among them passed with the type check's ``or`` made ``and``)."""

from __future__ import annotations

import pytest

from torchlap.evaluate.intervals import check_per_sample


@pytest.mark.parametrize("value", ["0.5", True, False, [0.5], {"v": 1}])
def test_a_score_that_is_not_a_number_is_refused(value) -> None:
    with pytest.raises(TypeError, match=r"results\['per_sample'\]\['iou'\] must be a list of 2"):
        check_per_sample({"per_sample": {"iou": [0.25, value]}}, 2)


@pytest.mark.parametrize("values", [[0.25, None], [1, 0.5], [0, 0]])
def test_numbers_and_none_are_taken(values) -> None:
    check_per_sample({"per_sample": {"iou": values}}, 2)


@pytest.mark.parametrize("values", [[0.25], [0.25, 0.5, 0.75], (0.25, 0.5)])
def test_a_list_of_another_length_or_a_tuple_is_refused(values) -> None:
    with pytest.raises(TypeError, match="one per evaluated image"):
        check_per_sample({"per_sample": {"iou": values}}, 2)
