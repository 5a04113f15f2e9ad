"""Concept-discrimination loss (paper 000, Eq. 5) and the discriminative scorer's loss."""

import math
from decimal import Decimal
from fractions import Fraction

import pytest
import torch
from torch import nn

from torchlap import LocalAttentionPool2d, attention_maps
from torchlap.losses import (
    LOG_EPS,
    concept_discrimination_loss,
    discriminative_scorer_loss,
    ratio_count,
)


def _count(ratio, n):
    return 0 if ratio is None else math.ceil(Decimal(str(ratio)) * n)


def _spread(value, h):
    return list(value) if isinstance(value, (list, tuple)) else [value] * h


def ref_eq5(
    probs, present, min_ar, max_ar, iar, selector=None, include=None, eps=LOG_EPS, counted=None
):
    """Eq. 5 written out: loops over concepts, samples and pixels (sorted in Python).

    Built from scalar torch ops on ``probs`` so that its gradient can be compared too. N_c and
    N_c-bar count the pairs of ``counted`` (default: the included ones).
    """
    batch, heads, height, width = probs.shape
    n = height * width
    chooser = (probs if selector is None else selector).detach()
    lows, highs, iars = _spread(min_ar, heads), _spread(max_ar, heads), _spread(iar, heads)
    total = probs.new_zeros(())
    pixels = [(i, j) for i in range(height) for j in range(width)]
    for c in range(heads):
        k1 = _count(lows[c], n)
        k2 = 0 if highs[c] is None else math.ceil((1 - Decimal(str(highs[c]))) * n)
        k3 = _count(iars[c], n)
        used = [s for s in range(batch) if include is None or bool(include[s, c])]
        pos = [s for s in used if bool(present[s, c])]
        neg = [s for s in used if not bool(present[s, c])]
        counting = used if counted is None else [s for s in range(batch) if bool(counted[s, c])]
        n_pos = sum(1 for s in counting if bool(present[s, c]))
        n_neg = len(counting) - n_pos
        for s in pos:
            ranked = sorted(pixels, key=lambda ij, s=s: float(chooser[s, c, ij[0], ij[1]]))
            descending = ranked[::-1]
            if k1:
                acc = sum(torch.log(probs[s, c, i, j].clamp_min(eps)) for i, j in descending[:k1])
                total = total + 2 * acc / (k1 * n_pos)
            if k2:
                acc = sum(torch.log((1 - probs[s, c, i, j]).clamp_min(eps)) for i, j in ranked[:k2])
                total = total + acc / (k2 * n_pos)
        for s in neg:
            ranked = sorted(pixels, key=lambda ij, s=s: float(chooser[s, c, ij[0], ij[1]]))
            if k3:
                acc = sum(
                    torch.log((1 - probs[s, c, i, j]).clamp_min(eps)) for i, j in ranked[::-1][:k3]
                )
                total = total + acc / (k3 * n_neg)
    return -total


def ref_disc(probs, present, eps=LOG_EPS):
    """First and third terms of Eq. 5, k1 = k3 = HW, no factor 2, written out."""
    batch, heads, height, width = probs.shape
    total = probs.new_zeros(())
    for c in range(heads):
        pos = [s for s in range(batch) if bool(present[s, c])]
        neg = [s for s in range(batch) if not bool(present[s, c])]
        for group, active in ((pos, True), (neg, False)):
            for s in group:
                for i in range(height):
                    for j in range(width):
                        p = probs[s, c, i, j]
                        value = p if active else 1 - p
                        total = total + torch.log(value.clamp_min(eps)) / (
                            height * width * len(group)
                        )
    return -total


def _random(batch=5, heads=3, height=4, width=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    probs = torch.rand(batch, heads, height, width, generator=gen, dtype=torch.float64)
    present = torch.rand(batch, heads, generator=gen) > 0.5
    present[0, 0], present[1, 0] = True, False  # both groups non-empty for head 0
    return probs, present, gen


def test_ratio_count_is_exact_on_decimals():
    assert ratio_count(0.07, 100) == 7  # 0.07 * 100 == 7.000000000000001 in floats
    assert ratio_count(0.1, 100) == 10
    assert ratio_count(0.101, 100) == 11
    assert ratio_count(1.0, 9) == 9


@pytest.mark.parametrize(
    ("min_ar", "max_ar", "iar"),
    [
        (0.1, 0.5, 0.1),
        (0.07, 0.3, 0.25),
        (1.0, 1.0, 1.0),
        ([0.2, 0.05, None], [0.6, 0.5, 0.1], [0.1, None, None]),
    ],
)
def test_matches_reference_on_random_maps(min_ar, max_ar, iar):
    probs, present, _ = _random()
    probs.requires_grad_(True)
    fast = concept_discrimination_loss(probs, present, min_ar, max_ar, iar)
    (grad_fast,) = torch.autograd.grad(fast, probs)
    slow = ref_eq5(probs, present, min_ar, max_ar, iar)
    (grad_slow,) = torch.autograd.grad(slow, probs)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(grad_fast, grad_slow)


def test_selector_chooses_the_sets_and_gets_no_gradient():
    probs, present, gen = _random(seed=1)
    selector = torch.rand(probs.shape, generator=gen, dtype=torch.float64, requires_grad=True)
    probs.requires_grad_(True)
    fast = concept_discrimination_loss(probs, present, 0.2, 0.6, 0.15, selector=selector)
    slow = ref_eq5(probs, present, 0.2, 0.6, 0.15, selector=selector.detach())
    torch.testing.assert_close(fast, slow)
    # the sets really come from the selector: it differs from choosing on probs
    assert not torch.allclose(fast, concept_discrimination_loss(probs, present, 0.2, 0.6, 0.15))
    fast.backward()
    assert selector.grad is None
    assert probs.grad is not None and probs.grad.abs().sum() > 0


def test_include_leaves_pairs_out_of_the_sums_and_counts():
    probs, present, gen = _random(seed=2)
    include = torch.rand(present.shape, generator=gen) > 0.3
    fast = concept_discrimination_loss(probs, present, 0.1, 0.5, 0.2, include=include)
    torch.testing.assert_close(fast, ref_eq5(probs, present, 0.1, 0.5, 0.2, include=include))
    nothing = torch.zeros_like(include)
    assert concept_discrimination_loss(probs, present, include=nothing).item() == 0.0


def test_counted_sets_the_sample_counts_without_adding_terms():
    # the expert fallback: the terms of the included pairs, over N_c / N_c-bar of every
    # counted pair (InjectionLoss counts a head's boxed positives too)
    probs, present, gen = _random(seed=5)
    include = torch.rand(present.shape, generator=gen) > 0.5
    counted = include | (torch.rand(present.shape, generator=gen) > 0.5)
    fast = concept_discrimination_loss(probs, present, 0.1, 0.5, 0.2, include=include,
                                       counted=counted)  # fmt: skip
    slow = ref_eq5(probs, present, 0.1, 0.5, 0.2, include=include, counted=counted)
    torch.testing.assert_close(fast, slow)
    assert not torch.allclose(fast, concept_discrimination_loss(probs, present, include=include))
    same = concept_discrimination_loss(probs, present, include=include, counted=include)
    torch.testing.assert_close(same, concept_discrimination_loss(probs, present, include=include))
    # an included pair is always counted: counted all False reads as counted = include
    none = torch.zeros_like(include)
    fewer = concept_discrimination_loss(probs, present, include=include, counted=none)
    torch.testing.assert_close(fewer, concept_discrimination_loss(probs, present, include=include))


def test_no_sample_with_or_without_the_concept():
    probs, present, _ = _random(seed=3)
    present[:, 0] = True  # N_c-bar = 0 for head 0
    present[:, 1] = False  # N_c = 0 for head 1
    fast = concept_discrimination_loss(probs, present, 0.1, 0.5, 0.1)
    assert torch.isfinite(fast)
    torch.testing.assert_close(fast, ref_eq5(probs, present, 0.1, 0.5, 0.1))
    single = concept_discrimination_loss(probs[:1], present[:1], 0.1, 0.5, 0.1)
    torch.testing.assert_close(single, ref_eq5(probs[:1], present[:1], 0.1, 0.5, 0.1))


def test_ties_with_selector_equal_to_probs():
    # values from a 3-level grid: many ties inside every top/bottom set boundary
    probs, present, gen = _random(batch=4, heads=2, height=5, width=5, seed=4)
    levels = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    probs = levels[torch.randint(0, 3, probs.shape, generator=gen)]
    for selector in (None, probs.clone()):
        fast = concept_discrimination_loss(probs, present, 0.3, 0.5, 0.3, selector=selector)
        torch.testing.assert_close(fast, ref_eq5(probs, present, 0.3, 0.5, 0.3))


def test_all_equal_maps_closed_form():
    # p constant: every set has mean ln p or ln(1 - p), whatever the tie order
    p = 0.3
    present = torch.tensor([[True, False], [False, False], [True, True]])
    probs = torch.full((3, 2, 3, 3), p, dtype=torch.float64)
    fast = concept_discrimination_loss(probs, present, 0.2, 0.6, 0.4)
    positive = 2 * math.log(p) + math.log(1 - p)
    expected = -2 * (positive + math.log(1 - p))  # each head has both groups
    torch.testing.assert_close(fast.item(), expected)


def test_saturated_probabilities_stay_finite():
    probs = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float32).reshape(1, 1, 2, 2)
    probs = torch.cat([probs, probs])
    present = torch.tensor([[True], [False]])
    loss = concept_discrimination_loss(probs, present, 0.5, 0.5, 1.0)
    assert torch.isfinite(loss) and loss.item() > 0
    # bounded by -ln(eps) per term: 2 + 1 (positive) + 1 (negative)
    assert loss.item() <= 4 * -math.log(LOG_EPS) + 1e-3


def test_max_ar_one_drops_the_bottom_term():
    probs, present, _ = _random(seed=5)
    torch.testing.assert_close(
        concept_discrimination_loss(probs, present, 0.1, 1.0, 0.1),
        concept_discrimination_loss(probs, present, 0.1, None, 0.1),
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"min_ar": 0.6, "max_ar": 0.5}, ValueError, "must not exceed"),
        ({"min_ar": 0.0}, ValueError, r"\(0, 1\]"),
        ({"iar": 1.5}, ValueError, r"\(0, 1\]"),
        ({"max_ar": -0.1}, ValueError, r"\(0, 1\]"),
        ({"iar": "0.1"}, TypeError, r"iar must be a fraction of the pixels in \(0, 1\]"),
        ({"min_ar": [0.1, 0.2]}, ValueError, "one value per head"),
        ({"selector": torch.rand(2, 3, 4, 4)}, ValueError, "same shape"),
        ({"include": torch.ones(3, dtype=torch.bool)}, ValueError, "include"),
        ({"counted": torch.ones(3, dtype=torch.bool)}, ValueError, r"counted must have shape"),
        ({"counted": torch.ones(2, 3)}, TypeError, r"counted must be a bool tensor"),
        ({"eps": 0.0}, ValueError, "eps"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    probs = torch.rand(2, 3, 4, 5)
    present = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(error, match=match):
        concept_discrimination_loss(probs, present, **kwargs)


def test_bad_tensors_raise():
    probs = torch.rand(2, 3, 4, 5)
    with pytest.raises(TypeError, match="bool"):
        concept_discrimination_loss(probs, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        concept_discrimination_loss(probs, torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, h, H, W\)"):
        concept_discrimination_loss(probs[0], torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="Tensor"):
        discriminative_scorer_loss(probs.numpy(), torch.ones(2, 3, dtype=torch.bool))


def test_discriminative_loss_matches_reference():
    probs, present, _ = _random(batch=4, heads=2, height=3, width=4, seed=6)
    probs.requires_grad_(True)
    fast = discriminative_scorer_loss(probs, present)
    slow = ref_disc(probs, present)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(
        torch.autograd.grad(fast, probs)[0], torch.autograd.grad(slow, probs)[0]
    )
    present[:, 1] = True  # N_c-bar = 0
    torch.testing.assert_close(discriminative_scorer_loss(probs, present), ref_disc(probs, present))


def _layer_with_upstream():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    lap = LocalAttentionPool2d(4, 2, n_concepts=2)
    lap.enable_discriminative_scorer()
    model = nn.Sequential(conv, nn.ReLU(), lap)
    return model, conv, lap


def test_discriminative_gradient_reaches_only_the_discriminative_scorer():
    model, conv, lap = _layer_with_upstream()
    model(torch.randn(4, 3, 8, 8))
    maps = attention_maps(model, detach=False)["2"]
    present = torch.tensor([[True, False], [False, True], [True, True], [False, False]])
    discriminative_scorer_loss(maps.discriminative, present).backward()
    assert all(p.grad is not None for p in lap.discriminative_scorer.parameters())
    assert sum(p.grad.abs().sum() for p in lap.discriminative_scorer.parameters()) > 0
    assert all(p.grad is None for p in lap.scorer.parameters())
    assert all(p.grad is None for p in conv.parameters())
    assert lap.alpha.grad is None


def test_main_loss_with_selector_trains_only_the_main_heads():
    model, _, lap = _layer_with_upstream()
    model(torch.randn(4, 3, 8, 8))
    maps = attention_maps(model, detach=False)["2"]
    present = torch.tensor([[True, False], [False, True], [True, True], [False, False]])
    loss = concept_discrimination_loss(maps.concepts, present, selector=maps.discriminative)
    loss.backward()
    assert all(p.grad is None for p in lap.discriminative_scorer.parameters())
    assert lap.scorer.heads[-1].weight.grad.abs().sum() > 0
    # the main heads start at 0.5 everywhere (all ties): the value is tie-invariant
    torch.testing.assert_close(
        loss.item(), -2 * (2 * math.log(0.5) + math.log(0.5) + math.log(0.5))
    )


@pytest.mark.parametrize(
    ("ratio", "error"),
    [(-0.5, ValueError), (2, ValueError), (float("nan"), ValueError), (True, TypeError)],
)
def test_ratio_count_refuses_ratios_outside_0_1(ratio, error):
    # Eq. 5's k1, k2, k3 take MinAR, 1 - MaxAR and IAR: fractions of the pixels in [0, 1]
    with pytest.raises(error, match=r"ratio must be a fraction of the pixels in \[0, 1\]"):
        ratio_count(ratio, 10)
    with pytest.raises(TypeError, match="ratio must be"):
        ratio_count("0.1", 10)
    with pytest.raises(TypeError, match="n_pixels"):
        ratio_count(0.1, 10.0)
    assert ratio_count(0, 10) == 0 and ratio_count(Fraction(1, 3), 10) == 4


@pytest.mark.parametrize("loss", ["discrimination", "discriminative"])
@pytest.mark.parametrize("bad", ["logits", "nan", "inf"])
def test_values_outside_0_1_are_refused(loss, bad):
    probs = torch.rand(2, 1, 4, 4)
    present = torch.tensor([[True], [False]])
    if bad == "logits":
        probs = torch.randn(2, 1, 4, 4) * 5  # logits, not probabilities: was a finite loss
    else:
        probs[1, 0, 2, 3] = float(bad)
    call = concept_discrimination_loss if loss == "discrimination" else discriminative_scorer_loss
    name = "probs" if loss == "discrimination" else "disc_probs"
    with pytest.raises(ValueError, match=rf"{name} must hold probabilities in \[0, 1\]"):
        call(probs, present)


def test_selector_must_be_a_finite_floating_or_bool_tensor():
    probs = torch.rand(2, 3, 4, 5)
    present = torch.tensor([[True, False, True], [False, True, False]])
    with pytest.raises(TypeError, match="selector must be a floating tensor"):
        concept_discrimination_loss(probs, present, selector=torch.ones(2, 3, 4, 5).long())
    with pytest.raises(ValueError, match="selector must be finite"):
        concept_discrimination_loss(probs, present, selector=torch.full_like(probs, math.nan))
    # a bool selector chooses the pixels as its 0/1 values do
    chosen = torch.rand(2, 3, 4, 5) > 0.5
    torch.testing.assert_close(
        concept_discrimination_loss(probs, present, selector=chosen),
        concept_discrimination_loss(probs, present, selector=chosen.float()),
    )
