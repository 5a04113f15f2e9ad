"""keep-k% keeps round(k% of the pixels) (a reference that counts the kept pixels), and the
refusals of keep_top_k / drop_increase / drop_inc_win that no other test reached (found by
mutation testing): each is raised up front, with the argument's name and what is accepted."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from torch import nn

from torchlap.metrics import drop_inc_win, drop_increase, keep_top_k
from torchlap.metrics.perturbation import check_ks

SIDE = 20  # 400 pixels: k / 100 and k / 101 of them round apart


class CountKept(nn.Module):
    """Predicts the number of non-zero pixels of a one-channel image (class j: -(s - j)^2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = (x != 0).flatten(1).sum(dim=1).double()
        classes = torch.arange(SIDE * SIDE + 1, dtype=torch.float64)
        return -((kept[:, None] - classes[None, :]) ** 2)


@pytest.mark.parametrize("k", [10, 30, 50, 70, 90, 0.5, 100])
def test_keep_top_k_keeps_k_percent_of_the_pixels(k):
    images = torch.ones(2, 1, SIDE, SIDE, dtype=torch.float64)
    maps = torch.arange(2 * SIDE * SIDE, dtype=torch.float64).reshape(2, SIDE, SIDE)
    maps[1] = maps[1].flip(0)  # distinct scores: no ties
    n_pixels = SIDE * SIDE
    count = max(1, math.floor(Fraction(str(k)) / 100 * n_pixels + Fraction(1, 2)))  # rounded
    labels = torch.tensor([count, count])
    result = keep_top_k(CountKept(), images, maps, labels, ks=(k,), ties="index")
    assert result[f"keep_{k:g}/top1_vs_label"].per_sample.tolist() == [1.0, 1.0]


def test_check_ks_bounds():
    assert check_ks(0.5) == (0.5,)
    assert check_ks((0.01, 100)) == (0.01, 100)
    with pytest.raises(ValueError, match=r"a percentage in \(0, 100\]"):
        check_ks((100.5,))
    with pytest.raises(ValueError, match=r"a percentage in \(0, 100\]"):
        check_ks((0,))


def tiny():
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 4, 7)).double()
    images = torch.rand(3, 2, 3, 4, generator=generator, dtype=torch.float64)
    maps = torch.rand(3, 3, 4, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 3, 6])
    return model, images, maps, labels


def test_few_classes_log_only_below_five(caplog):
    model, images, maps, labels = tiny()
    with caplog.at_level("INFO", logger="torchlap.metrics"):
        keep_top_k(model, images, maps, labels, ks=(50,))
    assert "instead of top-5" not in caplog.text
    five = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 4, 5)).double()
    with caplog.at_level("INFO", logger="torchlap.metrics"):
        result = keep_top_k(five, images, maps, labels % 5, ks=(50,))
    assert "instead of top-5" not in caplog.text
    assert "keep_50/top5_vs_label" in result


@pytest.mark.parametrize("metric", ["keep_top_k", "drop_increase", "drop_inc_win"])
def test_maps_not_a_tensor_is_refused_by_name(metric):
    model, images, maps, labels = tiny()
    fn = {"keep_top_k": keep_top_k, "drop_increase": drop_increase, "drop_inc_win": drop_inc_win}
    with pytest.raises(TypeError, match=r"maps must be a torch.Tensor of shape \(B, H, W\)"):
        fn[metric](model, images, maps.tolist(), labels)


def test_drop_increase_refusals():
    model, images, maps, labels = tiny()
    with pytest.raises(ValueError, match=r"images must be a floating tensor of shape \(B, C"):
        drop_increase(model, images[0], maps, labels)
    with pytest.raises(ValueError, match="target must be one of"):
        drop_increase(model, images, maps, labels, target="truth")


def test_drop_inc_win_refusals():
    model, images, maps, labels = tiny()
    unit = maps / maps.amax()
    drop_inc_win(model, images, unit.clamp(0, 1), labels, normalize=False)  # [0, 1]: accepted
    edges = torch.zeros_like(unit)
    edges[:, 0, 0] = 1.0  # exactly 0 and 1: inside [0, 1]
    drop_inc_win(model, images, edges, labels, normalize=False)
    for bad in (unit + 0.5, unit - 0.5):
        with pytest.raises(ValueError, match=r"normalize=False the maps must already lie in"):
            drop_inc_win(model, images, bad, labels, normalize=False)
    with pytest.raises(TypeError, match="variants must be a non-empty subset of"):
        drop_inc_win(model, images, maps, labels, variants=3)
    with pytest.raises(ValueError, match="variants must be a non-empty subset of"):
        drop_inc_win(model, images, maps, labels, variants=("energy", "heat"))
    with pytest.raises(ValueError, match=r"to_input must return .* got <class 'list'>"):
        drop_inc_win(model, images, maps, labels, to_input=lambda x: [x])
    with pytest.raises(ValueError, match=r"to_input must return .* got \(3, 2, 3\)"):
        drop_inc_win(model, images, maps, labels, to_input=lambda x: x[:, :, :, 0])
