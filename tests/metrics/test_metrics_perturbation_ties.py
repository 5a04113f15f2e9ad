"""Ties in the top-k selections of keep-k% (paper 000) and Drop%/Increase% (paper 003): no
raster order. References enumerate every way of breaking the ties (explicit loops over samples,
pixels and tie subsets) and take the expectation under a uniformly random choice."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch
from torch import nn

from torchlap.metrics import drop_increase, keep_top_k
from torchlap.metrics._common import tied_at_k, top_k_mask

C, H, W = 2, 2, 3


def linear_model(num_classes=7, seed=1):
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, num_classes))
    with torch.no_grad():
        model[1].weight.copy_(3 * torch.randn(num_classes, C * H * W, generator=generator))
        model[1].bias.copy_(torch.randn(num_classes, generator=generator))
    return model.double()


def tied_data():
    generator = torch.Generator().manual_seed(5)
    images = torch.randn(4, C, H, W, generator=generator, dtype=torch.float64)
    maps = torch.tensor(
        [
            [[0.9, 0.5, 0.5], [0.5, 0.5, 0.1]],  # 4 pixels tied at the boundary
            [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # a flat map: everything tied
            [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]],  # no tie
            [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]],  # a hard 0/1 map
        ],
        dtype=torch.float64,
    )
    labels = torch.tensor([0, 3, 5, 2])
    return images, maps, labels


def selections(score, count):
    """Every top-``count`` pixel set of one map, ties broken every possible way (equally
    likely under a uniformly random tie-break)."""
    pixels = [(r, c) for r in range(score.shape[0]) for c in range(score.shape[1])]
    values = sorted((float(score[p]) for p in pixels), reverse=True)
    kth = values[count - 1]
    above = [p for p in pixels if float(score[p]) > kth]
    tied = [p for p in pixels if float(score[p]) == kth]
    return [set(above) | set(chosen) for chosen in itertools.combinations(tied, count - len(above))]


def kept_image(image, kept):
    out = torch.zeros_like(image)
    for r, c in kept:
        for ch in range(image.shape[0]):
            out[ch, r, c] = image[ch, r, c]
    return out


def logits_of(model, image):
    with torch.no_grad():
        return model(image[None])[0]


def softmax_prob(logits, target):
    exps = [math.exp(float(v)) for v in logits]
    return exps[int(target)] / sum(exps)


def test_tied_at_k_matches_loops():
    _, maps, _ = tied_data()
    for count in range(1, H * W + 1):
        expected = []
        for s in range(maps.shape[0]):
            values = sorted(maps[s].flatten().tolist(), reverse=True)
            kth = values[count - 1]
            expected.append(sum(v >= kth for v in values) > count)
        assert tied_at_k(maps, count).tolist() == expected


def test_random_tie_break_picks_every_tied_pixel_equally_often():
    _, maps, _ = tied_data()
    draws = 3000
    generator = torch.Generator().manual_seed(0)
    mask = top_k_mask(maps[:1].repeat(draws, 1, 1), 3, tie_break="random", generator=generator)
    assert (mask.flatten(1).sum(dim=1) == 3).all()
    frequency = mask.double().mean(dim=0)
    # pixel (0, 0) is above the k-th score, (1, 2) below, 4 pixels tie for 2 places
    assert frequency[0, 0] == 1 and frequency[1, 2] == 0
    for r, c in ((0, 1), (0, 2), (1, 0), (1, 1)):
        assert abs(float(frequency[r, c]) - 0.5) < 0.05
    with pytest.raises(ValueError, match="tie_break must be one of"):
        top_k_mask(maps, 3, tie_break="raster")


def test_keep_top_k_scores_ties_by_their_expectation():
    model = linear_model()
    images, maps, labels = tied_data()
    result = keep_top_k(
        model, images, maps, labels, ks=(50, 30), ties="random", tie_draws=3000, seed=3
    )
    for k in (50, 30):
        count = max(1, math.floor(Fraction(k, 100) * H * W + Fraction(1, 2)))
        for key, t, reference in (
            ("top1_vs_prediction", 1, None),
            ("top5_vs_prediction", 5, None),
            ("top1_vs_label", 1, labels),
        ):
            per_sample = []
            for s in range(images.shape[0]):
                target = logits_of(model, images[s]).argmax() if reference is None else labels[s]
                hits = [
                    int(target) in logits_of(model, kept_image(images[s], kept)).topk(t).indices
                    for kept in selections(maps[s], count)
                ]
                per_sample.append(sum(hits) / len(hits))
            got = result[f"keep_{k}/{key}"]
            torch.testing.assert_close(
                got.per_sample, torch.tensor(per_sample).double(), atol=0.04, rtol=0
            )


def test_drop_increase_scores_ties_by_their_expectation():
    model = linear_model()
    images, maps, labels = tied_data()
    result = drop_increase(
        model, images, maps, labels, fraction=0.5, ties="random", tie_draws=3000, seed=1
    )
    drops, increases = [], []
    for s in range(images.shape[0]):
        original = logits_of(model, images[s])
        cls = int(original.argmax())
        p = softmax_prob(original, cls)
        sample_drops, sample_increases = [], []
        for kept in selections(maps[s], 3):
            q = softmax_prob(logits_of(model, kept_image(images[s], kept)), cls)
            sample_drops.append(max(0.0, p - q) / p * 100)
            sample_increases.append(100.0 if q > p else 0.0)
        drops.append(sum(sample_drops) / len(sample_drops))
        increases.append(sum(sample_increases) / len(sample_increases))
    torch.testing.assert_close(
        result["drop_pct"].per_sample, torch.tensor(drops).double(), atol=4.0, rtol=0
    )
    torch.testing.assert_close(
        result["increase_pct"].per_sample, torch.tensor(increases).double(), atol=4.0, rtol=0
    )


def test_untied_samples_are_exact_and_draws_are_seeded():
    model = linear_model()
    images, maps, labels = tied_data()
    a = keep_top_k(model, images, maps, labels, ks=(50,), tie_draws=5, seed=0)
    b = keep_top_k(model, images, maps, labels, ks=(50,), tie_draws=5, seed=0, batch_size=1)
    index = keep_top_k(model, images, maps, labels, ks=(50,), ties="index")
    for key, value in a.items():
        torch.testing.assert_close(value.per_sample, b[key].per_sample)
        # sample 2 has no tie: every rule keeps the same pixels
        assert value.per_sample[2] == index[key].per_sample[2]
    with pytest.raises(ValueError, match="ties must be one of"):
        keep_top_k(model, images, maps, labels, ties="first")
    with pytest.raises(ValueError, match="tie_draws must be an int >= 1"):
        drop_increase(model, images, maps, labels, tie_draws=0)


def test_a_flat_map_no_longer_keeps_the_top_rows():
    """A model that reads the bottom row only: raster order keeps the top row of a flat map
    and loses the class at keep-50%; a random tie-break keeps each row with probability 1/2."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, 2)).double()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, 0.1]))
        for ch in range(C):
            for c in range(W):
                model[1].weight[0, ch * H * W + W + c] = 1.0  # class 0: bottom row's sum
    images = torch.ones(1, C, H, W, dtype=torch.float64)
    maps = torch.zeros(1, H, W, dtype=torch.float64)
    labels = torch.tensor([0])
    index = keep_top_k(model, images, maps, labels, ks=(50,), ties="index")
    assert index["keep_50/top1_vs_prediction"].value == 0.0  # only the top row was kept
    drawn = keep_top_k(model, images, maps, labels, ks=(50,), tie_draws=400)
    expected = []
    for kept in selections(maps[0], 3):
        expected.append(float(logits_of(model, kept_image(images[0], kept)).argmax() == 0))
    assert abs(drawn["keep_50/top1_vs_prediction"].value - sum(expected) / len(expected)) < 0.1
