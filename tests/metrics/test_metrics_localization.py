"""Localization metrics against slow per-sample, per-pixel references."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from torchlap.metrics import (
    bbox_accuracy,
    ebpg,
    fit_global_threshold,
    iou_threshold,
    iou_topk,
    localization_metrics,
    miou_top20,
    pointing_game,
)

# ------------------------------------------------------------------- slow references


def pixels(tensor_2d):
    height, width = tensor_2d.shape
    return [(r, c) for r in range(height) for c in range(width)]


def ref_top(score, k):
    """Top-k pixel set, ties by lowest flat index (row-major)."""
    width = score.shape[1]
    order = sorted(pixels(score), key=lambda rc: (-float(score[rc]), rc[0] * width + rc[1]))
    return set(order[:k])


def ref_expected_intersection(score, region, k):
    """Mean |top-k ∩ region| over every way of breaking the ties at the k-th score."""
    values = sorted((float(score[rc]) for rc in pixels(score)), reverse=True)
    kth = values[k - 1]
    above = [rc for rc in pixels(score) if float(score[rc]) > kth]
    tied = [rc for rc in pixels(score) if float(score[rc]) == kth]
    still = k - len(above)  # how many of the tied pixels the selection takes
    inside_tied = sum(rc in region for rc in tied)
    return sum(rc in region for rc in above) + still * inside_tied / len(tied)


def ref_expected_iou(score, region, k):
    """Mean IoU of top-k and region over every way of breaking the ties at the k-th score.

    Of the ``n`` tied pixels the selection takes ``s``; of the C(n, s) equally likely choices,
    C(g, x) C(n - g, s - x) take exactly ``x`` of the ``g`` tied pixels inside the region."""
    values = sorted((float(score[rc]) for rc in pixels(score)), reverse=True)
    kth = values[k - 1]
    above = [rc for rc in pixels(score) if float(score[rc]) > kth]
    tied = [rc for rc in pixels(score) if float(score[rc]) == kth]
    s, n = k - len(above), len(tied)
    g = sum(rc in region for rc in tied)
    a = sum(rc in region for rc in above)
    total = 0.0
    for x in range(0, min(s, g) + 1):
        ways = math.comb(g, x) * math.comb(n - g, s - x)  # 0 where s - x > n - g
        inter = a + x
        total += ways * inter / (k + len(region) - inter)
    return total / math.comb(n, s)


def ref_pixel_count(share, n_pixels):
    """round half up of ``share x n_pixels`` on the decimal ``share`` was written as."""
    return max(1, math.floor(Fraction(str(share)) * n_pixels + Fraction(1, 2)))


def ref_region(mask):
    return {rc for rc in pixels(mask) if bool(mask[rc])}


def ref_iou(selected, region):
    return len(selected & region) / len(selected | region)


def ref_mean(values):
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept), len(kept), len(values) - len(kept)


def ref_iou_threshold(maps, masks, threshold, normalize):
    values = []
    for score, mask in zip(maps, masks, strict=True):
        region = ref_region(mask)
        if not region:
            values.append(None)
            continue
        peak = max(float(score[rc]) for rc in pixels(score))
        if normalize:
            scale = peak if peak > 0 else None
            normed = {rc: (float(score[rc]) / scale if scale else 0.0) for rc in pixels(score)}
        else:
            normed = {rc: float(score[rc]) for rc in pixels(score)}
        selected = {rc for rc, v in normed.items() if v > threshold}
        values.append(ref_iou(selected, region))
    return ref_mean(values)


def ref_topk_metric(maps, masks, kind):
    values = []
    for score, mask in zip(maps, masks, strict=True):
        region = ref_region(mask)
        if not region:
            values.append(None)
            continue
        n_pixels = score.numel()
        if kind == "iou_topk":
            values.append(ref_expected_iou(score, region, len(region)))
        elif kind == "bbox":
            values.append(ref_expected_intersection(score, region, len(region)) / len(region))
        elif kind == "miou":
            values.append(ref_expected_iou(score, region, ref_pixel_count(0.2, n_pixels)))
        elif kind == "pointing":  # expected hit of a random choice among tied maxima
            peak = max(float(score[rc]) for rc in pixels(score))
            tied = [rc for rc in pixels(score) if float(score[rc]) == peak]
            values.append(sum(rc in region for rc in tied) / len(tied))
        elif kind == "ebpg":
            total = sum(abs(float(score[rc])) for rc in pixels(score))
            inside = sum(abs(float(score[rc])) for rc in region)
            # no energy (an all-zero map): the region's share of the image, as a constant map
            values.append(inside / total if total > 0 else len(region) / n_pixels)
    return ref_mean(values)


def random_case(seed, batch=7, height=6, width=9, ties=False, signed=False):
    generator = torch.Generator().manual_seed(seed)
    if ties:
        maps = torch.randint(0, 3, (batch, height, width), generator=generator).double() / 2
    else:
        maps = torch.rand(batch, height, width, generator=generator, dtype=torch.float64)
    if signed:
        maps = maps - 0.4
    masks = torch.zeros(batch, height, width, dtype=torch.bool)
    for i in range(batch):  # random boxes
        r0 = int(torch.randint(0, height, (1,), generator=generator))
        c0 = int(torch.randint(0, width, (1,), generator=generator))
        r1 = int(torch.randint(r0 + 1, height + 1, (1,), generator=generator))
        c1 = int(torch.randint(c0 + 1, width + 1, (1,), generator=generator))
        masks[i, r0:r1, c0:c1] = True
    masks[2] = False  # one sample without region
    maps[3] = 0.0  # all-zero map
    maps[4] = 0.7  # constant map
    return maps, masks


FUNCTIONS = {
    "iou_topk": iou_topk,
    "bbox": bbox_accuracy,
    "miou": miou_top20,
    "pointing": pointing_game,
    "ebpg": ebpg,
}


@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("signed", [False, True])
def test_topk_metrics_match_reference(kind, ties, signed):
    maps, masks = random_case(seed=11, ties=ties, signed=signed)
    result = FUNCTIONS[kind](maps, masks)
    value, n, n_excluded = ref_topk_metric(maps, masks, kind)
    assert (result.n, result.n_excluded) == (n, n_excluded) == (6, 1)
    torch.testing.assert_close(result.value, value)
    assert result.per_sample is not None and math.isnan(float(result.per_sample[2]))


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.9])
def test_iou_threshold_matches_reference(normalize, threshold):
    maps, masks = random_case(seed=5, signed=True)
    maps = maps * 3  # scores beyond [0, 1] so that normalization matters
    result = iou_threshold(maps, masks, threshold, normalize=normalize)
    value, n, n_excluded = ref_iou_threshold(maps, masks, threshold, normalize)
    assert (result.n, result.n_excluded) == (n, n_excluded)
    torch.testing.assert_close(result.value, value)


def test_hand_computed_values():
    maps = torch.tensor([[[0.9, 0.1], [0.6, 0.0]]])
    masks = torch.tensor([[[True, False], [False, False]]])
    assert iou_threshold(maps, masks, 0.5).value == pytest.approx(0.5)  # {0,2} vs {0}
    assert iou_topk(maps, masks).value == 1.0
    assert bbox_accuracy(maps, masks).value == 1.0
    assert pointing_game(maps, masks).value == 1.0
    assert ebpg(maps, masks).value == pytest.approx(0.9 / 1.6)
    assert miou_top20(maps, masks).value == 1.0  # floor(0.8 + 0.5) = 1 pixel


def test_constant_maps_score_chance_on_top_k_metrics():
    maps = torch.full((1, 2, 2), 0.3)
    masks = torch.tensor([[[True, False], [False, False]]])  # 1 of 4 pixels
    # every one of the 4 tie-breaks keeps one pixel; one of them hits: E|T ∩ G| = 1/4
    assert bbox_accuracy(maps, masks).value == pytest.approx(0.25)
    # the IoU is 1 for the one tie-break of 4 that hits, 0 for the others
    assert iou_topk(maps, masks).value == pytest.approx(0.25)
    assert pointing_game(maps, masks).value == pytest.approx(0.25)
    # a plateau above the rest: the top-1 choice is among the two plateau pixels only
    maps[0, 1, 0] = maps[0, 0, 0] = 0.9
    assert bbox_accuracy(maps, masks).value == pytest.approx(0.5)


def test_degenerate_cases_are_defined():
    maps = torch.zeros(3, 4, 4)
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, 0, 0] = True  # region on the first pixel
    # sample 2: no region -> excluded
    masks[1, 3, :] = True  # a 4-pixel region on the last row
    hits = pointing_game(maps, masks)
    assert hits.per_sample[:2].tolist() == [1 / 16, 4 / 16]  # an all-zero map: chance level
    assert (hits.n, hits.n_excluded) == (2, 1)
    energy = ebpg(maps, masks)  # no energy: the region's share, as a constant map scores
    assert energy.per_sample[:2].tolist() == [1 / 16, 4 / 16]
    assert energy.value == pytest.approx((1 / 16 + 4 / 16) / 2)
    assert ebpg(torch.full_like(maps, 0.2), masks).per_sample[:2].tolist() == [1 / 16, 4 / 16]
    old = ebpg(maps, masks, zero_map="zero")  # torchlap before metrics revision 11
    assert old.per_sample[:2].tolist() == [0.0, 0.0] and old.value == 0.0
    with pytest.raises(ValueError, match=r"zero_map must be one of 'share', 'zero', got 'nan'"):
        ebpg(maps, masks, zero_map="nan")
    nobody = ebpg(maps, torch.zeros_like(masks))
    assert nobody.n == 0 and nobody.n_excluded == 3 and nobody.to_dict()["value"] is None


def test_localization_metrics_bundle():
    maps, masks = random_case(seed=3)
    bundle = localization_metrics(maps, masks, threshold=0.4, normalize=True)
    assert set(bundle) == {
        "iou_topk",
        "ebpg",
        "miou_top20",
        "bbox_accuracy",
        "pointing_game",
        "iou_threshold",
    }
    assert bundle["iou_threshold"].value == iou_threshold(maps, masks, 0.4, normalize=True).value
    assert "iou_threshold" not in localization_metrics(maps, masks)


@pytest.mark.parametrize(
    ("maps", "masks", "error", "match"),
    [
        (torch.rand(2, 3), torch.ones(2, 3, dtype=torch.bool), ValueError, "shape"),
        (
            torch.ones(2, 3, 3, dtype=torch.long),
            torch.ones(2, 3, 3, dtype=torch.bool),
            TypeError,
            "floating",
        ),
        (
            torch.full((2, 3, 3), float("nan")),
            torch.ones(2, 3, 3, dtype=torch.bool),
            ValueError,
            "nan",
        ),
        (torch.rand(2, 3, 3), torch.ones(2, 3, 3), TypeError, "bool"),
        (torch.rand(2, 3, 3), torch.ones(2, 3, 4, dtype=torch.bool), ValueError, "shape"),
        ([[1.0]], torch.ones(1, 1, 1, dtype=torch.bool), TypeError, "Tensor"),
    ],
)
def test_bad_inputs_raise(maps, masks, error, match):
    for function in (*FUNCTIONS.values(), iou_threshold):
        with pytest.raises(error, match=match):
            function(maps, masks)


# ------------------------------------------------------------------ global threshold


def synthetic_validation(seed, cut=0.35, batch=40, size=16):
    """Inside pixels score above ``cut``, outside pixels below (after max-normalization)."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(batch, size, size, dtype=torch.bool)
    masks[:, 4:10, 3:12] = True
    masks[::5] = False  # some samples without a region
    inside = cut + (1 - cut) * torch.rand(batch, size, size, generator=generator)
    outside = cut * torch.rand(batch, size, size, generator=generator)
    maps = torch.where(masks, inside, outside)
    maps[masks.flatten(1).any(1), 4, 3] = 1.0  # the maximum lies in the region
    return maps * 7.0, masks  # arbitrary scale: removed by the normalization


@pytest.mark.parametrize("classifier", ["logistic", "ridge"])
def test_fit_global_threshold_separates_inside_from_outside(classifier):
    from sklearn.linear_model import LogisticRegression, RidgeClassifier

    maps, masks = synthetic_validation(seed=0)
    threshold = fit_global_threshold(maps, masks, max_pixels=5000, seed=1, classifier=classifier)
    # the decision boundary of an independently fitted classifier on the same subsample
    generator = torch.Generator().manual_seed(1)
    keep = torch.randperm(masks.numel(), generator=generator)[:5000]
    peak = maps.amax(dim=(1, 2), keepdim=True)
    x = (maps / peak).flatten()[keep].double().numpy().reshape(-1, 1)
    y = masks.flatten()[keep].numpy().astype(int)
    if classifier == "logistic":
        clf = LogisticRegression(class_weight="balanced", random_state=1).fit(x, y)
    else:
        clf = RidgeClassifier(
            alpha=0.01, solver="lsqr", tol=1e-3, max_iter=100, class_weight="balanced"
        ).fit(x, y)
    decision = clf.decision_function([[threshold]])
    assert abs(float(decision[0])) < 1e-6
    assert clf.decision_function([[threshold + 0.05]])[0] > 0
    assert clf.decision_function([[threshold - 0.05]])[0] < 0
    # a balanced linear rule on separable data lands near the gap at 0.35 (maps are / peak)
    assert 0.2 < threshold < 0.5
    # and the thresholding IoU on test maps of the same kind is high
    test_maps, test_masks = synthetic_validation(seed=2)
    assert iou_threshold(test_maps, test_masks, threshold, normalize=True).value > 0.8


def test_fit_global_threshold_is_seeded_and_validates():
    maps, masks = synthetic_validation(seed=4)
    a = fit_global_threshold(maps, masks, max_pixels=3000, seed=7)
    b = fit_global_threshold(maps, masks, max_pixels=3000, seed=7)
    assert a == b
    with pytest.raises(ValueError, match="inside and outside"):
        fit_global_threshold(maps, torch.zeros_like(masks))
    with pytest.raises(ValueError, match="classifier"):
        fit_global_threshold(maps, masks, classifier="svm")
    with pytest.raises(ValueError, match="coefficient"):
        fit_global_threshold(-maps + maps.amax(), masks, max_pixels=3000)
    # paper 000's supplementary fits a RidgeClassifier: the library default (was logistic)
    ridge = fit_global_threshold(maps, masks, max_pixels=3000, seed=7, classifier="ridge")
    logistic = fit_global_threshold(maps, masks, max_pixels=3000, seed=7, classifier="logistic")
    assert a == ridge and a != logistic
    # seeds are checked before the fit (sklearn's InvalidParameterError came from inside it)
    for seed, error in ((1.5, TypeError), (True, TypeError), (-1, ValueError)):
        with pytest.raises(error, match="seed must be an int from 0 to 4294967295"):
            fit_global_threshold(maps, masks, seed=seed)


def test_flags_and_numbers_are_not_coerced():
    maps, masks = random_case(seed=3)
    # normalize="no" was truthy and normalized the maps; a string threshold hit a bare "<"
    with pytest.raises(TypeError, match="normalize must be True or False, got 'no'"):
        iou_threshold(maps * 0.5, masks, normalize="no")
    with pytest.raises(TypeError, match="threshold must be a finite number"):
        iou_threshold(maps, masks, "0.5")
    with pytest.raises(TypeError, match="normalize must be True or False"):
        localization_metrics(maps, masks, threshold=0.5, normalize="x")
    with pytest.raises(TypeError, match=r"value_maps must be a torch.Tensor"):
        localization_metrics(maps, masks, value_maps=[1])  # was an AttributeError
    with pytest.raises(ValueError, match="value_maps contains nan"):
        localization_metrics(maps, masks, value_maps=torch.full_like(maps, float("nan")))
    for fraction in (True, "0.2"):
        with pytest.raises(TypeError, match=r"fraction must be a number in \(0, 1\]"):
            miou_top20(maps, masks, fraction)


@pytest.mark.parametrize("side", [4, 32])
def test_tied_top_k_iou_is_the_expected_iou_at_any_map_size(side):
    # two tied maxima, one of them the one-pixel region: half the tie-breaks score IoU 1,
    # half 0 (the IoU of the expected intersection, 1/2 / (2 - 1/2), said 1/3)
    maps = torch.zeros(1, side, side)
    maps[0, 0, 0] = maps[0, -1, -1] = 1.0
    masks = torch.zeros(1, side, side, dtype=torch.bool)
    masks[0, 0, 0] = True
    assert iou_topk(maps, masks).value == pytest.approx(0.5)


def test_tied_top_k_iou_in_blocks_matches_the_reference(monkeypatch):
    # the hypergeometric table built a few samples at a time gives the same values
    import torchlap.metrics.localization as localization

    maps, masks = random_case(seed=4, batch=9, ties=True)
    whole = iou_topk(maps, masks).per_sample
    monkeypatch.setattr(localization, "_OUTCOME_BLOCK", 1)
    torch.testing.assert_close(iou_topk(maps, masks).per_sample, whole, equal_nan=True)
    expected = [
        ref_expected_iou(score, ref_region(mask), int(mask.sum())) if mask.any() else math.nan
        for score, mask in zip(maps, masks, strict=True)
    ]
    torch.testing.assert_close(whole, torch.tensor(expected, dtype=torch.float64), equal_nan=True)
