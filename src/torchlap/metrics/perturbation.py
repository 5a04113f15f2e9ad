"""Faithfulness by perturbation: the model is re-run on images reduced to what a map calls
important.

- :func:`keep_top_k`: keep-k% of paper 000 (Fig. 4): keep the top k% pixels, replace the
  rest by a baseline, compare the new prediction with the original one and with the label.
- :func:`drop_increase`: Drop% / Increase% of paper 003 (SISE), top 15% pixels kept.
- :func:`drop_inc_win`: Drop(%) / Inc(%) / Win(%) of paper 004 (ante-hoc) on energy maps
  (image ⊙ map) and on binarized energy maps (image ⊙ [map >= 0.8], :func:`binarize_map`),
  in the model's input space when given ``to_input`` (paper 004 multiplies the CNN's input).
- :func:`~torchlap.metrics.noise_stability.stability`:
  paper 004's change in Drop(%) and Inc(%) under salt-and-pepper noise.

keep-k% and Drop%/Increase% replace removed pixels in image (pixel) space: the ``"zero"``
baseline is black in [0, 1] images whatever the model's input normalisation.

Model re-runs are batched in chunks of ``batch_size``; an ``nn.Module`` runs in eval mode
under ``torch.no_grad`` and gets its train/eval flags back afterwards, also on error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from torchlap._checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_number,
    check_positive_float,
    check_positive_int,
    check_seed,
    is_number,
)
from torchlap.metrics._common import (
    MetricResult,
    binarize_map,
    check_batch_size,
    check_binarize_options,
    check_images,
    check_labels,
    check_level_labels,
    check_maps,
    count_for_fraction,
    image_ids_of,
    make_result,
    normalize_by_max,
    run_model,
    tie_keys,
    tied_at_k,
    top_k_mask,
    topk_hits,
)

__all__ = [
    "BASELINES",
    "TIE_RULES",
    "baseline_images",
    "check_ks",
    "drop_inc_win",
    "drop_increase",
    "keep_top_k",
]

logger = logging.getLogger(__name__)

BASELINES = ("zero", "mean", "blur")
_VARIANTS = ("energy", "binarized")
_TARGETS = ("prediction", "label")
#: how the top-k selections of keep-k% and Drop%/Increase% break ties at the k-th score
TIE_RULES = ("random", "index")


def _check_ties(ties: object, tie_draws: object, seed: object) -> int:
    check_choice(ties, "ties", TIE_RULES)
    check_positive_int(tie_draws, "tie_draws")
    check_seed(seed)
    return tie_draws if ties == "random" else 1


def _kept_logits(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    fill: Tensor,
    maps: Tensor,
    count: int,
    draws: int,
    ids: _TieIds | None,
    batch_size: int,
) -> Tensor:
    """Logits ``(draws, B, num_classes)`` of the images reduced to their top ``count`` pixels.

    ``ids=None`` (``ties="index"``): one selection, ties by raster order. Else
    (``ties="random"``): ``draws`` selections, each breaking ties at the k-th score by an
    independent uniformly random choice; only the samples whose selection depends on the
    tie-break (:func:`tied_at_k`) are re-run for draws 2.., the others repeat the first draw's
    logits (they are identical). The draws are seeded per image (``ids``:
    :func:`~torchlap.metrics._common.tie_keys`).
    """
    if ids is None:
        keep = top_k_mask(maps, count).unsqueeze(1)
        logits = run_model(
            model,
            images.shape[0],
            lambda s: torch.where(keep[s], images[s], fill[s]),
            batch_size,
            what=f"on copies keeping only their top {count} pixels",
        )
        return logits.unsqueeze(0)
    first_keys = ids.keys(None, 0, maps)
    keep = top_k_mask(maps, count, tie_break="random", keys=first_keys).unsqueeze(1)
    first = run_model(
        model,
        images.shape[0],
        lambda s: torch.where(keep[s], images[s], fill[s]),
        batch_size,
        what=f"on copies keeping only their top {count} pixels",
    )
    out = first.unsqueeze(0).repeat(draws, 1, 1)
    tied = torch.nonzero(tied_at_k(maps, count)).flatten()
    if draws > 1 and tied.numel() > 0:
        rows = tied.repeat(draws - 1)  # draw-major: draw d holds rows [d * T, (d + 1) * T)
        draw_of = torch.arange(1, draws, device=rows.device).repeat_interleave(tied.numel())

        def drawn(chunk: slice) -> Tensor:  # masks made per chunk: no (draws * T, H, W) copy
            index = rows[chunk]
            keys = ids.keys(index, draw_of[chunk], maps)
            keep = top_k_mask(maps[index], count, tie_break="random", keys=keys)
            return torch.where(keep.unsqueeze(1), images[index], fill[index])

        what = f"on copies keeping only their top {count} pixels (ties drawn again)"
        logits = run_model(model, rows.numel(), drawn, batch_size, what=what, image_of=rows)
        out[1:, tied] = logits.view(draws - 1, tied.numel(), -1)
    return out


class _TieIds:
    """The seed and each image's id (its index in the split) that seed its random
    tie-breaks (:func:`~torchlap.metrics._common.tie_keys`)."""

    def __init__(self, seed: int, image_ids: Tensor) -> None:
        self.seed = seed
        self.image_ids = image_ids

    def keys(self, rows: Tensor | None, draw: int | Tensor, maps: Tensor) -> Tensor:
        """The keys ``(len(rows), H*W)`` of draw ``draw`` (an int, or a tensor of one per row)
        of the images ``rows`` (positions in ``maps``; ``None``: every image), on the maps'
        device (where the ids are)."""
        ids = self.image_ids if rows is None else self.image_ids[rows]
        if not isinstance(draw, Tensor):
            draw = torch.full(ids.shape, draw, dtype=torch.long, device=ids.device)
        n_pixels = maps.shape[1] * maps.shape[2]
        return tie_keys(self.seed, ids, draw, n_pixels, maps.device)


def _tie_ids(maps: Tensor, ties: str, seed: int, image_ids: object) -> _TieIds | None:
    """``_TieIds`` of ``image_ids`` (default: each image's position), checked
    (:func:`~torchlap.metrics._common.image_ids_of`); ``None`` for ``ties="index"``."""
    ids = image_ids_of(image_ids, maps.shape[0], maps.device)
    return None if ties != "random" else _TieIds(seed, ids)


def baseline_images(
    images: Tensor, baseline: str = "zero", blur_sigma: float | None = None
) -> Tensor:
    """The values that replace removed pixels.

    ``"zero"``: 0 (the papers' choice); ``"mean"``: each image's per-channel mean;
    ``"blur"``: the image blurred by a Gaussian of standard deviation ``blur_sigma`` pixels
    (default ``max(1, 0.05 * min(H, W))``), kernel ``2 * ceil(3 sigma) + 1`` clipped to the
    image, reflect padding (torchvision's ``gaussian_blur``). ``blur_sigma``: a finite number
    > 0 or None.
    """
    check_images(images)
    if blur_sigma is not None:  # checked whatever the baseline: a bad value is never ignored
        check_positive_float(blur_sigma, "blur_sigma")
    check_choice(baseline, "baseline", BASELINES)
    if baseline == "zero":
        return torch.zeros_like(images)
    if baseline == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    # imported here: torchvision's transforms cost a second at start-up, and the ante-hoc model
    # (torchlap.models) imports this package for binarize_map
    from torchvision.transforms.functional import gaussian_blur

    height, width = images.shape[2:]  # "blur"
    sigma = max(1.0, 0.05 * min(height, width)) if blur_sigma is None else float(blur_sigma)
    kernel = 2 * math.ceil(3 * sigma) + 1
    # reflect padding needs kernel // 2 < side; largest odd kernel allowed per side
    kernel_h = min(kernel, 2 * height - 1)
    kernel_w = min(kernel, 2 * width - 1)
    return gaussian_blur(images, [kernel_w, kernel_h], [sigma, sigma])


def check_ks(ks: Sequence[float]) -> tuple[float, ...]:
    """``ks`` of :func:`keep_top_k` as a tuple: a percentage or a non-empty sequence of distinct
    percentages in (0, 100] (never a bool or a string); ``ValueError``/``TypeError`` otherwise.
    """
    values = _levels(ks, "ks", "percentages in (0, 100]")
    for k in values:
        check_number(
            k, "every element of ks", minimum=0, maximum=100, strict_minimum=True,
            accepted="a percentage in (0, 100]",
        )  # fmt: skip
    check_level_labels([_k_label(k) for k in values], "ks", ks)
    return values


def _levels(levels: object, name: str, accepted: str) -> tuple:
    """A number or a non-empty sequence of them, as a tuple (not a string)."""
    if is_number(levels):
        return (levels,)
    message = f"{name} must be a number or a non-empty sequence of {accepted}, got {levels!r}"
    if isinstance(levels, (str, bytes)):
        raise TypeError(message)
    try:
        values = tuple(levels)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(message) from None
    if not values:
        raise ValueError(message)
    return values


def _k_label(k: float) -> str:
    return f"{k:g}"


def keep_top_k(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    ks: Sequence[float] = (10, 30, 50, 70, 90),
    baseline: str = "zero",
    batch_size: int = 64,
    *,
    blur_sigma: float | None = None,
    ties: str = "random",
    tie_draws: int = 4,
    seed: int = 0,
    image_ids: Tensor | None = None,
) -> dict[str, MetricResult]:
    """keep-k% faithfulness (paper 000, section IV and Fig. 4).

    For each k, the top k% pixels of each map are kept (``count_for_fraction(k / 100)``
    pixels), the others are set to the baseline (``"zero"`` as in the paper, ``"mean"`` or
    ``"blur"``, see :func:`baseline_images`), and the model is re-run. Ties at the k-th score
    (flat zero regions of ReLU maps, plateaus of upsampled coarse maps, hard 0/1 maps) have no
    order: ``ties="random"`` (default) breaks them uniformly at random, and a sample whose
    selection depends on the tie-break scores the mean of ``tie_draws`` seeded draws (``seed``),
    an unbiased estimate of its expectation over random tie-breaks (a nonlinear model has no
    closed form for it). ``ties="index"`` keeps the lowest flat index first (raster order: the
    top rows of a flat region), torchlap's rule before metrics revision 3.

    The draws are seeded per image: draw ``d`` of an image is a function of ``seed``, ``d`` and
    the image's id alone (:func:`~torchlap.metrics._common.tie_keys`), the same at every level
    k, so an image scores the same whatever other maps are scored with it (another method's, of
    other images) and in whichever batch. ``image_ids``: each image's id, its index in the
    split (default: its position in ``images``), given when scoring a subset of the split (the
    images explained again for another class) so that it gets the whole set's draws; ``None``
    or an integer tensor ``(B,)`` of distinct indices >= 0.

    Keys ``"keep_{k}/top1_vs_prediction"``, ``"keep_{k}/top5_vs_prediction"``
    (original prediction among the top-1/top-5 classes of the perturbed image) and
    ``"keep_{k}/top1_vs_label"``, ``"keep_{k}/top5_vs_label"`` (ground truth among them).
    With fewer than 5 classes the second pair uses top-t, t = num_classes (e.g. ``top2_...``)
    and the key says so; a log message records it.

    ``ks``: a percentage or a sequence of distinct percentages in (0, 100]; ``seed``: an int
    in [0, 2**32 - 1]; ``images`` and ``maps`` finite.
    """
    check_maps(maps)
    check_images(images, maps)
    labels = check_labels(labels, images.shape[0])
    check_batch_size(batch_size)
    percents = check_ks(ks)
    draws = _check_ties(ties, tie_draws, seed)
    ids = _tie_ids(maps, ties, seed, image_ids)
    fill = baseline_images(images, baseline, blur_sigma)
    n = images.shape[0]
    n_pixels = maps.shape[1] * maps.shape[2]

    original = run_model(model, n, lambda s: images[s], batch_size, labels=labels)
    num_classes = original.shape[1]
    top_t = min(5, num_classes)
    if top_t < 5:
        logger.info("only %d classes: reporting top-%d instead of top-5", num_classes, top_t)
    predictions = original.argmax(dim=1)

    results: dict[str, MetricResult] = {}
    for k in percents:
        count = count_for_fraction(k / 100.0, n_pixels)
        logits = _kept_logits(model, images, fill, maps, count, draws, ids, batch_size).flatten(
            0, 1
        )
        for t in (1, top_t):
            for reference_name, reference in (("prediction", predictions), ("label", labels)):
                name = f"keep_{_k_label(k)}/top{t}_vs_{reference_name}"
                hits = topk_hits(logits, reference.repeat(draws), t).double()
                results[name] = make_result(name, hits.view(draws, n).mean(dim=0))
    return results


def _probabilities(logits: Tensor, targets: Tensor) -> Tensor:
    """The target class's probability: the softmax, or the sigmoid of a single-output model's
    logit (the explainers' score; a softmax over one logit is always 1)."""
    logits = logits.double()
    probs = torch.sigmoid(logits) if logits.shape[1] == 1 else logits.softmax(dim=1)
    return probs.gather(1, targets[:, None]).squeeze(1)


def drop_increase(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    maps: Tensor,
    labels: Tensor | None = None,
    *,
    target: str = "prediction",
    fraction: float = 0.15,
    baseline: str = "zero",
    batch_size: int = 64,
    blur_sigma: float | None = None,
    ties: str = "random",
    tie_draws: int = 4,
    seed: int = 0,
    image_ids: Tensor | None = None,
) -> dict[str, MetricResult]:
    """Drop% and Increase% of paper 003 (SISE; Chattopadhay et al. 2018, as modified by
    Ramaswamy et al. and Fu et al.).

    The top 15% pixels of each map are kept (the rest set to the baseline, 0 = pointwise
    multiplication by the binary mask T(I), as in the paper) and Ψ is the softmax
    probability of the target class (the sigmoid of a single-output model's logit, as the
    explainers score it):

    - ``drop_pct = 100 / K * Σ_i max(0, Ψ(I_i) - Ψ(I_i ⊙ T(I_i))) / Ψ(I_i)`` (lower is
      better). The paper's typeset formula lost the division by Ψ(I_i); we follow the
      cited definition of Chattopadhay et al. (relative drop).
    - ``increase_pct = 100 / K * Σ_i [Ψ(I_i ⊙ T(I_i)) > Ψ(I_i)]`` (higher is better), the
      share of images whose confidence increases.

    ``target="prediction"`` (default; SISE calls these model-truth metrics) uses the class
    the model predicts on the original image; ``target="label"`` uses ``labels``.
    ``labels``, whenever given (also with ``target="prediction"``, which does not read them):
    an integer tensor (B,) of class indices in [0, num_classes). Ties at the 15% boundary:
    ``ties``, ``tie_draws``, ``seed`` and ``image_ids`` as in :func:`keep_top_k` (draws seeded
    per image; per-sample values are the mean over the draws). ``fraction``: a number in (0, 1].
    """
    check_maps(maps)
    check_images(images, maps)
    check_batch_size(batch_size)
    draws = _check_ties(ties, tie_draws, seed)
    ids = _tie_ids(maps, ties, seed, image_ids)
    check_fraction(fraction, "fraction")
    check_choice(target, "target", _TARGETS)
    if target == "label" and labels is None:
        raise ValueError('target="label" needs labels')
    if labels is not None:  # checked whenever given, even when target="prediction" ignores them
        labels = check_labels(labels, images.shape[0])
    n = images.shape[0]
    fill = baseline_images(images, baseline, blur_sigma)
    count = count_for_fraction(fraction, maps.shape[1] * maps.shape[2])

    original = run_model(model, n, lambda s: images[s], batch_size, labels=labels)
    targets = original.argmax(dim=1) if target == "prediction" else labels
    perturbed = _kept_logits(model, images, fill, maps, count, draws, ids, batch_size)
    p_original = _probabilities(original, targets).clamp_min(torch.finfo(torch.float64).tiny)
    p_perturbed = _probabilities(perturbed.flatten(0, 1), targets.repeat(draws)).view(draws, n)
    drop = ((p_original - p_perturbed).clamp_min(0) / p_original * 100).mean(dim=0)
    increase = (p_perturbed > p_original).double().mean(dim=0) * 100
    return {
        "drop_pct": make_result("drop_pct", drop),
        "increase_pct": make_result("increase_pct", increase),
    }


def _unit_maps(maps: Tensor, normalize: bool) -> Tensor:
    if normalize:
        return normalize_by_max(maps.clamp_min(0))
    if bool(((maps < 0) | (maps > 1)).any()):
        raise ValueError("with normalize=False the maps must already lie in [0, 1]")
    return maps


def _check_variants(variants: object) -> tuple[str, ...]:
    """``variants`` of :func:`drop_inc_win` as a tuple: one name or a non-empty sequence of
    them, each in ``_VARIANTS``."""
    accepted = f"a non-empty subset of {_VARIANTS}"
    if not isinstance(variants, (str, Sequence)):
        raise TypeError(f"variants must be {accepted}, got {type(variants).__name__}")
    chosen = (variants,) if isinstance(variants, str) else tuple(variants)
    if not chosen or any(v not in _VARIANTS for v in chosen):
        raise ValueError(f"variants must be {accepted}, got {variants!r}")
    return chosen


def _check_drop_inc_win_options(
    normalize: object, binarize_threshold: object, binarize_normalization: object, to_input: object
) -> None:
    check_bool(normalize, "normalize")
    check_binarize_options(binarize_threshold, binarize_normalization, prefix="binarize_")
    if to_input is not None and not callable(to_input):
        raise TypeError(
            "to_input must be None (the images are the model's input) or a callable "
            f"(images -> the model's input, e.g. its normalisation), got {type(to_input)}"
        )


def _input_maker(
    images: Tensor, to_input: Callable[[Tensor], Tensor] | None
) -> Callable[[slice], Tensor]:
    """The model's input of a chunk of ``images``: the images, or ``to_input`` of them (per
    chunk: no converted copy of the whole set), checked (B, C', H, W)."""
    if to_input is None:
        return lambda chunk: images[chunk]

    def converted(chunk: slice) -> Tensor:
        part = images[chunk]
        out = to_input(part)
        if (
            not isinstance(out, Tensor)
            or out.dim() != 4
            or out.shape[0] != part.shape[0]
            or out.shape[2:] != part.shape[2:]
        ):
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out)
            raise ValueError(
                f"to_input must return the model's input (B, C, H, W) = (B, C, "
                f"{part.shape[2]}, {part.shape[3]}) for images {tuple(part.shape)}, got {shape}"
            )
        return out

    return converted


def _drop_inc_win_from_probs(
    p_image: Tensor, p_map: Tensor, prefix: str
) -> dict[str, MetricResult]:
    tiny = torch.finfo(torch.float64).tiny
    dropped = p_map < p_image
    increased = p_map > p_image
    drop = (p_image - p_map) / p_image.clamp_min(tiny) * 100
    inc = (p_map - p_image) / p_map.clamp_min(tiny) * 100
    names = (f"{prefix}drop_pct", f"{prefix}inc_pct", f"{prefix}win_pct")
    return {
        names[0]: make_result(names[0], drop, dropped),
        names[1]: make_result(names[1], inc, increased),
        names[2]: make_result(names[2], increased.double() * 100),
    }


def drop_inc_win(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    variants: Sequence[str] = _VARIANTS,
    binarize_threshold: float = 0.8,
    normalize: bool = True,
    batch_size: int = 64,
    binarize_normalization: str = "min_max",
    to_input: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, MetricResult]:
    """Drop(%), Inc(%) and Win(%) of paper 004 (ante-hoc interpretation maps, section 3.3).

    With I^p the probability of the ground-truth class on the image and E^p on the
    perturbed input: ``"energy"`` feeds the energy map ``image ⊙ map``; ``"binarized"``
    feeds the binarized energy map ``image ⊙ [norm(map) >= binarize_threshold]``
    (:func:`binarize_map`, the definition the ante-hoc model and explainer use).

    ``to_input``: ``None`` (default): ``images`` are the model's input and are multiplied as
    they are. A callable (e.g. a model's normalisation): ``images`` are [0, 1] images, the
    model takes ``to_input(images)`` (B, C, H, W), and the energy maps are
    ``to_input(images) ⊙ map`` (paper 004: "the input to the CNN is the Hadamard product of
    the image and the generated interpretation map", as its training multiplies the
    normalised image): a removed pixel is 0 in the model's input space (the data's mean
    colour), not black. ``model`` then takes model-input tensors (e.g. a
    ``NormalizedClassifier``'s ``net``).

    ``normalize=True`` (default): maps are first clipped at 0; the energy variant divides
    them by their per-image maximum (maps of different methods have arbitrary scales; the
    paper multiplies by the raw ante-hoc map), the binarized variant rescales them by
    ``binarize_normalization`` (``"min_max"``, default: 0.8 keeps the top fifth of each
    map's range, the paper's "only highly important regions", also for a map with a high
    floor; ``"max"``: divided by the maximum). ``normalize=False``: maps in [0, 1], used as
    they are. ``binarize_threshold``: a number in [0, 1].

    - ``drop_pct = 100 / D * Σ_{E<I} (I^p - E^p) / I^p`` over the D samples whose
      probability drops (lower is better);
    - ``inc_pct = 100 / C * Σ_{E>I} (E^p - I^p) / E^p`` over the C samples whose
      probability increases (higher is better);
    - ``win_pct = 100 * C / K`` (higher is better).

    The paper's typeset formulas read ``(E - I) / E`` for Drop and ``(I - E) / I`` for Inc,
    which are negative on the very samples they average; we swap E and I consistently in
    both, which makes both positive and bounded by 100 as in its tables. ``n`` of drop/inc
    is D/C (samples without a drop/increase are counted as excluded); when D or C is 0 the
    value is ``nan`` (``None`` in JSON). Keys: ``"{variant}/drop_pct"`` etc.
    """
    check_maps(maps)
    check_images(images, maps)
    labels = check_labels(labels, images.shape[0])
    check_batch_size(batch_size)
    chosen = _check_variants(variants)
    _check_drop_inc_win_options(normalize, binarize_threshold, binarize_normalization, to_input)
    unit = _unit_maps(maps, normalize)
    if "binarized" in chosen:
        region = binarize_map(
            maps.clamp_min(0) if normalize else maps,
            binarize_threshold,
            normalization=binarize_normalization if normalize else "none",
        )
    n = images.shape[0]
    inputs = _input_maker(images, to_input)
    original = run_model(model, n, inputs, batch_size, labels=labels)
    p_image = _probabilities(original, labels)
    results: dict[str, MetricResult] = {}
    for variant in chosen:
        weights = (unit if variant == "energy" else region).unsqueeze(1)
        weighted = lambda s, w=weights: (x := inputs(s)) * w[s].to(x.dtype)  # noqa: E731
        what = f"on copies weighted by their {variant} maps"
        perturbed = run_model(model, n, weighted, batch_size, what=what)
        results.update(
            _drop_inc_win_from_probs(p_image, _probabilities(perturbed, labels), f"{variant}/")
        )
    return results
