"""Faithfulness by perturbation: the model is re-run on images reduced to what a map calls
important.

- :func:`keep_top_k`: keep-k% of paper 000 (Fig. 4): keep the top k% pixels, replace the
  rest by a baseline, compare the new prediction with the original one and with the label.
- :func:`drop_increase`: Drop% / Increase% of paper 003 (SISE), top 15% pixels kept.
- :func:`drop_inc_win`: Drop(%) / Inc(%) / Win(%) of paper 004 (ante-hoc) on energy maps
  (image ⊙ map) and on binarized energy maps (image ⊙ [map >= 0.8], :func:`binarize_map`).
- :func:`stability`: paper 004's change in Drop(%) and Inc(%) under salt-and-pepper noise.

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
    check_seed,
    count_for_fraction,
    higher_is_better,
    make_result,
    normalize_by_max,
    run_model,
    tied_at_k,
    top_k_mask,
    topk_hits,
)

__all__ = [
    "BASELINES",
    "TIE_RULES",
    "baseline_images",
    "drop_inc_win",
    "drop_increase",
    "keep_top_k",
    "salt_and_pepper",
    "stability",
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
    ties: str,
    draws: int,
    generator: torch.Generator | None,
    batch_size: int,
) -> Tensor:
    """Logits ``(draws, B, num_classes)`` of the images reduced to their top ``count`` pixels.

    ``ties="index"``: one selection, ties by raster order. ``ties="random"``: ``draws``
    selections, each breaking ties at the k-th score by an independent uniformly random
    choice; only the samples whose selection depends on the tie-break (:func:`tied_at_k`) are
    re-run for draws 2.., the others repeat the first draw's logits (they are identical).
    """
    if ties == "index":
        keep = top_k_mask(maps, count).unsqueeze(1)
        logits = run_model(
            model, images.shape[0], lambda s: torch.where(keep[s], images[s], fill[s]), batch_size
        )
        return logits.unsqueeze(0)
    keep = top_k_mask(maps, count, tie_break="random", generator=generator).unsqueeze(1)
    first = run_model(
        model, images.shape[0], lambda s: torch.where(keep[s], images[s], fill[s]), batch_size
    )
    out = first.unsqueeze(0).repeat(draws, 1, 1)
    tied = torch.nonzero(tied_at_k(maps, count)).flatten()
    if draws > 1 and tied.numel() > 0:
        rows = tied.repeat(draws - 1)  # draw-major: draw d holds rows [d * T, (d + 1) * T)

        def drawn(chunk: slice) -> Tensor:  # masks made per chunk: no (draws * T, H, W) copy
            index = rows[chunk]
            keep = top_k_mask(maps[index], count, tie_break="random", generator=generator)
            return torch.where(keep.unsqueeze(1), images[index], fill[index])

        logits = run_model(model, rows.numel(), drawn, batch_size)
        out[1:, tied] = logits.view(draws - 1, tied.numel(), -1)
    return out


def _tie_generator(maps: Tensor, ties: str, seed: int) -> torch.Generator | None:
    if ties != "random":
        return None
    return torch.Generator(device=maps.device).manual_seed(seed)


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


def _check_ks(ks: Sequence[float]) -> tuple[float, ...]:
    values = _levels(ks, "ks", "percentages in (0, 100]")
    for k in values:
        check_number(
            k, "every k", minimum=0, maximum=100, strict_minimum=True,
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
    percents = _check_ks(ks)
    draws = _check_ties(ties, tie_draws, seed)
    fill = baseline_images(images, baseline, blur_sigma)
    n = images.shape[0]
    n_pixels = maps.shape[1] * maps.shape[2]

    original = run_model(model, n, lambda s: images[s], batch_size)
    num_classes = original.shape[1]
    if bool((labels >= num_classes).any()):
        raise ValueError(f"labels must be < num_classes = {num_classes} (the model's logits width)")
    top_t = min(5, num_classes)
    if top_t < 5:
        logger.info("only %d classes: reporting top-%d instead of top-5", num_classes, top_t)
    predictions = original.argmax(dim=1)

    results: dict[str, MetricResult] = {}
    generator = _tie_generator(maps, ties, seed)
    for k in percents:
        count = count_for_fraction(k / 100.0, n_pixels)
        logits = _kept_logits(
            model, images, fill, maps, count, ties, draws, generator, batch_size
        ).flatten(0, 1)
        for t in (1, top_t):
            for reference_name, reference in (("prediction", predictions), ("label", labels)):
                name = f"keep_{_k_label(k)}/top{t}_vs_{reference_name}"
                hits = topk_hits(logits, reference.repeat(draws), t).double()
                results[name] = make_result(name, hits.view(draws, n).mean(dim=0))
    return results


def _probabilities(logits: Tensor, targets: Tensor) -> Tensor:
    return logits.double().softmax(dim=1).gather(1, targets[:, None]).squeeze(1)


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
) -> dict[str, MetricResult]:
    """Drop% and Increase% of paper 003 (SISE; Chattopadhay et al. 2018, as modified by
    Ramaswamy et al. and Fu et al.).

    The top 15% pixels of each map are kept (the rest set to the baseline, 0 = pointwise
    multiplication by the binary mask T(I), as in the paper) and Ψ is the softmax
    probability of the target class:

    - ``drop_pct = 100 / K * Σ_i max(0, Ψ(I_i) - Ψ(I_i ⊙ T(I_i))) / Ψ(I_i)`` (lower is
      better). The paper's typeset formula lost the division by Ψ(I_i); we follow the
      cited definition of Chattopadhay et al. (relative drop).
    - ``increase_pct = 100 / K * Σ_i [Ψ(I_i ⊙ T(I_i)) > Ψ(I_i)]`` (higher is better), the
      share of images whose confidence increases.

    ``target="prediction"`` (default; SISE calls these model-truth metrics) uses the class
    the model predicts on the original image; ``target="label"`` uses ``labels``.
    Ties at the 15% boundary: ``ties``, ``tie_draws`` and ``seed`` as in :func:`keep_top_k`
    (per-sample values are the mean over the draws). ``fraction``: a number in (0, 1].
    """
    check_maps(maps)
    check_images(images, maps)
    check_batch_size(batch_size)
    draws = _check_ties(ties, tie_draws, seed)
    check_fraction(fraction, "fraction")
    check_choice(target, "target", _TARGETS)
    if target == "label":
        if labels is None:
            raise ValueError('target="label" needs labels')
        labels = check_labels(labels, images.shape[0])
    n = images.shape[0]
    fill = baseline_images(images, baseline, blur_sigma)
    count = count_for_fraction(fraction, maps.shape[1] * maps.shape[2])

    original = run_model(model, n, lambda s: images[s], batch_size)
    targets = original.argmax(dim=1) if target == "prediction" else labels
    if bool((targets >= original.shape[1]).any()):
        raise ValueError(f"labels must be < num_classes = {original.shape[1]}")
    generator = _tie_generator(maps, ties, seed)
    perturbed = _kept_logits(model, images, fill, maps, count, ties, draws, generator, batch_size)
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


def _check_drop_inc_win_options(
    normalize: object, binarize_threshold: object, binarize_normalization: object
) -> None:
    check_bool(normalize, "normalize")
    check_binarize_options(binarize_threshold, binarize_normalization, prefix="binarize_")


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
) -> dict[str, MetricResult]:
    """Drop(%), Inc(%) and Win(%) of paper 004 (ante-hoc interpretation maps, section 3.3).

    With I^p the probability of the ground-truth class on the image and E^p on the
    perturbed input: ``"energy"`` feeds the energy map ``image ⊙ map``; ``"binarized"``
    feeds the binarized energy map ``image ⊙ [norm(map) >= binarize_threshold]``
    (:func:`binarize_map`, the definition the ante-hoc model and explainer use).

    ``normalize=True`` (default): maps are first clipped at 0; the energy variant divides
    them by their per-image maximum (maps of different methods have arbitrary scales; the
    paper multiplies by the raw ante-hoc map), the binarized variant rescales them by
    ``binarize_normalization`` (``"min_max"``, default: 0.8 keeps the top fifth of each
    map's range, the paper's "only highly important regions", also for a map with a high
    floor; ``"max"``: divided by the maximum). ``normalize=False``: the maps must already lie
    in [0, 1] and are used as they are by both variants. ``normalize``: True or False;
    ``binarize_threshold``: a number in [0, 1].

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
    chosen = (variants,) if isinstance(variants, str) else tuple(variants)
    if not chosen or any(v not in _VARIANTS for v in chosen):
        raise ValueError(f"variants must be a non-empty subset of {_VARIANTS}, got {variants!r}")
    _check_drop_inc_win_options(normalize, binarize_threshold, binarize_normalization)
    unit = _unit_maps(maps, normalize)
    if "binarized" in chosen:
        region = binarize_map(
            maps.clamp_min(0) if normalize else maps,
            binarize_threshold,
            normalization=binarize_normalization if normalize else "none",
        )
    n = images.shape[0]
    original = run_model(model, n, lambda s: images[s], batch_size)
    if bool((labels >= original.shape[1]).any()):
        raise ValueError(f"labels must be < num_classes = {original.shape[1]}")
    p_image = _probabilities(original, labels)
    results: dict[str, MetricResult] = {}
    for variant in chosen:
        weights = (unit if variant == "energy" else region).unsqueeze(1).to(images.dtype)
        perturbed = run_model(model, n, lambda s, w=weights: images[s] * w[s], batch_size)
        results.update(
            _drop_inc_win_from_probs(p_image, _probabilities(perturbed, labels), f"{variant}/")
        )
    return results


def salt_and_pepper(
    images: Tensor,
    fraction: float,
    *,
    generator: torch.Generator | None = None,
    low: float | Tensor | None = None,
    high: float | Tensor | None = None,
) -> Tensor:
    """Salt-and-pepper noise on a fraction of pixels (paper 004, section 3.3: "the fraction
    of pixels affected by noise").

    Exactly ``floor(fraction * H * W + 0.5)`` pixels per image are drawn without
    replacement; each is set, in all channels, to ``high`` (salt) or ``low`` (pepper) with
    probability 1/2. ``low``/``high`` default to each image's per-channel minimum/maximum,
    so the noise stays in the value range of normalized inputs. Pass a seeded
    ``torch.Generator`` on the images' device for reproducibility.

    ``fraction``: a number in [0, 1]; ``low``/``high``: finite numbers or tensors
    broadcastable to (B, C, 1, 1) with ``low <= high`` (pepper is the dark value).
    """
    check_images(images)
    check_number(fraction, "fraction", minimum=0.0, maximum=1.0, accepted="a number in [0, 1]")
    for name, value in (("low", low), ("high", high)):
        if value is not None and not isinstance(value, Tensor):
            check_number(value, name)
    if generator is not None and generator.device != images.device:
        raise ValueError(f"generator is on {generator.device} but images are on {images.device}")
    low_values = images.amin(dim=(2, 3), keepdim=True) if low is None else low
    high_values = images.amax(dim=(2, 3), keepdim=True) if high is None else high
    low_t = torch.as_tensor(low_values, dtype=images.dtype, device=images.device)
    high_t = torch.as_tensor(high_values, dtype=images.dtype, device=images.device)
    if (low is not None or high is not None) and not bool(
        torch.isfinite(low_t).all() & torch.isfinite(high_t).all() & (low_t <= high_t).all()
    ):
        raise ValueError(
            "low and high must be finite with low <= high (the pepper and salt values; by "
            f"default each image's per-channel minimum and maximum), got low={low!r}, "
            f"high={high!r}"
        )
    batch, _, height, width = images.shape
    n_noisy = math.floor(fraction * height * width + 0.5)
    # the n_noisy largest of i.i.d. uniform draws are a uniform subset without replacement
    draws = torch.rand(batch, height, width, generator=generator, device=images.device)
    noisy = top_k_mask(draws, n_noisy).unsqueeze(1)
    salt = torch.rand(batch, 1, height, width, generator=generator, device=images.device) < 0.5
    noise = torch.where(salt, high_t, low_t).expand_as(images)
    return torch.where(noisy, noise, images)


def _explain_in_chunks(
    explain_fn: Callable[[Tensor, Tensor], Tensor], inputs: Tensor, labels: Tensor, batch_size: int
) -> Tensor:
    """``explain_fn`` on ``batch_size`` images at a time; the maps checked ``(B, H, W)``."""
    parts = []
    for start in range(0, inputs.shape[0], batch_size):
        chunk = slice(start, start + batch_size)
        parts.append(explain_fn(inputs[chunk], labels[chunk]).detach())
    out = torch.cat(parts, dim=0)
    expected = (inputs.shape[0], inputs.shape[2], inputs.shape[3])
    if tuple(out.shape) != expected:
        raise ValueError(
            f"explain_fn output must have shape (B, H, W) = {expected}, got {tuple(out.shape)}"
        )
    return check_maps(out, "explain_fn output")


def _check_fractions(fractions: object) -> tuple[float, ...]:
    levels = _levels(fractions, "fractions", "noise fractions in (0, 1]")
    for fraction in levels:
        check_fraction(fraction, "every element of fractions")
    check_level_labels([f"{f:g}" for f in levels], "fractions", fractions)
    return levels


def stability(
    model: Callable[[Tensor], Tensor],
    explain_fn: Callable[[Tensor, Tensor], Tensor],
    images: Tensor,
    labels: Tensor,
    *,
    fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
    variant: str = "energy",
    maps: Tensor | None = None,
    binarize_threshold: float = 0.8,
    normalize: bool = True,
    seed: int = 0,
    batch_size: int = 64,
    binarize_normalization: str = "min_max",
) -> dict[str, MetricResult]:
    """Stability of paper 004 (section 3.3, Table 5): change in Drop(%) (CD) and in Inc(%)
    (CI) when the inputs carry salt-and-pepper noise of a given fraction of pixels.

    For each fraction f, the images get :func:`salt_and_pepper` noise (seeded generator,
    one stream per fraction), ``explain_fn(noisy_images, labels) -> (B, H, W)`` recomputes
    the maps (called in chunks of ``batch_size``), and :func:`drop_inc_win` (``variant``,
    ``binarize_threshold``, ``normalize``, ``binarize_normalization``) runs on the noisy
    images and maps. ``CD = |Drop_noisy - Drop_clean|`` and
    ``CI = |Inc_noisy - Inc_clean|`` in percentage points; the paper does not say whether
    the change is signed, we report its magnitude. Smaller is marked better (a stable
    explanation changes little), though paper 004 also argues the change should grow with
    the noise fraction. Clean maps are ``maps`` if given, else ``explain_fn(images, labels)``.
    Keys: ``"noise_{f}/change_drop_pct"``, ``"noise_{f}/change_inc_pct"``; ``n`` is the
    number of images. ``fractions``: a fraction or distinct fractions in (0, 1]; ``seed``:
    an int in [0, 2**32 - 1]; every option is checked before the first model pass.
    """
    check_images(images, check_maps(maps) if maps is not None else None)
    labels = check_labels(labels, images.shape[0])
    check_batch_size(batch_size)
    check_choice(variant, "variant", _VARIANTS)
    if not callable(explain_fn):
        raise TypeError("explain_fn must be callable: (images, labels) -> maps (B, H, W)")
    levels = _check_fractions(fractions)
    check_seed(seed)
    _check_drop_inc_win_options(normalize, binarize_threshold, binarize_normalization)

    def explain(inputs: Tensor) -> Tensor:
        return _explain_in_chunks(explain_fn, inputs, labels, batch_size)

    def scores(inputs: Tensor, input_maps: Tensor) -> tuple[float, float]:
        result = drop_inc_win(
            model,
            inputs,
            input_maps,
            labels,
            variants=(variant,),
            binarize_threshold=binarize_threshold,
            normalize=normalize,
            batch_size=batch_size,
            binarize_normalization=binarize_normalization,
        )
        return result[f"{variant}/drop_pct"].value, result[f"{variant}/inc_pct"].value

    clean_maps = explain(images) if maps is None else maps
    clean_drop, clean_inc = scores(images, clean_maps)
    n = images.shape[0]
    results: dict[str, MetricResult] = {}
    for index, fraction in enumerate(levels):
        generator = torch.Generator(device=images.device).manual_seed(seed + index)
        noisy = salt_and_pepper(images, fraction, generator=generator)
        noisy_drop, noisy_inc = scores(noisy, explain(noisy))
        for key, change in (
            ("change_drop_pct", abs(noisy_drop - clean_drop)),
            ("change_inc_pct", abs(noisy_inc - clean_inc)),
        ):
            name = f"noise_{fraction:g}/{key}"
            value = float(change)
            results[name] = MetricResult(
                value=value,
                higher_is_better=higher_is_better(key),
                n=n if math.isfinite(value) else 0,
                n_excluded=0 if math.isfinite(value) else n,
            )
    return results
