"""The discriminative scoring module's loss (paper 000, section III.B.1: "the first and third
terms of the loss function presented in Eq. (5), without multiplying the first term by 2, and
with k1 = k3 = HW") with ``include``: the left-out (sample, head) pairs are neither summed nor
counted in ``N_c`` and ``N_c-bar``, for the samples with the concept and for those without."""

from __future__ import annotations

import math

import pytest
import torch

from torchlap.losses import discriminative_scorer_loss


def loop_discriminative(probs: torch.Tensor, present: torch.Tensor, include: torch.Tensor) -> float:
    """Terms 1 and 3 of Eq. 5 over every pixel, per head, the included pairs only."""
    batch, heads, height, width = probs.shape
    total = 0.0
    for c in range(heads):
        pos = [s for s in range(batch) if include[s, c] and present[s, c]]
        neg = [s for s in range(batch) if include[s, c] and not present[s, c]]
        for group, log in ((pos, math.log), (neg, lambda p: math.log(1 - p))):
            for s in group:
                pixels = [float(probs[s, c, i, j]) for i in range(height) for j in range(width)]
                total += sum(log(p) for p in pixels) / (height * width) / len(group)
    return -total


@pytest.mark.parametrize("per_head", [False, True])
def test_include_leaves_pairs_out_of_both_terms_and_counts(per_head: bool) -> None:
    """Random maps, 5 samples, 2 heads; each head has positives and negatives left out."""
    gen = torch.Generator().manual_seed(3)
    probs = torch.rand(5, 2, 3, 2, generator=gen, dtype=torch.float64) * 0.9 + 0.05
    present = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 1], [0, 0]], dtype=torch.bool)
    if per_head:
        include = torch.tensor([[1, 0], [0, 1], [1, 1], [1, 0], [1, 1]], dtype=torch.bool)
    else:
        include = torch.tensor([True, False, True, True, False])[:, None].expand(5, 2)
    given = include if per_head else include[:, 0]
    loss = discriminative_scorer_loss(probs, present, include=given)
    torch.testing.assert_close(loss.item(), loop_discriminative(probs, present, include))
