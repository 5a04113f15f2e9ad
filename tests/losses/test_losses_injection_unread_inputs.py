"""InjectionLoss checks the values of what its terms read, and only that; and its expert mode's
side paths (found untested by mutation testing of losses/injection.py): a map or mask a mode
does not read is not refused, a region mask of another batch size gets the expert loss's own
refusal, the once-only warning counts the samples it names, an ignored mask is said at DEBUG."""

import logging

import pytest
import torch

from torchlap.layers import LapMaps
from torchlap.losses import ConceptSets, InjectionLoss

NAN = float("nan")


def _maps(discriminative: torch.Tensor | None = None) -> dict[str, LapMaps]:
    probs = torch.full((2, 2, 4, 4), 0.5)
    return {"lap": LapMaps(probs, probs.amax(1, keepdim=True), discriminative, (4, 4))}


def _loss(supervision: str, use_discriminative: bool) -> InjectionLoss:
    return InjectionLoss(
        ConceptSets.default(2, 2), supervision=supervision, use_discriminative=use_discriminative
    )


def _finite(terms: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(value).all()) for value in terms.values())


@pytest.mark.parametrize(("supervision", "use_discriminative"), [("weak", False), ("none", True)])
def test_discriminative_maps_no_term_reads_are_not_refused(supervision, use_discriminative):
    unread = torch.full((2, 2, 4, 4), NAN)
    terms = _loss(supervision, use_discriminative)(_maps(unread), torch.tensor([0, 1]))
    assert _finite(terms)


def test_discriminative_maps_a_term_reads_are_refused_when_nan():
    unread = torch.full((2, 2, 4, 4), NAN)
    with pytest.raises(ValueError, match="discriminative"):
        _loss("weak", True)(_maps(unread), torch.tensor([0, 1]))


def test_region_masks_outside_weak_supervision_are_ignored_and_said_at_debug(caplog):
    masks = torch.full((2, 8, 8), 2.0)  # out of [0, 1]: refused in expert mode only
    loss = _loss("weak", False)
    with caplog.at_level(logging.DEBUG, logger="torchlap"):
        terms = loss(_maps(), torch.tensor([0, 1]), region_masks=masks)
    assert _finite(terms)
    said = [r.getMessage() for r in caplog.records if "region_masks given" in r.getMessage()]
    assert said == ["region_masks given but supervision='weak': ignored"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="torchlap"):
        loss(_maps(), torch.tensor([0, 1]))
    assert not [r for r in caplog.records if "region_masks given" in r.getMessage()]
    with pytest.raises(ValueError, match="region_masks"):
        _loss("expert", False)(_maps(), torch.tensor([0, 1]), region_masks=masks)


def test_region_masks_of_another_batch_get_the_expert_losss_refusal():
    """The expert loss names the maps' batch (not has_region's, which the caller never gave)."""
    masks = torch.ones(3, 8, 8)
    with pytest.raises(ValueError, match=r"^region_masks has batch size 3, probs has 2$"):
        _loss("expert", False)(_maps(), torch.tensor([0, 1]), region_masks=masks)


def test_the_empty_region_warning_counts_the_flagged_samples_with_a_concept(caplog):
    """Sample 0 (class 0) is flagged with an empty mask and holds its class's concept; sample 1
    is not flagged: one sample is named, once."""
    masks = torch.zeros(2, 8, 8)
    masks[1, 2:5, 2:5] = 1.0
    loss = _loss("expert", False)
    has_region = torch.tensor([True, False])
    with caplog.at_level(logging.WARNING, logger="torchlap"):
        loss(_maps(), torch.tensor([0, 1]), region_masks=masks, has_region=has_region)
        loss(_maps(), torch.tensor([0, 1]), region_masks=masks, has_region=has_region)
    said = [r.getMessage() for r in caplog.records if "empty mask" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("expert supervision: 1 sample(s)"), said


def test_no_warning_for_an_empty_mask_of_a_sample_whose_concepts_are_all_common(caplog):
    """Class 1 holds only the common concept 1 (a "normal" class): its flagged empty mask is
    what a negative image has, not a missing box; class 0's is warned about."""
    sets = ConceptSets.from_mapping({0: [0, 1], 1: [1]}, n_concepts=2)
    loss = InjectionLoss(sets, supervision="expert", use_discriminative=False)
    masks = torch.zeros(2, 8, 8)
    with caplog.at_level(logging.WARNING, logger="torchlap"):
        loss(_maps(), torch.tensor([1, 1]), region_masks=masks)
    assert not [r for r in caplog.records if "empty mask" in r.getMessage()]
    with caplog.at_level(logging.WARNING, logger="torchlap"):
        loss(_maps(), torch.tensor([0, 1]), region_masks=masks)
    said = [r.getMessage() for r in caplog.records if "empty mask" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("expert supervision: 1 sample(s)"), said
