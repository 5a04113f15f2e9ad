"""Localization of explanation maps against ground-truth regions (boxes rasterized to masks,
or segmentation masks).

Common conventions (the papers are silent on them):

- Inputs are ``maps`` (B, H, W) float at image resolution and ``masks`` (B, H, W) bool.
- A sample whose region is empty (no ``True`` pixel) is **excluded** from every
  localization metric; the count is reported as ``MetricResult.n_excluded`` and its
  per-sample score is ``nan``. (Quantus' PointingGame would score it as a hit.)
- Top-k selections keep exactly k pixels. Ties at the k-th score (plateaus of upsampled
  coarse maps, saturated probabilities, constant maps) are scored by their expectation under
  a uniformly random choice among the tied pixels. The selection takes ``s = k - |above|``
  of the ``n`` tied pixels, ``g`` of which are in the region, so the number ``x`` of tied
  pixels it takes inside the region is hypergeometric, ``P(x) = C(g, x) C(n - g, s - x) /
  C(n, s)``. Bbox is the expected intersection over N, ``(|above ∩ G| + s g / n) / N``; the
  top-k IoUs are the expected IoU, ``sum_x P(x) (a + x) / (k + |G| - a - x)`` with ``a =
  |above ∩ G|`` (metrics revision 15; before, the IoU of the expected intersection, which
  is lower: the IoU is convex in the intersection). A constant map thus scores chance, not
  whatever its first pixels in raster order happen to cover; without ties this is the plain
  top-k selection. The pointing game treats tied maxima alike.
- Every metric is a mean over the included samples, in [0, 1], higher is better.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from torchlap._checks import check_bool, check_choice, check_int, check_number, check_seed
from torchlap.metrics._common import (
    MetricResult,
    check_maps,
    check_masks,
    count_for_fraction,
    make_result,
    normalize_by_max,
)

__all__ = [
    "EBPG_ZERO_MAPS",
    "THRESHOLD_CLASSIFIERS",
    "bbox_accuracy",
    "ebpg",
    "fit_global_threshold",
    "iou_threshold",
    "iou_topk",
    "localization_metrics",
    "miou_top20",
    "pointing_game",
]

logger = logging.getLogger(__name__)

#: the linear classifiers :func:`fit_global_threshold` can fit (``--threshold-classifier``);
#: ``"ridge"``, paper 000's (supplementary), is the default
THRESHOLD_CLASSIFIERS = ("logistic", "ridge")


def _checked(
    maps: Tensor, masks: Tensor, names: tuple[str, str] = ("maps", "masks")
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Validated maps/masks (their argument names: ``names``), region areas (B,) and the
    valid-sample mask (B,)."""
    check_maps(maps, names[0])
    check_masks(masks, maps, names[1])
    area = masks.flatten(1).sum(dim=1)
    return maps, masks, area, area > 0


def _iou(selected: Tensor, masks: Tensor) -> Tensor:
    """Per-sample |A ∩ G| / |A ∪ G| (0 where the union is empty; such samples are excluded)."""
    inter = (selected & masks).flatten(1).sum(dim=1).double()
    union = (selected | masks).flatten(1).sum(dim=1).double()
    return inter / union.clamp_min(1)


def iou_threshold(
    maps: Tensor, masks: Tensor, threshold: float = 0.5, *, normalize: bool = False
) -> MetricResult:
    """IoU by **thresholding** (paper 000, section IV, "Binarization by Thresholding").

    A pixel is positive when its score is strictly above ``threshold``. LAP maps are used
    as they are with the global threshold 0.5 (``normalize=False``); other explainers'
    maps are first divided by their per-image maximum (``normalize=True``, see
    :func:`torchlap.metrics.normalize_by_max`) and thresholded with the global threshold
    fitted on validation pixels by :func:`fit_global_threshold`.

    ``IoU = |{S > t} ∩ G| / |{S > t} ∪ G|``, averaged over samples with a non-empty region.
    ``threshold``: a finite number; ``normalize``: True or False.
    """
    check_number(threshold, "threshold")
    check_bool(normalize, "normalize")
    maps, masks, _, valid = _checked(maps, masks)
    scores = normalize_by_max(maps) if normalize else maps
    return make_result("iou_threshold", _iou(scores > threshold, masks), valid)


def fit_global_threshold(
    val_maps: Tensor,
    val_masks: Tensor,
    *,
    max_pixels: int = 200_000,
    seed: int = 0,
    classifier: str = "ridge",
) -> float:
    """Global threshold for max-normalized maps (paper 000, section IV and supplementary).

    Each validation map is divided by its maximum; every pixel becomes one sample with the
    normalized score as its single feature and the label "inside the region" (all
    validation samples are used, including those without a region, whose pixels are all
    outside). A binary linear classifier with balanced class weights is fitted on a seeded
    uniform subsample of at most ``max_pixels`` pixels, and the threshold is the score at
    which its decision function is 0, ``t = -intercept / coef``.

    ``classifier="ridge"`` (default) uses ``RidgeClassifier(alpha=0.01, solver="lsqr",
    tol=1e-3, max_iter=100)``, the paper's supplementary setting; ``"logistic"`` uses
    ``sklearn.linear_model.LogisticRegression``. The paper fits on every validation pixel;
    ``max_pixels`` bounds the memory of the fit (a ``max_pixels`` at least the number of
    validation pixels fits on all of them). Raises ``ValueError`` when the classifier finds
    that higher scores do **not** indicate the region (coefficient <= 0): thresholding is
    then meaningless for that explainer. ``max_pixels``: an int >= 2; ``seed``: an int in
    [0, 2**32 - 1] (the subsample and scikit-learn's ``random_state``).
    """
    check_choice(classifier, "classifier", THRESHOLD_CLASSIFIERS)
    check_int(max_pixels, "max_pixels", minimum=2)
    check_seed(seed)
    maps, masks, _, _ = _checked(val_maps, val_masks, ("val_maps", "val_masks"))
    scores = normalize_by_max(maps).flatten()
    labels = masks.flatten()
    n_inside = int(labels.sum().item())
    if n_inside == 0 or n_inside == labels.numel():
        raise ValueError(
            "fit_global_threshold needs validation pixels both inside and outside the regions; "
            f"got {n_inside} inside out of {labels.numel()}"
        )
    if labels.numel() > max_pixels:
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(labels.numel(), generator=generator, device="cpu")[:max_pixels]
        keep = keep.to(scores.device)
        scores, labels = scores[keep], labels[keep]
        if bool(labels.all()) or not bool(labels.any()):
            raise ValueError(
                "the pixel subsample holds a single class; raise max_pixels "
                f"(now {max_pixels}) so that region pixels are sampled"
            )
    # A one-off fit on a subsample, not a hot path: sklearn on CPU is the field's tool here.
    features = scores.detach().double().cpu().numpy().reshape(-1, 1)
    targets = labels.cpu().numpy().astype("int64")
    if classifier == "logistic":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(class_weight="balanced", random_state=seed)
    else:
        from sklearn.linear_model import RidgeClassifier

        model = RidgeClassifier(
            alpha=0.01, solver="lsqr", tol=1e-3, max_iter=100, class_weight="balanced"
        )
    model.fit(features, targets)
    coef = float(model.coef_.ravel()[0])
    intercept = float(model.intercept_.ravel()[0])
    if not coef > 0:
        raise ValueError(
            f"the fitted classifier has coefficient {coef:.4g} <= 0: higher normalized scores do "
            "not indicate the region on the validation pixels, so no global threshold exists"
        )
    threshold = -intercept / coef
    logger.info("global threshold %.4f (%s, %d pixels)", threshold, classifier, labels.numel())
    return threshold


def _topk_counts(maps: Tensor, masks: Tensor, k: Tensor) -> tuple[Tensor, ...]:
    """Per sample (long, (B,)), for the top ``k`` pixels with ties at the k-th score chosen
    uniformly at random (module docstring): ``a = |above ∩ G|``, the count ``s`` of tied
    pixels taken, the tied pixels ``n`` and those inside the region ``g``; ``k`` (B,) >= 1 for
    the samples that count."""
    flat, region = maps.flatten(1), masks.flatten(1)
    k = k.to(device=flat.device, dtype=torch.long).expand(flat.shape[0])
    ordered = flat.sort(dim=1, descending=True).values
    kth = ordered.gather(1, (k - 1).clamp_min(0)[:, None])  # k <= H*W; 0 for empty regions
    above, tied = flat > kth, flat == kth
    taken = (k - above.sum(dim=1)).clamp_min(0)
    return (above & region).sum(dim=1), taken, tied.sum(dim=1), (tied & region).sum(dim=1)


def _topk_intersection(maps: Tensor, masks: Tensor, k: Tensor) -> Tensor:
    """Expected ``|T_k ∩ G|`` per sample (double): ``a + s g / n``."""
    inside, taken, tied, tied_in = (c.double() for c in _topk_counts(maps, masks, k))
    return inside + taken * tied_in / tied.clamp_min(1)


#: elements of the (samples, outcomes) table :func:`_topk_iou` builds at once (double)
_OUTCOME_BLOCK = 1 << 22


def _log_choose(n: Tensor, r: Tensor) -> Tensor:
    return torch.lgamma(n + 1) - torch.lgamma(r + 1) - torch.lgamma(n - r + 1)


def _topk_iou(maps: Tensor, masks: Tensor, k: Tensor, area: Tensor) -> Tensor:
    """Expected ``|T_k ∩ G| / |T_k ∪ G|`` per sample (double) over the uniformly random choice
    of the tied pixels (module docstring): the hypergeometric sum over the number ``x`` of
    tied pixels taken inside the region (one term where no tie-break changes it). One host
    read: the widest range of ``x``."""
    inside, taken, tied, tied_in = (c.double() for c in _topk_counts(maps, masks, k))
    k = k.to(device=inside.device, dtype=torch.float64).expand(inside.shape[0])
    total = k + area.to(inside.device).double()  # |T_k| + |G| = |T_k ∪ G| + |T_k ∩ G|
    lowest = (taken - (tied - tied_in)).clamp_min(0)  # x: the fewest taken inside the region
    highest = torch.minimum(taken, tied_in)
    # Hand-written: no library gives the hypergeometric expectation of a ratio, batched on
    # the tensors' device (scipy's pmf is per-sample and on the host).
    width = int((highest - lowest).max()) + 1 if inside.numel() else 1
    step = torch.arange(width, device=inside.device, dtype=torch.float64)
    block = max(1, _OUTCOME_BLOCK // width)
    expected = []
    for start in range(0, inside.shape[0], block):
        part = slice(start, start + block)
        a, s, n, g, low = inside[part], taken[part], tied[part], tied_in[part], lowest[part]
        x = low[:, None] + step  # (b, width): every outcome from the fewest up
        possible = x <= highest[part, None]
        x = torch.where(possible, x, low[:, None])  # keep lgamma's arguments in range
        log_p = (
            _log_choose(g[:, None], x)
            + _log_choose((n - g)[:, None], s[:, None] - x)
            - _log_choose(n[:, None], s[:, None])
        )
        p = torch.where(possible, log_p.exp(), 0.0)
        ratio = (a[:, None] + x) / (total[part, None] - a[:, None] - x).clamp_min(1)
        expected.append((p * ratio).sum(dim=1) / p.sum(dim=1))
    return torch.cat(expected) if expected else inside


def iou_topk(maps: Tensor, masks: Tensor) -> MetricResult:
    """IoU by **top-scored selection** (paper 000, section IV): keep as many top-scored
    pixels as the region's area N, then ``IoU = |T_N ∩ G| / |T_N ∪ G|`` (ties: module
    docstring)."""
    maps, masks, area, valid = _checked(maps, masks)
    return make_result("iou_topk", _topk_iou(maps, masks, area, area), valid)


#: what :func:`ebpg` scores for an all-zero map (``zero_map``): ``"share"``, the region's share
#: of the image (the default), or ``"zero"``
EBPG_ZERO_MAPS = ("share", "zero")


def ebpg(maps: Tensor, masks: Tensor, zero_map: str = "share") -> MetricResult:
    """Energy-Based Pointing Game (paper 003): ``EBPG = ||S ⊙ G||_1 / ||S||_1``.

    The L1 norm takes absolute values, so negative evidence counts as energy too (Quantus'
    RelevanceMassAccuracy with ``abs=True``; identical for non-negative maps).

    An all-zero map has no energy and the paper's ratio is 0/0. ``zero_map="share"`` (the
    default) scores it as every constant map scores, the region's share of the image: the
    limit of ``c·1`` as ``c -> 0``, and the chance level the report marks, as the pointing game
    and the grid pointing game score maps without evidence. ``zero_map="zero"`` scores it 0
    (torchlap before metrics revision 11), below chance.
    """
    check_choice(zero_map, "zero_map", EBPG_ZERO_MAPS)
    maps, masks, area, valid = _checked(maps, masks)
    energy = maps.abs().double()
    inside = (energy * masks).flatten(1).sum(dim=1)
    total = energy.flatten(1).sum(dim=1)
    empty = area.double() / (maps.shape[1] * maps.shape[2]) if zero_map == "share" else 0.0
    per_sample = torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), empty)
    return make_result("ebpg", per_sample, valid)


def miou_top20(maps: Tensor, masks: Tensor, fraction: float = 0.2) -> MetricResult:
    """mIoU of paper 003: IoU between the top 20% pixels of each map and the region, averaged
    over samples. The pixel count is ``max(1, floor(fraction * H * W + 1/2))``; ``fraction``:
    a number in (0, 1] (not a bool)."""
    maps, masks, area, valid = _checked(maps, masks)
    count = count_for_fraction(fraction, maps.shape[1] * maps.shape[2])
    k = torch.full((), count, dtype=torch.long, device=maps.device)
    return make_result("miou_top20", _topk_iou(maps, masks, k, area), valid)


def bbox_accuracy(maps: Tensor, masks: Tensor) -> MetricResult:
    """Bbox of paper 003 (Schulz et al. 2020): with N = |G|, select the top N pixels of the
    map and score the fraction of them inside the region, ``|T_N ∩ G| / N``."""
    maps, masks, area, valid = _checked(maps, masks)
    inter = _topk_intersection(maps, masks, area)
    return make_result("bbox_accuracy", inter / area.clamp_min(1), valid)


def pointing_game(maps: Tensor, masks: Tensor) -> MetricResult:
    """Pointing game (Zhang et al., extended by EBPG in paper 003): a hit when the map's
    maximum lies inside the region (no tolerance margin).

    Tied maxima are common (saturated probability maps, coarse CAMs upsampled into plateaus,
    all-zero maps), so a sample scores the expected hit of a uniformly random choice among its
    tied maxima: the fraction of them inside the region. A constant map thus scores the
    region's area fraction, the chance level. (Quantus counts a hit when *any* tied maximum is
    inside, so a constant map always hits; taking the lowest index instead would make a
    plateau hit only when it covers the top-left pixel.)
    """
    maps, masks, _, valid = _checked(maps, masks)
    flat = maps.flatten(1)
    tied = flat == flat.amax(dim=1, keepdim=True)
    inside = (tied & masks.flatten(1)).sum(dim=1)
    hit = inside.double() / tied.sum(dim=1).double()
    return make_result("pointing_game", hit, valid)


def localization_metrics(
    maps: Tensor,
    masks: Tensor,
    *,
    threshold: float | None = None,
    normalize: bool = False,
    value_maps: Tensor | None = None,
) -> dict[str, MetricResult]:
    """All localization metrics at once: ``iou_topk``, ``ebpg``, ``miou_top20``,
    ``bbox_accuracy``, ``pointing_game``, plus ``iou_threshold`` when ``threshold`` is given
    (``normalize`` as in :func:`iou_threshold`: False for LAP maps at 0.5, True for other
    explainers with a fitted threshold).

    ``value_maps`` (default ``maps``): the maps of the metrics that read scores as values
    (``iou_threshold``, ``ebpg``) when they differ from those ranked by the others, as for
    LAP, whose map to threshold (Algorithm 1) is not its map for top-scored selection
    (the unclipped sum, :func:`torchlap.explainers.lap_all`). ``value_maps``: None or finite
    maps of the shape of ``maps``; ``threshold``: None or a finite number; ``normalize``:
    True or False."""
    check_bool(normalize, "normalize")
    if threshold is not None:
        check_number(threshold, "threshold")
    if value_maps is None:
        value_maps = maps
    elif check_maps(value_maps, "value_maps").shape != check_maps(maps).shape:
        raise ValueError(
            f"value_maps must have the shape of maps {tuple(maps.shape)}, "
            f"got {tuple(value_maps.shape)}"
        )
    results = {
        "iou_topk": iou_topk(maps, masks),
        "ebpg": ebpg(value_maps, masks),
        "miou_top20": miou_top20(maps, masks),
        "bbox_accuracy": bbox_accuracy(maps, masks),
        "pointing_game": pointing_game(maps, masks),
    }
    if threshold is not None:
        results["iou_threshold"] = iou_threshold(value_maps, masks, threshold, normalize=normalize)
    return results
