"""Paper 000's global threshold (supplementary: "we first normalized each importance map by its
maximum value ... created a dataset from the normalized pixel-wise interpretation scores over the
validation samples ... positive label to all the pixels under the experts' annotated boxes ...
RidgeClassifier of sklearn ... lsqr solver with a tolerance of 1e-3, alpha of 0.01, ... maximum
iterations to 100 ... balanced weighting ... the point with the prediction label equal to zero as
the threshold") against two references on a set smaller than ``max_pixels`` (no subsample):

- sklearn's RidgeClassifier fitted here on the (normalized value, inside the region) pairs built
  by loops, its zero crossing found by bisection of its decision function;
- the same classifier's closed form, by loops: balanced class weights ``n / (2 n_class)``,
  targets -1 / +1, the weighted least squares line ``a + b x`` with ``alpha b^2`` added (the
  intercept is not penalised), threshold ``-a / b``.
"""

from __future__ import annotations

import pytest
import torch

from torchlap.metrics.localization import fit_global_threshold


def validation_set(seed: int):
    """Noisy maps, higher inside a box; one sample without a region (all pixels outside)."""
    generator = torch.Generator().manual_seed(seed)
    batch, height, width = 6, 8, 9
    masks = torch.zeros(batch, height, width, dtype=torch.bool)
    for b in range(batch - 1):
        top, left = (int(v) for v in torch.randint(0, 4, (2,), generator=generator))
        masks[b, top : top + 4, left : left + 3] = True
    noise = torch.rand(batch, height, width, generator=generator, dtype=torch.float64)
    scale = 0.5 + torch.rand(batch, 1, 1, generator=generator, dtype=torch.float64) * 3
    maps = (noise + 0.8 * masks) * scale  # overlapping classes, maps of different scales
    return maps, masks


def pixel_pairs(maps, masks):
    """(value / the map's maximum, inside the region) for every pixel of every sample."""
    values, labels = [], []
    for b in range(maps.shape[0]):
        peak = max(float(v) for v in maps[b].flatten())
        for r in range(maps.shape[1]):
            for q in range(maps.shape[2]):
                values.append(float(maps[b, r, q]) / peak)
                labels.append(int(bool(masks[b, r, q])))
    return values, labels


def sklearn_crossing(values, labels) -> float:
    from sklearn.linear_model import RidgeClassifier

    classifier = RidgeClassifier(
        alpha=0.01, solver="lsqr", tol=1e-3, max_iter=100, class_weight="balanced"
    ).fit([[v] for v in values], labels)

    def decision(x: float) -> float:
        return float(classifier.decision_function([[x]])[0])

    low, high = -10.0, 10.0
    assert decision(low) < 0 < decision(high)  # higher scores indicate the region
    for _ in range(200):  # bisection of the sign change
        middle = (low + high) / 2
        if decision(middle) < 0:
            low = middle
        else:
            high = middle
        if high - low < 1e-13:
            break
    return (low + high) / 2


def closed_form_threshold(values, labels, alpha=0.01) -> float:
    n = len(labels)
    n_inside = sum(labels)
    counts = {1: n_inside, 0: n - n_inside}
    weights = [n / (2 * counts[label]) for label in labels]  # class_weight="balanced"
    targets = [1.0 if label else -1.0 for label in labels]
    total = sum(weights)
    mean_x = sum(w * x for w, x in zip(weights, values, strict=True)) / total
    mean_y = sum(w * y for w, y in zip(weights, targets, strict=True)) / total
    covariance = sum(
        w * (x - mean_x) * (y - mean_y) for w, x, y in zip(weights, values, targets, strict=True)
    )
    variance = sum(w * (x - mean_x) ** 2 for w, x in zip(weights, values, strict=True))
    slope = covariance / (variance + alpha)
    intercept = mean_y - slope * mean_x
    return -intercept / slope


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_global_threshold_matches_a_ridge_classifier_fitted_here(seed: int) -> None:
    maps, masks = validation_set(seed)
    assert maps.numel() < 200_000  # the default max_pixels: every pixel is fitted
    values, labels = pixel_pairs(maps, masks)
    threshold = fit_global_threshold(maps, masks, seed=seed)
    # the same fit, its crossing located by bisection to 1e-13: agreement to 1e-9 leaves room
    # for the rounding of the decision function near 0 (about 1e-16 / slope)
    # (measured at most 2.6e-14)
    torch.testing.assert_close(threshold, sklearn_crossing(values, labels), rtol=0, atol=1e-9)
    # LSQR on one column reaches the exact damped least squares solution in one iteration,
    # so the closed form agrees to rounding (measured at most 1e-15; 1e-9 allowed)
    torch.testing.assert_close(threshold, closed_form_threshold(values, labels), rtol=0, atol=1e-9)
    assert 0.2 < threshold < 0.9  # between the classes: a meaningful case
    # max_pixels equal to the number of pixels: still every pixel, the same fit
    assert fit_global_threshold(maps, masks, max_pixels=maps.numel(), seed=seed) == threshold
