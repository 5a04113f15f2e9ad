"""``check_head_ratios``: per-head MinAR/MaxAR/IAR (paper 000, Eq. 5), each in (0, 1] or off
(``None``), MinAR <= MaxAR; every refusal names the key and what is accepted."""

from __future__ import annotations

import pytest

from torchlap.models.objectives import check_head_ratios


def test_accepted_rows_come_back_as_a_dict() -> None:
    ratios = {"*": [0.1, 0.5, 0.1], "0": [1.0, 1.0, 1.0], "12": [None, None, None]}
    assert check_head_ratios(ratios) == ratios
    assert check_head_ratios({"3": (0.2, 0.2, None)}) == {"3": (0.2, 0.2, None)}  # MinAR = MaxAR
    assert check_head_ratios({}) == {}


@pytest.mark.parametrize("ratios", [[["0", [0.1, 0.5, 0.1]]], None, "0.1,0.5,0.1"])
def test_a_non_mapping_is_refused_with_an_example(ratios: object) -> None:
    with pytest.raises(TypeError, match=r"ratios must be a dict \{head: \[MinAR, MaxAR, IAR\]\}"):
        check_head_ratios(ratios)


@pytest.mark.parametrize("key", ["a", "head0", "-1", "", " 1", "\u00b2", "\u0663", 0, None])
def test_a_key_that_is_not_a_head_index_or_star_is_refused(key: object) -> None:
    # "\u00b2" (superscript two) and "\u0663" (Arabic-Indic three) are digits to str.isdigit
    with pytest.raises(ValueError, match=f"ratios key {key!r} must be a head index"):
        check_head_ratios({key: [0.1, 0.5, 0.1]})


@pytest.mark.parametrize("values", [[0.1, 0.5], [0.1, 0.5, 0.1, 0.1], 0.1, "0.1"])
def test_a_row_that_is_not_three_values_is_refused(values: object) -> None:
    with pytest.raises(ValueError, match=r"ratios\['0'\] must be \[MinAR, MaxAR, IAR\]"):
        check_head_ratios({"0": values})


@pytest.mark.parametrize(
    ("values", "name"),
    [([0.0, 0.5, 0.1], "min_ar"), ([0.1, 1.01, 0.1], "max_ar"), ([0.1, 0.5, -0.1], "iar")],
)
def test_a_ratio_outside_0_1_is_refused(values: list[float], name: str) -> None:
    with pytest.raises(ValueError, match=rf"ratios\['1'\] {name} must be a number in \(0, 1\]"):
        check_head_ratios({"1": values})


def test_min_ar_above_max_ar_is_refused_unless_one_is_off() -> None:
    with pytest.raises(ValueError, match=r"ratios\['\*'\]: MinAR \(0.6\) must not exceed MaxAR"):
        check_head_ratios({"*": [0.6, 0.5, 0.1]})
    assert check_head_ratios({"*": [0.6, None, 0.1], "0": [None, 0.05, None]})
