"""``--ratios``: a named head's row wins over ``"*"`` wherever the dict puts it, and a head has
one spelling (``"00"`` named head 0 a second time: the last row silently replaced the first)."""

from __future__ import annotations

import pytest

from torchlap.models.objectives import check_head_ratios
from torchlap.train.config import TrainConfig


def _config(**kwargs) -> TrainConfig:
    return TrainConfig(data="lesions", out="unused", **kwargs)


def test_a_named_head_wins_over_star_in_either_order() -> None:
    named, every = [0.02, 0.2, 0.01], [0.1, 0.5, 0.1]
    expected = ([0.02, 0.1], [0.2, 0.5], [0.01, 0.1])
    assert _config(ratios={"*": every, "0": named}).head_ratios(2) == expected
    # before: "*" after "0" replaced head 0's row, the paper's common-head ratios lost
    assert _config(ratios={"0": named, "*": every}).head_ratios(2) == expected


@pytest.mark.parametrize("key", ["00", "01", "007"])
def test_a_head_index_with_a_leading_zero_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match=f"ratios key '{key}' must be a head index"):
        check_head_ratios({"0": [0.1, 0.5, 0.1], key: [0.2, 0.5, 0.1]})
    assert check_head_ratios({"0": [0.1, 0.5, 0.1], "10": [None, 0.1, None]})
