"""Knowledge-injection losses of LAP (paper 000, section III.B), functional forms.

All functions take concept probabilities ``probs`` of shape (B, h, H, W) (a LAP layer's
``LapMaps.concepts``, sigmoid outputs in (0, 1)) and are batched: no loop over samples, concepts
or pixels. Pixel sets are chosen with ``torch.topk`` on flattened maps.

Conventions shared by every function here:

- Values are checked before any work: probabilities outside [0, 1] (logits, NaN) and region
  masks outside [0, 1] raise ``ValueError``, a selector must be finite; each call checks all its
  tensors with one ``aminmax`` per tensor and one device sync (``InjectionLoss`` checks every
  layer's maps with a single sync and skips the per-call checks).
- Logarithms are taken of probabilities clamped to ``[eps, 1]`` (``ln p``) and of ``1 - p``
  clamped the same way (``ln(1 - p)``), with ``eps = LOG_EPS = 1e-6`` unless given. Sigmoid
  outputs saturate to exactly 0 or 1 in float32, and ``ln 0`` would make the loss infinite; the
  clamp bounds one pixel's term by ``-ln(1e-6) ~ 13.8``. (Where the clamp is active the gradient
  is zero, but the sigmoid's own gradient there is below ``1e-6`` anyway.)
- Maps in float16 or bfloat16 (autocast) are summed in float32, and the loss is float32: a
  float16 sum of a few thousand clamped ``ln p`` passes 65504 and made the loss NaN.
- A pixel count from a ratio is ``ceil(ratio * HW)`` computed exactly on the decimal value of the
  ratio (``0.1 * 100`` gives 10, not the 11 that float rounding would give).
- A term whose sample set is empty (``N_c = 0`` or ``N_c-bar = 0`` in Eq. 5, ``M_s = 0`` in
  Eq. 6, no sample with a region) contributes exactly 0, never NaN.
- Ties: when the selector has equal values, ``torch.topk`` picks among the tied pixels in an
  unspecified (but deterministic for a given device and input) order. The loss is only
  tie-invariant when the tied pixels have equal ``probs`` as well, e.g. when ``selector is None``
  (the sets are chosen on ``probs`` itself) or on all-equal maps.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor

from torchlap._checks import (
    check_choice,
    check_fraction,
    check_has_values,
    check_int,
    check_number,
    exact_decimal,
)
from torchlap.losses._validation import (
    PROBABILITIES,
    REGION_VALUES,
    RatioArg,
    check_bool_mask,
    check_eps,
    check_include,
    check_present,
    check_probs,
    check_selector,
    check_threshold,
    check_values,
    per_head_ratios,
)
from torchlap.losses.regions import (
    MASK_RESIZE_MODES,
    _annotated_samples,
    _check_region_masks,
    _inside_cells,
    annotated_samples,
    resize_region_masks,
)

__all__ = [
    "CONCORDANCE_MODES",
    "EXPERT_NEGATIVE_PIXELS",
    "EXPERT_POSITIVE_FRACTION",
    "EXPERT_POSITIVE_RANKINGS",
    "LOG_EPS",
    "MASK_RESIZE_MODES",
    "annotated_samples",
    "concept_discrimination_loss",
    "concordance_loss",
    "discriminative_scorer_loss",
    "expert_supervision_loss",
    "ratio_count",
    "resize_region_masks",
    "suggest_ratios",
]

LOG_EPS = 1e-6
CONCORDANCE_MODES = ("both", "high_low")
CONCORDANCE_POOLS = ("max", "avg")

# Paper 000, Appendix A: term 1 of the expert loss takes "half of the pixels with higher
# importance probability within the box". The one default of InjectionLoss and TrainConfig.
EXPERT_POSITIVE_FRACTION = 0.5
EXPERT_NEGATIVE_PIXELS = ("iar", "all")
EXPERT_POSITIVE_RANKINGS = ("concepts", "selector")


# ----------------------------------------------------------------------------- helpers


def _wide(t: Tensor) -> Tensor:
    """``t`` in float32 when it is a 16-bit float (sums of thousands of ``ln p`` overflow
    float16's 65504 and bfloat16 keeps 8 bits: the losses add in float32)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _log(p: Tensor, eps: float) -> Tensor:
    return torch.log(p.clamp_min(eps))


def _log1m(p: Tensor, eps: float) -> Tensor:
    return torch.log((1.0 - p).clamp_min(eps))


def ratio_count(ratio: float | Fraction, n_pixels: int) -> int:
    """``ceil(ratio * n_pixels)`` on the exact decimal value of ``ratio`` (Eq. 5's ``k``).

    ``ratio``: a fraction of the pixels, a finite number (or a ``Fraction``) in [0, 1] (Eq. 5's
    MinAR, 1 - MaxAR, IAR); ``n_pixels``: an int >= 0. Anything else raises (``TypeError`` for
    a non-number or a bool, ``ValueError`` out of range or not finite).
    """
    check_int(n_pixels, "n_pixels", minimum=0)
    accepted = "a fraction of the pixels in [0, 1]"
    if not isinstance(ratio, Fraction):
        check_number(ratio, "ratio", minimum=0.0, maximum=1.0, accepted=accepted)
    elif not 0 <= ratio <= 1:
        raise ValueError(f"ratio must be {accepted}, got {ratio}")
    return math.ceil(exact_decimal(ratio) * n_pixels)


def _masked_sample_mean(per_sample: Tensor, mask: Tensor, counted: Tensor | None = None) -> Tensor:
    """Sum over samples of ``per_sample`` where ``mask``, divided by the number of samples in
    ``counted`` (default: ``mask``; 0 if none)."""
    weights = mask.to(per_sample.dtype)
    count = weights if counted is None else counted.to(per_sample.dtype)
    return (per_sample * weights).sum(0) / count.sum(0).clamp_min(1)


# ----------------------------------------------------------------------------- Eq. 5


def concept_discrimination_loss(
    probs: Tensor,
    present: Tensor,
    min_ar: RatioArg = 0.1,
    max_ar: RatioArg = 0.5,
    iar: RatioArg = 0.1,
    selector: Tensor | None = None,
    *,
    include: Tensor | None = None,
    counted: Tensor | None = None,
    eps: float = LOG_EPS,
) -> Tensor:
    """Concept-discrimination loss of one LAP layer, Eq. 5 of paper 000 (section III.B.1).

    ``-sum_c [ sum_{s: c in C_s} ( 2 sum_{top k1} ln p / (k1 N_c)
    + sum_{bot k2} ln(1-p) / (k2 N_c) )
    + sum_{s: c not in C_s} sum_{top k3} ln(1-p) / (k3 N_c-bar) ]``

    with ``k1 = ceil(MinAR HW)``, ``k2 = ceil((1 - MaxAR) HW)``, ``k3 = ceil(IAR HW)``.

    Args:
        probs: concept probabilities (B, h, H, W), a floating tensor in [0, 1] (values
            outside, NaN included, raise ``ValueError``: logits are not probabilities).
        present: bool (B, h), ``c in C_s`` (see ``ConceptSets.presence``).
        min_ar, max_ar, iar: the ratios, each a float in (0, 1], ``None`` to drop that term, or
            one value per head (the paper's CelebA common head used MaxAR only).
            ``max_ar = 1`` gives ``k2 = 0``: the bottom term is dropped as well.
        selector: optional (B, h, H, W) maps (the discriminative scorer's probabilities), a
            floating (finite) or bool tensor, used ONLY to choose the top/bottom pixel sets; the
            loss is computed on ``probs`` at those pixels and no gradient reaches ``selector``.
            ``None`` chooses on ``probs``.
        include: optional bool (B,) or (B, h); pairs (sample, head) left out of the loss and of
            the counts ``N_c``, ``N_c-bar`` (used for the expert-supervision fallback).
        counted: optional bool (B,) or (B, h), the pairs counted in ``N_c`` and ``N_c-bar``
            (default: ``include``). ``InjectionLoss``'s expert mode includes only the positives
            without a region but counts every positive of the head, so that this term and
            :func:`expert_supervision_loss` (the positives with a region) share Eq. 5's ``N_c``.
            An included pair is always counted (``counted | include``: no sync to check it).
        eps: log clamp, in (0, 0.5) (module docstring).

    Returns a scalar, summed over heads as Eq. 5 writes it.
    """
    probs = check_probs(probs)
    present = check_present(present, probs)
    eps = check_eps(eps)
    batch, heads, height, width = probs.shape
    ratios = per_head_ratios(min_ar, max_ar, iar, heads)
    selector = check_selector(selector, probs)
    include = check_include(include, probs)
    counted = include if counted is None else check_include(counted, probs, "counted") | include
    check_values([("probs", probs, PROBABILITIES)], [("selector", selector)])  # one sync
    n_pixels = height * width
    lows, highs, iars = zip(*ratios, strict=True)
    k1, k3 = _head_counts(lows, n_pixels), _head_counts(iars, n_pixels)
    k2 = _head_counts(highs, n_pixels, complement=True)
    flat = _wide(probs).flatten(2)
    chooser = (probs if selector is None else selector).detach().flatten(2)
    zeros = flat.new_zeros(batch, heads)
    top_term, bottom_term, inactive_term = zeros, zeros, zeros
    k_top = max(k1 + k3)
    if k_top > 0:
        top = flat.gather(-1, chooser.topk(k_top, dim=-1).indices)  # (B, h, k_top), descending
        top_term = _prefix_mean(_log(top, eps), k1)
        inactive_term = _prefix_mean(_log1m(top, eps), k3)
    if max(k2) > 0:
        bottom = flat.gather(-1, chooser.topk(max(k2), dim=-1, largest=False).indices)
        bottom_term = _prefix_mean(_log1m(bottom, eps), k2)

    positive, negative = present & include, ~present & include
    per_head = _masked_sample_mean(2.0 * top_term + bottom_term, positive, present & counted)
    per_head = per_head + _masked_sample_mean(inactive_term, negative, ~present & counted)
    return -per_head.sum()


def _head_counts(
    ratios: Sequence[float | Fraction | None], n_pixels: int, complement: bool = False
) -> list[int]:
    """Eq. 5's ``k`` per head: :func:`ratio_count` of its ratio (``complement``: of 1 minus
    it), 0 for ``None``; once per distinct ratio, not per head."""
    known: dict[float | Fraction, int] = {}
    for ratio in ratios:
        if ratio is not None and ratio not in known:
            known[ratio] = ratio_count(1 - exact_decimal(ratio) if complement else ratio, n_pixels)
    return [0 if ratio is None else known[ratio] for ratio in ratios]


def _prefix_mean(values: Tensor, counts: list[int]) -> Tensor:
    """Mean of the first ``counts[c]`` entries along the last dim, per head ``c`` (0 if none)."""
    rank = torch.arange(values.shape[-1], device=values.device)
    if len(set(counts)) == 1:  # one count for every head: a Python int, nothing to copy
        keep = (rank < counts[0]).to(values.dtype)
        return (values * keep).sum(-1) / max(counts[0], 1)
    k = torch.tensor(counts, device=values.device)  # per-head ratios: host ints to the device
    keep = (rank[None, :] < k[:, None]).to(values.dtype)  # (h, k_max)
    return (values * keep).sum(-1) / k.clamp_min(1).to(values.dtype)


def discriminative_scorer_loss(
    disc_probs: Tensor,
    present: Tensor,
    *,
    include: Tensor | None = None,
    eps: float = LOG_EPS,
) -> Tensor:
    """Loss of the discriminative scoring module (paper 000, section III.B.1).

    The first and third terms of Eq. 5 with ``k1 = k3 = HW`` and without the factor 2: a
    class-balanced per-pixel cross-entropy pushing every pixel of head ``c`` up in samples
    containing ``c`` and down in the others. Its input is detached inside the LAP layer, so its
    gradient reaches only that module.

    ``disc_probs``: (B, h, H, W) probabilities in [0, 1] (values outside, NaN included, raise
    ``ValueError``); ``present``, ``include``, ``eps``: as :func:`concept_discrimination_loss`.
    """
    probs = check_probs(disc_probs, "disc_probs")
    present = check_present(present, probs)
    eps = check_eps(eps)
    include = check_include(include, probs)
    check_values([("disc_probs", probs, PROBABILITIES)])
    probs = _wide(probs)
    active = _log(probs, eps).mean(dim=(-2, -1))  # sum over all HW pixels / k1, k1 = HW
    inactive = _log1m(probs, eps).mean(dim=(-2, -1))
    per_head = _masked_sample_mean(active, present & include)
    per_head = per_head + _masked_sample_mean(inactive, ~present & include)
    return -per_head.sum()


# ----------------------------------------------------------------------------- expert


def _check_expert_inputs(
    probs: Tensor,
    region_masks: object,
    has_region: object,
    heads: object,
    options: dict[str, object],
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The inputs and ``options`` of :func:`expert_supervision_loss` (raise naming the bad
    one); returns the checked ``has_region``, ``heads`` and ``selector``. The tensors' values
    are checked last, with one device sync."""
    batch, n_heads = probs.shape[:2]
    has_region = check_bool_mask(has_region, (batch,), "has_region", "(B,)").to(probs.device)
    if heads is None:
        heads = torch.ones(n_heads, dtype=torch.bool, device=probs.device)
    heads = check_bool_mask(heads, (n_heads,), "heads", "(h,)").to(probs.device)
    check_fraction(options["positive_fraction"], "positive_fraction")
    check_choice(options["negative_pixels"], "negative_pixels", EXPERT_NEGATIVE_PIXELS)
    check_choice(options["positive_ranking"], "positive_ranking", EXPERT_POSITIVE_RANKINGS)
    check_choice(options["resize"], "resize (the mask resize mode)", MASK_RESIZE_MODES)
    selector = check_selector(options["selector"], probs)
    if options["positive_ranking"] == "selector" and selector is None:
        raise ValueError("positive_ranking='selector' needs a selector (the discriminative maps)")
    region_masks = _check_region_masks(region_masks, batch)
    check_values(
        [("probs", probs, PROBABILITIES), ("region_masks", region_masks, REGION_VALUES)],
        [("selector", selector)],
    )  # one sync
    return has_region, heads, selector


def _top_inside_term(
    flat: Tensor, source: Tensor, inside: Tensor, positive_fraction: float, eps: float
) -> Tensor:
    """(B, h): mean ``ln p`` over the ``ceil(fraction * |I_s|)`` inside cells ranked highest by
    ``source`` (term 1 of the expert loss)."""
    ranking = source.detach().masked_fill(~inside[:, None, :], -torch.inf)
    order = ranking.argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
    fraction = exact_decimal(positive_fraction)
    n_inside = inside.sum(-1)  # (B,)
    keep = (n_inside * fraction.numerator + fraction.denominator - 1) // fraction.denominator
    chosen = (inside[:, None, :] & (rank < keep[:, None, None])).to(flat.dtype)
    return (_log(flat, eps) * chosen).sum(-1) / keep[:, None].clamp_min(1).to(flat.dtype)


def _iars(iar: RatioArg, n_heads: int) -> list[float | None]:
    return [ia for _, _, ia in per_head_ratios(None, None, iar, n_heads)]


def _negative_term(
    flat: Tensor, selector: Tensor | None, k3: list[int], negative_pixels: str, eps: float
) -> Tensor:
    """(B, h): mean ``ln(1 - p)`` over the top-``k3`` cells of each head (chosen on
    ``selector`` when given), or over every cell (``negative_pixels="all"``)."""
    if negative_pixels == "all":
        return _log1m(flat, eps).mean(-1)
    if max(k3) > 0:
        chooser = (flat if selector is None else selector.flatten(2)).detach()
        top = flat.gather(-1, chooser.topk(max(k3), dim=-1).indices)
        return _prefix_mean(_log1m(top, eps), k3)
    return flat.new_zeros(flat.shape[0], flat.shape[1])


def expert_supervision_loss(
    probs: Tensor,
    region_masks: Tensor,
    present: Tensor,
    has_region: Tensor,
    *,
    iar: RatioArg = 0.1,
    heads: Tensor | None = None,
    positive_fraction: float = EXPERT_POSITIVE_FRACTION,
    negative_pixels: str = "iar",
    selector: Tensor | None = None,
    positive_ranking: str = "concepts",
    resize: str = "any",
    eps: float = LOG_EPS,
) -> Tensor:
    """Expert (full) supervision of the concept heads: BB-LAP, paper 000, Appendix A.

    "Similar to the weakly supervised concept discrimination loss": Eq. 5 with the experts'
    regions choosing the pixel sets of the samples that contain concept ``c``,

    ``-sum_c [ sum_{s in P_c} ( 2 sum_{T_s} ln p / (|T_s| N_c)
    + sum_{O_s} ln(1 - p) / (|O_s| N_c) )
    + sum_{s: c not in C_s} sum_{top k3} ln(1 - p) / (k3 N_c-bar) ]``

    - term 1, ``T_s``: "the half of the pixels with higher importance probability within the
      box": the ``ceil(positive_fraction * |I_s|)`` pixels inside the region ``I_s`` with the
      highest probability (``positive_fraction`` 0.5; 1 takes every inside pixel);
    - term 2, ``O_s``: "all the zones out of the bounding boxes", every pixel outside;
    - term 3: "used similarly as the weakly supervised loss": the top ``k3 = ceil(IAR HW)``
      pixels of the samples without the concept (``negative_pixels="all"``: every pixel).

    ``P_c``: the samples with ``present[:, c]`` and a region (:func:`annotated_samples`: flagged
    ``has_region``, mask not empty); ``N_c`` counts every sample
    containing ``c`` (Eq. 5), with a region or not (``InjectionLoss`` gives one without Eq. 5's
    terms over the same ``N_c``: each positive weighs the same, boxed or not); ``N_c-bar``
    counts the samples without it (term 3 needs no region). A term whose set is empty is 0.

    Args:
        probs: (B, h, H, W) concept probabilities, in [0, 1] (NaN refused).
        region_masks: (B, H0, W0) masks in [0, 1] (NaN refused) at image resolution (bool,
            int or float), resized to (H, W) with :func:`resize_region_masks`: ``resize="any"``
            puts a pixel inside when any image pixel of its cell is; ``"area"`` when at least
            half its cell is covered (else the cells it touches).
        present: bool (B, h), concepts present per sample.
        has_region: bool (B,), samples whose masks are annotations; present concepts of the
            others carry no loss here but count in ``N_c`` (``InjectionLoss``: Eq. 5).
        iar: IAR of term 3 (float in (0, 1], ``None`` = term off, or one per head).
        heads: optional bool (h,), heads supervised here (``InjectionLoss`` leaves out common
            heads, for which a class region is no target).
        positive_fraction: in (0, 1], the share of inside pixels term 1 takes.
        negative_pixels: ``"iar"`` (the paper: top-IAR pixels) or ``"all"``.
        selector: optional (B, h, H, W) finite maps (the discriminative scorer) choosing term
            3's top pixels, as Eq. 5's sets are chosen; ``None`` chooses on ``probs``.
        positive_ranking: ``"concepts"`` (the paper's "importance probability": term 1's pixels
            ranked by ``probs``) or ``"selector"`` (ranked by ``selector``).
    """
    probs, eps = check_probs(probs), check_eps(eps)
    present = check_present(present, probs)
    _, n_heads, height, width = probs.shape
    k3 = _head_counts(_iars(iar, n_heads), height * width)
    has_region, heads, selector = _check_expert_inputs(
        probs, region_masks, has_region, heads,
        {"positive_fraction": positive_fraction, "negative_pixels": negative_pixels,
         "selector": selector, "positive_ranking": positive_ranking, "resize": resize},
    )  # fmt: skip
    inside = _inside_cells(region_masks, (height, width), resize, probs.device)
    flat = _wide(probs).flatten(2)  # (B, h, HW)
    # term 1: the top ceil(fraction * |I_s|) inside pixels, ranked by the head's probability
    source = flat if positive_ranking == "concepts" else selector.flatten(2)
    term_top = _top_inside_term(flat, source, inside, positive_fraction, eps)
    # term 2: every pixel outside the regions
    outside = (~inside).to(flat.dtype)[:, None, :]
    term_out = (_log1m(flat, eps) * outside).sum(-1) / outside.sum(-1).clamp_min(1)
    # term 3: as Eq. 5, on the samples without the concept
    term_neg = _negative_term(flat, selector, k3, negative_pixels, eps)
    positive = present & _annotated_samples(region_masks, has_region)[:, None] & heads[None, :]
    negative = ~present & heads[None, :]
    per_head = _masked_sample_mean(2.0 * term_top + term_out, positive, present & heads[None, :])
    per_head = per_head + _masked_sample_mean(term_neg, negative)
    return -per_head.sum()


# ----------------------------------------------------------------------------- Eq. 6


def concordance_loss(
    maps_per_layer: Sequence[Tensor],
    threshold: float = 0.1,
    mode: str = "both",
    *,
    pool: str = "max",
    eps: float = LOG_EPS,
) -> Tensor:
    """Concordance loss between consecutive LAP layers, Eq. 6 of paper 000 (section III.B.2).

    ``JS(l, s, c) = 1 / (2 M) sum_{(i,j) selected} [ (p_l - p_{l+1}) ln(p_l / p_{l+1})
    + (p_{l+1} - p_l) ln((1 - p_l) / (1 - p_{l+1})) ]``

    Args:
        maps_per_layer: concept probabilities of the LAP layers in forward order, each
            (B, h, H_l, W_l) with the same B and h, in [0, 1] (values outside, NaN included,
            raise ``ValueError``; one device sync for all the maps).
        threshold: ``t``. ``mode="both"`` selects pixels with ``|p_l - p_{l+1}| > t``;
            ``mode="high_low"`` (the paper's option for a layer ``l`` whose receptive field is
            too small) selects only ``p_l - p_{l+1} > t``: high in ``l``, low in ``l + 1``.
        pool: both maps of a pair are brought to the coarser size ``(min H, min W)`` by adaptive
            ``"max"`` pooling (default: a coarse pixel covers a cell, and the concept is in the
            cell when it is in any of its fine pixels, as the paper's map-integration algorithm
            reads it) or ``"avg"`` pooling. A map already at that size is unchanged.
        eps: log clamp; the ``(p_l - p_{l+1})`` factors and the selection use the raw values.

    ``M`` is counted per (sample, head), the pixels the sum runs over; when it is 0 the pair
    contributes 0. Per layer pair: sum over heads (as Eq. 5), mean over samples; the result is
    the mean over the ``L - 1`` pairs (0 for a single layer).
    """
    if isinstance(maps_per_layer, Tensor) or not isinstance(maps_per_layer, Sequence):
        raise TypeError("maps_per_layer must be a list of (B, h, H, W) tensors, one per LAP layer")
    if len(maps_per_layer) == 0:
        raise ValueError("maps_per_layer is empty: give the maps of at least one LAP layer")
    check_threshold(threshold, "threshold")
    check_choice(mode, "mode", CONCORDANCE_MODES)
    check_choice(pool, "pool", CONCORDANCE_POOLS)
    eps = check_eps(eps)
    maps = [check_probs(m, f"maps_per_layer[{i}]") for i, m in enumerate(maps_per_layer)]
    for i, m in enumerate(maps[1:], start=1):
        if m.shape[:2] != maps[0].shape[:2]:
            raise ValueError(
                f"maps_per_layer[{i}] has (B, h) = {tuple(m.shape[:2])} but maps_per_layer[0] "
                f"has {tuple(maps[0].shape[:2])}; consecutive LAP layers must share batch and heads"
            )
    check_values([(f"maps_per_layer[{i}]", m, PROBABILITIES) for i, m in enumerate(maps)])
    maps = [_wide(m) for m in maps]
    if len(maps) == 1:
        return maps[0].sum() * 0.0
    pooling = F.adaptive_max_pool2d if pool == "max" else F.adaptive_avg_pool2d
    total = maps[0].new_zeros(())
    for earlier, later in itertools.pairwise(maps):  # loop over layer pairs only
        size = (min(earlier.shape[-2], later.shape[-2]), min(earlier.shape[-1], later.shape[-1]))
        p = earlier if tuple(earlier.shape[-2:]) == size else pooling(earlier, size)
        q = later if tuple(later.shape[-2:]) == size else pooling(later, size)
        diff = p - q
        selected = (diff.abs() if mode == "both" else diff) > threshold
        terms = diff * (_log(p, eps) - _log(q, eps) - _log1m(p, eps) + _log1m(q, eps))
        weights = selected.to(terms.dtype)
        count = weights.sum(dim=(-2, -1))
        js = (terms * weights).sum(dim=(-2, -1)) / (2 * count.clamp_min(1))  # (B, h)
        total = total + js.sum(1).mean(0)
    return total / (len(maps) - 1)


# ----------------------------------------------------------------------------- Appendix A


def suggest_ratios(area_fractions: Tensor | Sequence[float]) -> dict[str, float]:
    """MinAR/MaxAR/IAR from the sizes of the distinguishing parts (paper 000, Appendix A).

    ``area_fractions``: for each positive training sample, the fraction of the image its
    distinguishing part covers (e.g. ``masks.float().mean((1, 2))`` of the experts' boxes).
    The paper set MinAR to the median and MaxAR to the maximum of these, and IAR low enough
    not to fade; its three models used IAR between MinAR / 2 and MinAR, so IAR = MinAR here.
    """
    accepted = "a 1-D floating tensor or a list of numbers in (0, 1], one per positive sample"
    if hasattr(area_fractions, "__array__") and not isinstance(area_fractions, Tensor):
        # a numpy array (on the host): its dtype is checked
        area_fractions = torch.as_tensor(area_fractions, device="cpu")
    if isinstance(area_fractions, Tensor):
        if not area_fractions.dtype.is_floating_point:
            raise TypeError(f"area_fractions must be {accepted}, got dtype {area_fractions.dtype}")
        if area_fractions.dim() != 1:
            raise ValueError(
                f"area_fractions must be {accepted}, got shape {tuple(area_fractions.shape)}"
            )
        check_has_values(area_fractions, "area_fractions")
    elif isinstance(area_fractions, (str, bytes)) or not isinstance(area_fractions, Sequence):
        raise TypeError(f"area_fractions must be {accepted}, got {area_fractions!r:.80}")
    elif not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in area_fractions):
        raise TypeError(f"area_fractions must be {accepted}, got {list(area_fractions)!r:.80}")
    # read on the host: every value below leaves as a Python float (one copy, not a sync each)
    values = torch.as_tensor(area_fractions, dtype=torch.float64, device="cpu").flatten()
    if values.numel() == 0:
        raise ValueError("area_fractions is empty: give the region sizes of positive samples")
    if not bool(((values > 0) & (values <= 1)).all()):
        raise ValueError(
            "area_fractions must be in (0, 1] (fraction of the image covered by the region; "
            "leave out samples without a region)"
        )
    median = float(values.quantile(0.5))
    return {"min_ar": median, "max_ar": float(values.max()), "iar": median}
