"""Concordance loss between consecutive LAP layers (paper 000, Eq. 6)."""

import itertools
import math

import pytest
import torch

from torchlap.losses import LOG_EPS, concordance_loss


def ref_pool(m, height, width, pool):
    """Adaptive max/avg pooling written out (cells floor(i H0 / H) .. ceil((i + 1) H0 / H))."""
    h0, w0 = m.shape
    out = torch.zeros(height, width, dtype=m.dtype)
    for i in range(height):
        r0, r1 = (i * h0) // height, -((-(i + 1) * h0) // height)
        for j in range(width):
            c0, c1 = (j * w0) // width, -((-(j + 1) * w0) // width)
            cell = [m[r, c] for r in range(r0, r1) for c in range(c0, c1)]
            out[i, j] = max(cell) if pool == "max" else sum(cell) / len(cell)
    return out


def ref_eq6(maps, t, mode, pool="max", eps=LOG_EPS):
    pairs = []
    for a, b in itertools.pairwise(maps):
        batch, heads = a.shape[:2]
        height, width = min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3])
        per_sample = []
        for s in range(batch):
            sample_total = 0.0
            for c in range(heads):
                p = ref_pool(a[s, c], height, width, pool)
                q = ref_pool(b[s, c], height, width, pool)
                acc, count = 0.0, 0
                for i in range(height):
                    for j in range(width):
                        pl, pn = float(p[i, j]), float(q[i, j])
                        chosen = abs(pl - pn) > t if mode == "both" else pl - pn > t
                        if not chosen:
                            continue
                        count += 1
                        acc += (pl - pn) * math.log(max(pl, eps) / max(pn, eps))
                        acc += (pn - pl) * math.log(max(1 - pl, eps) / max(1 - pn, eps))
                sample_total += acc / (2 * count) if count else 0.0
            per_sample.append(sample_total)
        pairs.append(sum(per_sample) / len(per_sample))
    return sum(pairs) / len(pairs)


def _maps(seed=0, sizes=((8, 8), (4, 4), (3, 3)), batch=3, heads=2):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, heads, *hw, generator=gen, dtype=torch.float64) for hw in sizes]


@pytest.mark.parametrize("mode", ["both", "high_low"])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_matches_reference(mode, pool):
    maps = _maps()
    for t in (0.0, 0.2):
        fast = concordance_loss(maps, t, mode, pool=pool)
        torch.testing.assert_close(fast.item(), ref_eq6(maps, t, mode, pool))


def test_hand_computed_pixel():
    # one pixel, p_l = 0.8, p_{l+1} = 0.2: 1/2 [0.6 ln 4 + 0.6 ln 4] = 0.6 ln 4
    maps = [torch.full((1, 1, 1, 1), 0.8), torch.full((1, 1, 1, 1), 0.2)]
    torch.testing.assert_close(
        concordance_loss(maps, 0.1).item(), 0.6 * math.log(4), rtol=1e-6, atol=0
    )
    assert concordance_loss(maps, 0.1, "high_low").item() > 0
    assert concordance_loss(maps[::-1], 0.1, "high_low").item() == 0.0  # low in l, high in l+1
    assert concordance_loss(maps, 0.7).item() == 0.0  # below the threshold


def test_equal_maps_and_empty_selection_give_zero_without_nan():
    same = torch.full((2, 2, 4, 4), 0.3, requires_grad=True)
    loss = concordance_loss([same, same.detach().clone()], 0.0)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(same.grad).all()
    # sample 0 has no pixel above t (M_s = 0), sample 1 has some: only sample 1 counts
    a = torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)
    b = a.clone()
    b[1, 0, 0, 0] = 0.9
    expected = ref_eq6([a, b], 0.1, "both")
    torch.testing.assert_close(concordance_loss([a, b], 0.1).item(), expected)
    assert expected > 0


def test_gradient_reaches_both_layers():
    maps = [m.requires_grad_(True) for m in _maps(seed=1)]
    concordance_loss(maps, 0.1).backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps)


def test_saturated_maps_stay_finite():
    a = torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2)
    b = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)
    loss = concordance_loss([a, b], 0.1)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss.item(), ref_eq6([a.double(), b.double()], 0.1, "both"))


def test_single_layer_is_zero():
    (only,) = _maps(sizes=((4, 4),))
    assert concordance_loss([only], 0.1).item() == 0.0


def test_bad_inputs_raise():
    maps = _maps()
    with pytest.raises(ValueError, match="mode"):
        concordance_loss(maps, 0.1, "low_high")
    with pytest.raises(ValueError, match="threshold"):
        concordance_loss(maps, 1.5)
    with pytest.raises(ValueError, match="share batch and heads"):
        concordance_loss([maps[0], maps[1][:, :1]], 0.1)
    with pytest.raises(ValueError, match="empty"):
        concordance_loss([], 0.1)
    with pytest.raises(TypeError, match="list"):
        concordance_loss(maps[0], 0.1)
    with pytest.raises(ValueError, match="pool"):
        concordance_loss(maps, 0.1, pool="bilinear")


@pytest.mark.parametrize("bad", ["logits", "nan"])
def test_maps_outside_0_1_are_refused(bad):
    fine = torch.rand(2, 1, 4, 4)
    coarse = torch.rand(2, 1, 2, 2)
    if bad == "logits":
        coarse = torch.randn(2, 1, 2, 2) * 5  # was a finite loss
    else:
        coarse[0, 0, 1, 1] = math.nan
    with pytest.raises(
        ValueError, match=r"maps_per_layer\[1\] must hold probabilities in \[0, 1\]"
    ):
        concordance_loss([fine, coarse])
