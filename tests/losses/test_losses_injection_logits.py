"""``InjectionLoss(..., logits=...)``: logits of the wrong kind are refused before any loss is
computed, saying what is accepted (before: torch's batch-size error, ``NotImplementedError``
for integer logits, ``AttributeError`` for a list, and a shape error after the map losses)."""

from __future__ import annotations

import pytest
import torch

from torchlap.layers import LapMaps
from torchlap.losses import ConceptSets, InjectionLoss


def _maps() -> dict[str, LapMaps]:
    concepts = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    return {"lap": LapMaps(concepts, concepts, None, (6, 6))}


LABELS = torch.tensor([0, 1, 0, 1])


@pytest.mark.parametrize(
    ("logits", "error", "match"),
    [
        (torch.zeros(3, 2), ValueError, r"one row per label \(4 labels\), got \(3, 2\)"),
        (torch.zeros(4, 2, 1), ValueError, r"logits must be \(B, 2\) .*got \(4, 2, 1\)"),
        (torch.zeros(4, 2, dtype=torch.long), TypeError, "floating tensor .* got torch.int64"),
        ([[0.0, 1.0]] * 4, TypeError, "floating tensor .* got list"),
    ],
    ids=["batch", "3-D", "integer", "list"],
)
def test_bad_logits_are_refused_before_the_losses(logits, error, match) -> None:
    loss = InjectionLoss(ConceptSets.default(2, 1), use_discriminative=False)
    with pytest.raises(error, match=match):
        loss(_maps(), LABELS, logits=logits)


def test_accepted_logits_shapes_of_a_binary_task() -> None:
    loss = InjectionLoss(ConceptSets.default(2, 1), use_discriminative=False)
    logits = torch.tensor([-1.0, 2.0, 0.5, 1.0])
    one = loss(_maps(), LABELS, logits=logits)["cross_entropy"]
    torch.testing.assert_close(loss(_maps(), LABELS, logits=logits[:, None])["cross_entropy"], one)
    two = loss(_maps(), LABELS, logits=torch.stack([torch.zeros(4), logits], 1))["cross_entropy"]
    assert torch.isfinite(two)
    three = InjectionLoss(ConceptSets.default(3, 3), use_discriminative=False)
    maps = {"lap": LapMaps(torch.rand(4, 3, 6, 6), torch.rand(4, 1, 6, 6), None)}
    with pytest.raises(ValueError, match=r"logits must be \(B, 3\), one row"):
        three(maps, torch.tensor([0, 1, 2, 1]), logits=torch.zeros(4))


def test_per_head_ratios_are_kept_as_given_not_by_reference() -> None:
    """The loss kept the caller's per-head list itself: a later change (a ratio of 5) skipped
    the check made at construction and reached Eq. 5."""
    sets = ConceptSets.default(2, 2)
    ratios = [0.1, 0.2]
    loss = InjectionLoss(sets, min_ar=ratios, max_ar=0.5, iar=0.05)
    ratios[0] = 5.0
    assert loss.min_ar == [0.1, 0.2] and loss.min_ar is not ratios
