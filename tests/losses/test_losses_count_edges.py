"""Edges of Eq. 5's pixel counts and of the losses' helpers that the other loss tests leave out
(found by mutation testing): ``ratio_count`` on an empty map and on ``Fraction`` ratios at and
beyond the ends of [0, 1].
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from torchlap.losses import (
    concept_discrimination_loss,
    concordance_loss,
    expert_supervision_loss,
    ratio_count,
)


def test_ratio_count_of_an_empty_map_is_zero() -> None:
    """``n_pixels`` may be 0 (an int >= 0): every ``k`` of Eq. 5 is then 0."""
    assert ratio_count(0.5, 0) == 0
    assert ratio_count(Fraction(1, 3), 0) == 0


@pytest.mark.parametrize("ratio", [Fraction(3, 2), Fraction(-1, 10), Fraction(101, 100)])
def test_ratio_count_refuses_fractions_outside_0_1(ratio: Fraction) -> None:
    with pytest.raises(ValueError, match=r"ratio must be a fraction of the pixels in \[0, 1\]"):
        ratio_count(ratio, 10)


def test_ratio_count_takes_the_fractions_at_the_ends_of_0_1() -> None:
    assert ratio_count(Fraction(1), 7) == 7
    assert ratio_count(Fraction(0), 7) == 0


def _eq5_loop(probs, present, min_ar, max_ar, iar):
    """Eq. 5 of paper 000, one head, sample and pixel at a time, sets chosen on ``probs``:
    ``-sum_c [ sum_{s: c in C_s} (2 sum_{top k1} ln p / (k1 N_c) + sum_{bot k2} ln(1-p) /
    (k2 N_c)) + sum_{s: c not in C_s} sum_{top k3} ln(1-p) / (k3 N_c-bar) ]``."""
    batch, heads = present.shape
    total = 0.0
    for c in range(heads):
        n = probs[0, c].numel()
        k1 = 0 if min_ar[c] is None else math.ceil(Fraction(str(min_ar[c])) * n)
        k2 = 0 if max_ar[c] is None else math.ceil((1 - Fraction(str(max_ar[c]))) * n)
        k3 = 0 if iar[c] is None else math.ceil(Fraction(str(iar[c])) * n)
        n_c = sum(bool(present[s, c]) for s in range(batch))
        n_bar = batch - n_c
        for s in range(batch):
            values = sorted(float(v) for v in probs[s, c].flatten())  # ascending
            high = values[::-1]
            if present[s, c]:
                if k1:
                    total += 2 * sum(math.log(v) for v in high[:k1]) / (k1 * n_c)
                if k2:
                    total += sum(math.log(1 - v) for v in values[:k2]) / (k2 * n_c)
            elif k3:
                total += sum(math.log(1 - v) for v in high[:k3]) / (k3 * n_bar)
    return -total


@pytest.mark.parametrize(
    ("min_ar", "max_ar", "iar"),
    [
        ([0.25, 0.25], [0.5, None], [0.25, 0.25]),  # one head without the bottom term
        ([0.25, None], [0.75, 0.75], [None, 0.5]),  # k2 = ceil(0.25 * 4) = 1 pixel
        ([0.5, 0.25], [0.75, 0.5], [0.25, 0.75]),  # a different k for each head
    ],
)
def test_eq5_with_per_head_ratios_matches_the_loop(min_ar, max_ar, iar) -> None:
    generator = torch.Generator().manual_seed(11)
    probs = torch.rand(5, 2, 2, 2, generator=generator, dtype=torch.float64) * 0.9 + 0.05
    present = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0]], dtype=torch.bool)
    got = concept_discrimination_loss(probs, present, min_ar, max_ar, iar)
    want = _eq5_loop(probs, present, min_ar, max_ar, iar)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))


def _eq6_loop(fine, coarse, threshold):
    """Eq. 6 of paper 000 for one pair of maps, one sample, head and pixel at a time: the finer
    map max-pooled over the cells of the coarser one (torchlap's reading, the README's table),
    ``JS = 1 / (2 M) sum_{|p - q| > t} [(p - q) ln(p / q) + (q - p) ln((1 - p) / (1 - q))]``,
    summed over heads and averaged over samples. ``fine`` is the LATER layer's map here."""
    batch, heads, height, width = coarse.shape
    fh, fw = fine.shape[-2] // height, fine.shape[-1] // width
    total = 0.0
    for s in range(batch):
        for c in range(heads):
            js, m = 0.0, 0
            for i in range(height):
                for j in range(width):
                    p = float(coarse[s, c, i, j])  # the earlier layer
                    q = max(
                        float(fine[s, c, i * fh + a, j * fw + b])
                        for a in range(fh)
                        for b in range(fw)
                    )
                    if abs(p - q) > threshold:
                        m += 1
                        js += (p - q) * math.log(p / q) + (q - p) * math.log((1 - p) / (1 - q))
            total += js / (2 * m) if m else 0.0
    return total / batch


def test_eq6_pools_the_later_map_when_it_is_the_finer_one() -> None:
    """Both maps of a pair go to the coarser size, whichever layer is finer (a later layer
    may be upsampled, as in a decoder)."""
    generator = torch.Generator().manual_seed(12)
    earlier = torch.rand(3, 2, 2, 3, generator=generator, dtype=torch.float64) * 0.9 + 0.05
    later = torch.rand(3, 2, 4, 6, generator=generator, dtype=torch.float64) * 0.9 + 0.05
    got = concordance_loss([earlier, later], threshold=0.1)
    want = _eq6_loop(later, earlier, 0.1)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))


def test_expert_loss_without_term_3_matches_the_loop() -> None:
    """``iar=None`` turns term 3 off: the expert loss (paper 000, Appendix A) is then terms 1
    and 2 only, with a batch that differs from the number of heads, and a region that leaves
    one pixel outside."""
    generator = torch.Generator().manual_seed(13)
    probs = torch.rand(3, 2, 4, 4, generator=generator, dtype=torch.float64) * 0.9 + 0.05
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, :2, :3] = True
    masks[1, 1:, 2:] = True
    masks[2] = True
    masks[2, 0, 0] = False  # one pixel outside the region: term 2 is its ln(1 - p) alone
    present = torch.tensor([[1, 0], [1, 1], [0, 1]], dtype=torch.bool)
    has_region = torch.ones(3, dtype=torch.bool)
    got = expert_supervision_loss(probs, masks, present, has_region, iar=None)
    total = 0.0
    for c in range(2):
        n_c = int(present[:, c].sum())
        for s in range(3):
            if not present[s, c]:
                continue
            inside = [(i, j) for i in range(4) for j in range(4) if masks[s, i, j]]
            outside = [(i, j) for i in range(4) for j in range(4) if not masks[s, i, j]]
            ranked = sorted((float(probs[s, c, i, j]) for i, j in inside), reverse=True)
            keep = math.ceil(len(inside) / 2)  # "half of the pixels ... within the box"
            term1 = sum(math.log(v) for v in ranked[:keep]) / keep
            term2 = sum(math.log(1 - float(probs[s, c, i, j])) for i, j in outside) / len(outside)
            total += (2 * term1 + term2) / n_c
    torch.testing.assert_close(got, torch.tensor(-total, dtype=torch.float64))


def _expert_call(**kwargs):
    from torchlap.layers import LapMaps
    from torchlap.losses import ConceptSets, InjectionLoss

    probs = torch.full((2, 2, 4, 4), 0.5)
    maps = {"lap": LapMaps(probs, probs.amax(1, keepdim=True), None, (4, 4))}
    loss = InjectionLoss(ConceptSets.default(2, 2), supervision="expert", use_discriminative=False)
    return loss(maps, torch.tensor([0, 1]), **kwargs)


def test_expert_supervision_refuses_a_call_without_region_masks() -> None:
    with pytest.raises(ValueError, match=r"supervision='expert' needs region_masks \(B, H0, W0\)"):
        _expert_call()


@pytest.mark.parametrize("has_region", [[True, False], torch.tensor([1, 0])])
def test_expert_supervision_refuses_has_region_that_is_not_a_bool_tensor(has_region) -> None:
    masks = torch.ones(2, 8, 8, dtype=torch.bool)
    with pytest.raises(TypeError, match=r"has_region must be a bool tensor \(B,\)"):
        _expert_call(region_masks=masks, has_region=has_region)


def test_expert_supervision_refuses_has_region_of_another_length() -> None:
    masks = torch.ones(2, 8, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"has_region must have shape \(2,\)"):
        _expert_call(region_masks=masks, has_region=torch.ones(3, dtype=torch.bool))
