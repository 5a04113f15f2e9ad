"""The losses' default log clamp is the documented ``eps = 1e-6``: a saturated sigmoid pixel
(exactly 0 or 1 in float32) costs ``-ln(1e-6) ~ 13.8`` in every loss, computed here by hand
from that number (paper 000's Eq. 5 terms, one pixel set at a time)."""

from __future__ import annotations

import math

import torch

from torchlap.losses import (
    concept_discrimination_loss,
    discriminative_scorer_loss,
    expert_supervision_loss,
)

DOCUMENTED_EPS = 1e-6  # (the module docstring's number, not the package's constant)


def _saturated(value: float) -> torch.Tensor:
    return torch.full((1, 1, 4, 4), value)


def test_eq5_top_term_of_a_saturated_map_is_clamped_at_1e_6() -> None:
    """A present concept whose every pixel is 0: Eq. 5's first term, ``2 * mean ln p`` over
    the top ``k1 = HW`` pixels, each ``ln(1e-6)``."""
    present = torch.tensor([[True]])
    loss = concept_discrimination_loss(_saturated(0.0), present, min_ar=1.0, max_ar=None, iar=None)
    expected = -2.0 * math.log(DOCUMENTED_EPS)
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-6, atol=0)


def test_eq5_inactive_term_of_a_saturated_map_is_clamped_at_1e_6() -> None:
    """An absent concept whose every pixel is 1: the third term, ``mean ln(1 - p)`` over the
    top ``k3 = HW`` pixels."""
    absent = torch.tensor([[False]])
    loss = concept_discrimination_loss(_saturated(1.0), absent, min_ar=None, max_ar=None, iar=1.0)
    torch.testing.assert_close(loss, torch.tensor(-math.log(DOCUMENTED_EPS)), rtol=1e-6, atol=0)


def test_the_scorer_loss_is_clamped_at_1e_6() -> None:
    """The discriminative scorer's loss on a present (all 0) and an absent (all 1) sample:
    each head's mean of ``ln(1e-6)``, summed over the two sample sets."""
    probs = torch.cat([_saturated(0.0), _saturated(1.0)])
    present = torch.tensor([[True], [False]])
    loss = discriminative_scorer_loss(probs, present)
    expected = -2.0 * math.log(DOCUMENTED_EPS)
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-6, atol=0)


def test_the_expert_loss_is_clamped_at_1e_6() -> None:
    """A present concept with a region covering the map, every pixel 0: the region term
    ``2 * mean ln p`` over the top half of the region; the outside set is empty."""
    region = torch.ones(1, 4, 4)
    loss = expert_supervision_loss(
        _saturated(0.0), region, torch.tensor([[True]]), torch.tensor([True]), iar=None
    )
    expected = -2.0 * math.log(DOCUMENTED_EPS)
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-6, atol=0)
