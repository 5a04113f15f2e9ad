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


def ref_expert(probs, masks, present, has_region, heads=None, fraction=1.0, mode="any"):
    batch, n_heads, height, width = probs.shape
    total = 0.0
    n_region = sum(bool(v) for v in has_region)
    for s in range(batch):
        if not has_region[s]:
            continue
        region = ref_resize(masks[s], height, width, mode)
        for c in range(n_heads):
            if heads is not None and not heads[c]:
                continue
            pixels = [(i, j) for i in range(height) for j in range(width)]
            target = {ij: float(region[ij]) if present[s, c] else 0.0 for ij in pixels}
            inside = [ij for ij in pixels if target[ij] > 0]
            keep = math.ceil(Decimal(str(fraction)) * len(inside))
            inside_sorted = sorted(inside, key=lambda ij, s=s, c=c: -float(probs[s, c][ij]))
            outside = [ij for ij in pixels if target[ij] == 0]
            positive = 0.0  # Eq. 5-like: inside and outside averaged separately, factor 2 inside
            for ij in inside_sorted[:keep]:
                p, t = float(probs[s, c][ij]), target[ij]
                positive -= t * math.log(max(p, LOG_EPS)) + (1 - t) * math.log(max(1 - p, LOG_EPS))
            negative = sum(-math.log(max(1 - float(probs[s, c][ij]), LOG_EPS)) for ij in outside)
            total += 2 * positive / max(keep, 1) + negative / max(len(outside), 1)
    return total / max(n_region, 1)


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
    ("fraction", "mode", "heads"),
    [
        (1.0, "any", None),
        (1.0, "area", None),
        (0.5, "any", [True, False, True]),
        (0.3, "area", None),
    ],
)
def test_matches_reference(fraction, mode, heads):
    probs, masks, present = _data(seed=1)
    has_region = torch.tensor([True, False, True, True])
    head_mask = None if heads is None else torch.tensor(heads)
    fast = expert_supervision_loss(
        probs, masks, present, has_region, heads=head_mask, positive_fraction=fraction, resize=mode
    )
    slow = ref_expert(probs, masks, present, has_region, heads, fraction, mode)
    torch.testing.assert_close(fast.item(), slow)


def test_absent_concepts_are_pushed_to_zero_and_no_region_gives_zero():
    probs, masks, _ = _data(seed=2)
    absent = torch.zeros(4, 3, dtype=torch.bool)
    fast = expert_supervision_loss(probs, masks, absent, torch.ones(4, dtype=torch.bool))
    expected = -torch.log(1 - probs).mean(dim=(-2, -1)).sum(1).mean()
    torch.testing.assert_close(fast, expected)
    probs.requires_grad_(True)
    nothing = expert_supervision_loss(probs, masks, absent, torch.zeros(4, dtype=torch.bool))
    assert nothing.item() == 0.0
    nothing.backward()
    assert probs.grad.abs().sum() == 0


def test_perfect_maps_have_small_loss():
    masks = torch.zeros(2, 8, 8)
    masks[0, :4, :4] = 1
    probs = torch.full((2, 1, 4, 4), 1e-4, dtype=torch.float64)
    probs[0, 0, :2, :2] = 1 - 1e-4
    present = torch.tensor([[True], [False]])
    loss = expert_supervision_loss(probs, masks, present, torch.ones(2, dtype=torch.bool))
    # sample 0: 2 * (-ln(1 - 1e-4)) inside + (-ln(1 - 1e-4)) outside; sample 1: -ln(1 - 1e-4)
    torch.testing.assert_close(loss.item(), -2 * math.log(1 - 1e-4), rtol=1e-6, atol=1e-9)


def test_gradient_flows_to_probs_only_for_supervised_samples():
    probs, masks, present = _data(seed=3)
    probs.requires_grad_(True)
    has_region = torch.tensor([True, False, True, False])
    expert_supervision_loss(probs, masks, present, has_region).backward()
    assert probs.grad[has_region].abs().sum() > 0
    assert probs.grad[~has_region].abs().sum() == 0


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
