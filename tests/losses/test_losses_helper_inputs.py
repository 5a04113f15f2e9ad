"""The public helpers of ``torchlap.losses`` refuse input of the wrong kind, saying what they
take: ``suggest_ratios`` read a bool tensor (a ``has_region`` mask) as regions covering the
whole image, and raised ``too many dimensions 'str'`` for strings; ``annotated_samples``
returned an integer tensor for an integer ``has_region``, and ``AttributeError`` for a list."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchlap.losses import annotated_samples, suggest_ratios


@pytest.mark.parametrize(
    "fractions",
    [torch.tensor([True, True]), np.array([True]), ["0.1"], [True, 0.2], None, 0.3, {"a": 0.1}],
    ids=["bool tensor", "bool array", "strings", "bool entry", "None", "scalar", "dict"],
)
def test_suggest_ratios_refuses_what_is_not_a_list_of_fractions(fractions) -> None:
    with pytest.raises(TypeError, match="area_fractions must be a 1-D floating tensor or a list"):
        suggest_ratios(fractions)


def test_suggest_ratios_takes_lists_tuples_tensors_and_arrays() -> None:
    expected = {"min_ar": 0.2, "max_ar": 0.3, "iar": 0.2}
    for fractions in ([0.1, 0.2, 0.3], (0.1, 0.2, 0.3), np.array([0.1, 0.2, 0.3])):
        assert suggest_ratios(fractions) == pytest.approx(expected)
    assert suggest_ratios(torch.tensor([0.1, 0.2, 0.3])) == pytest.approx(expected)
    assert suggest_ratios([1]) == {"min_ar": 1.0, "max_ar": 1.0, "iar": 1.0}


def test_annotated_samples_checks_its_inputs() -> None:
    masks = torch.zeros(2, 4, 4)
    masks[0, 1, 1] = 1
    assert annotated_samples(masks, torch.tensor([True, True])).tolist() == [True, False]
    with pytest.raises(TypeError, match=r"has_region must be a bool tensor \(B,\)"):
        annotated_samples(masks, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"region_masks must be a tensor \(B, H0, W0\)"):
        annotated_samples(masks.tolist(), torch.tensor([True, True]))
    with pytest.raises(ValueError, match="region_masks has batch size 2, has_region has 3"):
        annotated_samples(masks, torch.tensor([True, True, False]))
