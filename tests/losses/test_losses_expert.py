"""Expert supervision (the paper's BB-LAP, paper 000 section III.B and Appendix)."""

import math
from decimal import Decimal

import pytest
import torch

from torchlap.losses import LOG_EPS, expert_supervision_loss, resize_region_masks


def ref_resize(mask, height, width, mode):
    """Adaptive pooling written out: cell rows floor(i H0 / H) .. ceil((i + 1) H0 / H)."""
    h0, w0 = mask.shape
    out = torch.zeros(height, width, dtype=torch.float64)
    for i in range(height):
        r0, r1 = (i * h0) // height, -((-(i + 1) * h0) // height)
        for j in range(width):
            c0, c1 = (j * w0) // width, -((-(j + 1) * w0) // width)
            cell = [float(mask[r, c]) for r in range(r0, r1) for c in range(c0, c1)]
            out[i, j] = max(cell) if mode == "any" else sum(cell) / len(cell)
    return out


def ref_expert(
    probs,
    masks,
    present,
    has_region,
    heads=None,
    fraction=0.5,
    mode="any",
    iar=0.1,
    negative="iar",
    selector=None,
    rank_inside_on_selector=False,
):
    """Paper 000, Appendix A, written out from its text (loops over heads, samples, pixels).

    "similar to the weakly supervised concept discrimination loss" (Eq. 5): first term on "half
    of the pixels with higher importance probability within the box", second term on "all the
    zones out of the bounding boxes", "the third term [...] similarly as the weakly supervised
    loss" (top ceil(IAR HW) pixels of the samples without the concept). Eq. 5 divides the
    positive terms by N_c, "the number of samples containing concept c" (a positive without a
    box among them: it has no term here, InjectionLoss gives it Eq. 5's), the third by N_c-bar,
    and multiplies the first term by 2.
    """
    batch, n_heads, height, width = probs.shape
    pixels = [(i, j) for i in range(height) for j in range(width)]
    chooser = probs if selector is None else selector
    total = 0.0
    for c in range(n_heads):
        if heads is not None and not heads[c]:
            continue
        # a positive flagged has_region with an empty mask has no box: no term here
        boxed = [bool(has_region[s]) and bool((masks[s] > 0).any()) for s in range(batch)]
        positives = [s for s in range(batch) if present[s, c] and boxed[s]]
        n_c = sum(1 for s in range(batch) if present[s, c])
        negatives = [s for s in range(batch) if not present[s, c]]
        for s in positives:
            region = ref_resize(masks[s], height, width, mode)
            inside = [
                ij for ij in pixels if (region[ij] > 0 if mode == "any" else region[ij] >= 0.5)
            ]
            if not inside:  # "area": a region covering no cell by half keeps the cells it touches
                inside = [ij for ij in pixels if region[ij] > 0]
            outside = [ij for ij in pixels if ij not in inside]
            half = math.ceil(Decimal(str(fraction)) * len(inside))
            ranker = chooser if rank_inside_on_selector else probs
            best = sorted(inside, key=lambda ij, s=s, c=c, r=ranker: -float(r[s, c][ij]))[:half]
            first = sum(math.log(max(float(probs[s, c][ij]), LOG_EPS)) for ij in best)
            second = sum(math.log(max(1 - float(probs[s, c][ij]), LOG_EPS)) for ij in outside)
            first = first / half if half else 0.0
            second = second / len(outside) if outside else 0.0
            total -= (2 * first + second) / n_c
        for s in negatives:
            if negative == "iar":
                k3 = math.ceil(Decimal(str(iar)) * height * width)
                top = sorted(pixels, key=lambda ij, s=s, c=c: -float(chooser[s, c][ij]))[:k3]
            else:
                top = pixels
            third = sum(math.log(max(1 - float(probs[s, c][ij]), LOG_EPS)) for ij in top)
            total -= third / len(top) / len(negatives)
    return total


def _data(seed=0, batch=4, heads=3, size=(4, 5), image=(9, 11)):
    gen = torch.Generator().manual_seed(seed)
    probs = torch.rand(batch, heads, *size, generator=gen, dtype=torch.float64)
    masks = torch.zeros(batch, *image)
    masks[0, 1:4, 2:7] = 1
    masks[1, 5:9, 0:3] = 1
    masks[2, 0:2, 9:11] = 1
    masks[3, 2:6, 4:8] = torch.rand(4, 4, generator=gen)  # a soft mask
    present = torch.rand(batch, heads, generator=gen) > 0.4
    present[0, 0] = True
    return probs, masks, present


@pytest.mark.parametrize("mode", ["any", "area"])
def test_resize_matches_reference(mode):
    _, masks, _ = _data()
    for size in [(4, 5), (3, 3), (12, 13)]:  # smaller, non-divisible, larger than the mask
        fast = resize_region_masks(masks, size, mode)
        for s in range(masks.shape[0]):
            torch.testing.assert_close(fast[s].double(), ref_resize(masks[s], *size, mode))


@pytest.mark.parametrize(
    ("fraction", "mode", "heads", "iar", "negative"),
    [
        (0.5, "any", None, 0.1, "iar"),
        (1.0, "area", None, 0.3, "iar"),
        (0.5, "any", [True, False, True], 0.25, "iar"),
        (0.3, "area", None, 0.1, "all"),
    ],
)
def test_matches_reference(fraction, mode, heads, iar, negative):
    probs, masks, present = _data(seed=1)
    has_region = torch.tensor([True, False, True, True])
    head_mask = None if heads is None else torch.tensor(heads)
    fast = expert_supervision_loss(
        probs,
        masks,
        present,
        has_region,
        iar=iar,
        heads=head_mask,
        positive_fraction=fraction,
        negative_pixels=negative,
        resize=mode,
    )
    slow = ref_expert(probs, masks, present, has_region, heads, fraction, mode, iar, negative)
    torch.testing.assert_close(fast.item(), slow)


@pytest.mark.parametrize("mode", ["any", "area"])
def test_empty_and_tiny_regions_match_reference(mode):
    """A positive flagged has_region with an empty mask counts as one without a box (before:
    trained as "the concept nowhere"); under "area" a region smaller than half a cell keeps the
    cells it touches instead of vanishing."""
    probs, masks, present = _data(seed=2)
    present[:, 0] = True
    masks[1] = 0  # sample 1: positive, flagged, no region pixel
    masks[2] = 0
    masks[2, 0, 0] = 1  # sample 2: one image pixel, far below half a cell at 4 x 5
    has_region = torch.ones(4, dtype=torch.bool)
    fast = expert_supervision_loss(probs, masks, present, has_region, resize=mode)
    slow = ref_expert(probs, masks, present, has_region, mode=mode)
    torch.testing.assert_close(fast.item(), slow)
    # the empty-mask sample weighs as one without a region
    unflagged = has_region.clone()
    unflagged[1] = False
    torch.testing.assert_close(
        fast, expert_supervision_loss(probs, masks, present, unflagged, resize=mode)
    )


def test_default_is_the_papers_half_and_selector_chooses_the_negatives_pixels():
    probs, masks, present = _data(seed=4)
    has_region = torch.ones(4, dtype=torch.bool)
    selector = torch.rand(probs.shape, generator=torch.Generator().manual_seed(9)).double()
    fast = expert_supervision_loss(probs, masks, present, has_region, selector=selector)
    slow = ref_expert(probs, masks, present, has_region, selector=selector)  # fraction 0.5
    torch.testing.assert_close(fast.item(), slow)
    ranked = expert_supervision_loss(
        probs, masks, present, has_region, selector=selector, positive_ranking="selector"
    )
    slow_ranked = ref_expert(
        probs, masks, present, has_region, selector=selector, rank_inside_on_selector=True
    )
    torch.testing.assert_close(ranked.item(), slow_ranked)
    assert not math.isclose(ranked.item(), fast.item())


def test_negative_with_some_active_pixels_is_pushed_on_its_top_pixels():
    # a negative with 20% falsely active pixels: the paper's top-IAR term sees them all
    probs = torch.full((1, 1, 5, 5), 0.01, dtype=torch.float64)
    probs[0, 0, :1, :] = 0.9  # 5 of 25 pixels
    absent = torch.zeros(1, 1, dtype=torch.bool)
    masks = torch.zeros(1, 10, 10)
    ok = torch.zeros(1, dtype=torch.bool)  # no region needed for term 3
    top = expert_supervision_loss(probs, masks, absent, ok, iar=0.2)
    every = expert_supervision_loss(probs, masks, absent, ok, iar=0.2, negative_pixels="all")
    torch.testing.assert_close(top.item(), -math.log(0.1))
    torch.testing.assert_close(every.item(), -(0.2 * math.log(0.1) + 0.8 * math.log(0.99)))
    assert top.item() > 4.5 * every.item()


def test_positives_and_negatives_are_averaged_separately():
    probs = torch.full((4, 1, 2, 2), 0.5, dtype=torch.float64)
    probs[1:] = 0.2  # three negatives
    masks = torch.ones(4, 4, 4)
    present = torch.tensor([[True], [False], [False], [False]])
    loss = expert_supervision_loss(probs, masks, present, torch.ones(4, dtype=torch.bool), iar=1.0)
    # positive: 2 * (-ln 0.5) (box covers all: no outside term); negatives: -ln 0.8 each,
    # mean over the three of them (not over all four samples)
    torch.testing.assert_close(loss.item(), -2 * math.log(0.5) - math.log(0.8))


def test_gradient_flows_only_where_a_term_applies():
    probs, masks, present = _data(seed=3)
    probs.requires_grad_(True)
    has_region = torch.tensor([True, False, True, False])
    expert_supervision_loss(probs, masks, present, has_region).backward()
    grads = probs.grad.flatten(2).abs().sum(-1)  # (B, h)
    applies = (present & has_region[:, None]) | ~present
    assert (grads[applies] > 0).all()
    assert (grads[~applies] == 0).all()


def test_bad_inputs_raise():
    probs, masks, present = _data()
    ok = torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expert_supervision_loss(probs, masks * 2, present, ok)
    with pytest.raises(ValueError, match="batch size"):
        expert_supervision_loss(probs, masks[:2], present, ok)
    with pytest.raises(ValueError, match=r"\(B, H0, W0\)"):
        expert_supervision_loss(probs, masks[0], present, ok)
    with pytest.raises(TypeError, match="has_region"):
        expert_supervision_loss(probs, masks, present, ok.float())
    with pytest.raises(ValueError, match="positive_fraction"):
        expert_supervision_loss(probs, masks, present, ok, positive_fraction=0)
    with pytest.raises(ValueError, match="mode"):
        expert_supervision_loss(probs, masks, present, ok, resize="nearest")
    with pytest.raises(ValueError, match="heads"):
        expert_supervision_loss(probs, masks, present, ok, heads=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="negative_pixels"):
        expert_supervision_loss(probs, masks, present, ok, negative_pixels="some")
    with pytest.raises(ValueError, match="needs a selector"):
        expert_supervision_loss(probs, masks, present, ok, positive_ranking="selector")
    with pytest.raises(ValueError, match="iar"):
        expert_supervision_loss(probs, masks, present, ok, iar=1.5)


def test_nan_region_masks_and_bad_values_are_refused():
    probs, masks, present = _data()
    ok = torch.ones(4, dtype=torch.bool)
    nan_masks = torch.full_like(masks, math.nan)  # passed min() < 0 / max() > 1: the empty loss
    with pytest.raises(ValueError, match=r"region_masks must hold values in \[0, 1\].*NaN"):
        expert_supervision_loss(probs, nan_masks, present, ok)
    with pytest.raises(ValueError, match=r"probs must hold probabilities in \[0, 1\]"):
        expert_supervision_loss(probs * 4 - 2, masks, present, ok)
    with pytest.raises(ValueError, match="selector must be finite"):
        expert_supervision_loss(probs, masks, present, ok, selector=probs / 0)
    with pytest.raises(TypeError, match="positive_fraction must be a number in"):
        expert_supervision_loss(probs, masks, present, ok, positive_fraction=True)


@pytest.mark.parametrize(
    ("size", "error"),
    [((0, 0), ValueError), ("ab", TypeError), ((2.5, 2.5), TypeError), (4, TypeError)],
)
def test_resize_refuses_sizes_that_are_not_two_positive_ints(size, error):
    with pytest.raises(error, match=r"size must be \(H, W\), two positive ints"):
        resize_region_masks(torch.ones(2, 8, 8), size)


def test_masks_without_pixels_are_refused():
    """Before: (B, 0, 0) masks failed inside adaptive_max_pool2d."""
    probs, _, present = _data()
    with pytest.raises(ValueError, match=r"at least one pixel per image .* got \(4, 0, 0\)"):
        expert_supervision_loss(
            probs, torch.zeros(4, 0, 0), present, torch.ones(4, dtype=torch.bool)
        )
