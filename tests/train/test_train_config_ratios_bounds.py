"""TrainConfig's Eq. 5 settings at their bounds (paper 000, III.B: k1 = ceil(MinAR HW) pixels
pushed up, at most MaxAR HW active): MinAR may equal MaxAR (exactly that many active pixels),
not exceed it; the expert loss's fraction of the box pixels (appendix A: "half") is a number
in (0, 1]; a ratio for a head the layers lack names the heads they have; an unknown loss
weight is refused by validate()."""

from __future__ import annotations

import pytest

from torchlap.train import TrainConfig


def _config(**changes: object) -> TrainConfig:
    return TrainConfig(data="lesions", out="runs/x", **changes)  # type: ignore[arg-type]


def test_min_ar_may_equal_max_ar() -> None:
    assert _config(min_ar=0.3, max_ar=0.3).validate() is None
    assert _config(min_ar=0.3, max_ar=0.3).head_ratios(1) == ([0.3], [0.3], [0.1])
    with pytest.raises(ValueError, match=r"MinAR \(0.31\) must not exceed MaxAR \(0.3\)"):
        _config(min_ar=0.31, max_ar=0.3).validate()


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.5])
def test_the_expert_positive_fraction_is_a_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"^expert_positive_fraction must be a number in \(0, 1\]"):
        _config(supervision="expert", expert_positive_fraction=fraction).validate()
    assert _config(supervision="expert", expert_positive_fraction=1.0).validate() is None


def test_a_ratio_for_a_head_the_layers_lack_names_the_heads_they_have() -> None:
    config = _config(ratios={"2": [0.1, 0.5, 0.1]})
    with pytest.raises(
        ValueError, match=r"^ratios names head 2; the LAP layers have heads 0 to 1$"
    ):
        config.head_ratios(2)
    assert config.head_ratios(3)[0] == [0.1, 0.1, 0.1]


def test_an_unknown_loss_weight_is_refused_by_validate() -> None:
    with pytest.raises(
        ValueError, match=r"^unknown loss weights \(--loss-weight\) \['discrimnation'\]"
    ):
        _config(loss_weights={"discrimnation": 1.0}).validate()
