"""Stability of paper 004 (section 3.3, Table 5): the change in Drop(%) and Inc(%) of
:func:`~torchlap.metrics.perturbation.drop_inc_win` when the inputs carry salt-and-pepper
noise (:func:`salt_and_pepper`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from torchlap._checks import (
    SEED_RANGE,
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_seed,
)
from torchlap.metrics._common import (
    KEY_STREAMS,
    MetricResult,
    check_batch_size,
    check_images,
    check_labels,
    check_level_labels,
    check_maps,
    higher_is_better,
    image_ids_of,
    share_of,
    tie_keys,
    top_k_mask,
)
from torchlap.metrics.perturbation import (
    _VARIANTS,
    _check_drop_inc_win_options,
    _levels,
    drop_inc_win,
)

__all__ = ["check_noise_fractions", "salt_and_pepper", "stability"]


def salt_and_pepper(
    images: Tensor,
    fraction: float,
    *,
    generator: torch.Generator | None = None,
    low: float | Tensor | None = None,
    high: float | Tensor | None = None,
    seed: int | None = None,
    image_ids: Tensor | None = None,
    level: int = 0,
) -> Tensor:
    """Salt-and-pepper noise on a fraction of pixels (paper 004, section 3.3: "the fraction
    of pixels affected by noise").

    Exactly ``n = floor(fraction * H * W + 0.5)`` pixels per image are noised, drawn without
    replacement; each is set, in all channels, to ``high`` (salt) or ``low`` (pepper) with
    probability 1/2. ``low``/``high`` default to 0 (black) and 1 (white), the usual pepper
    and salt of [0, 1] images, when every pixel lies in [0, 1]; for images outside [0, 1]
    (e.g. normalized inputs) to each image's per-channel minimum/maximum, so the noise stays
    in their value range.

    The draws, seeded per image (given ``seed`` or ``image_ids``): the noise of an image is a
    pure function of ``(seed, its id, level, pixel)``, the same whatever other images are
    noised with it and in which batch. With ``keys(stream) = tie_keys(seed, image_ids,
    [level] * B, H * W, stream=KEY_STREAMS[stream])`` (:func:`~torchlap.metrics._common.
    tie_keys`, pixels in row-major order), an image's noisy pixels are the ``n`` of lowest
    ``keys("noise_pixels")`` (a shared key, practically never: the lower flat index first),
    and a noisy pixel is salt where ``keys("noise_salt") >= 2**61`` (the top bit of the 62-bit
    key), pepper elsewhere. ``seed``: an int in [0, 2**32 - 1] (default 0 when only
    ``image_ids`` is given); ``image_ids``: each image's id (its index in the split), ``None``
    or an integer tensor ``(B,)`` of distinct values >= 0 (default: its position in
    ``images``); ``level``: an int in [0, 2**32 - 1], the noise level's index (another level
    draws independent noise).

    Without ``seed`` and ``image_ids``: the draws come from ``generator`` (a
    ``torch.Generator`` on the images' device; ``None``: torch's global generator), in one
    stream across the batch: ``n`` largest of ``B x H x W`` uniform draws per image, then a
    uniform draw below 1/2 per pixel for salt. ``generator`` cannot be given with ``seed`` or
    ``image_ids``.

    ``fraction``: a number in [0, 1]; ``low``/``high``: finite numbers or tensors
    broadcastable to (B, C, 1, 1) with ``low <= high`` (pepper is the dark value).
    """
    check_images(images)
    check_number(fraction, "fraction", minimum=0.0, maximum=1.0, accepted="a number in [0, 1]")
    per_image = _check_draws(images, generator, seed, image_ids, level)
    low_t, high_t = _noise_values(images, low, high)
    height, width = images.shape[2:]
    n_noisy = share_of(fraction, height * width)
    if per_image is None:
        noisy, salt = _generator_draws(images, n_noisy, generator)
    else:
        noisy, salt = _per_image_draws(images, n_noisy, *per_image)
    noise = torch.where(salt, high_t, low_t).expand_as(images)
    return torch.where(noisy, noise, images)


def _check_draws(
    images: Tensor, generator: object, seed: object, image_ids: object, level: object
) -> tuple[int, Tensor, int] | None:
    """The draw arguments of :func:`salt_and_pepper`, checked: ``(seed, image ids, level)``
    of the per-image draws, or ``None`` for the draws from ``generator``."""
    level = check_int(level, "level", minimum=0, maximum=SEED_RANGE[1])
    if seed is None and image_ids is None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {generator!r:.80}")
        if generator is not None and generator.device != images.device:
            raise ValueError(
                f"generator is on {generator.device} but images are on {images.device}"
            )
        if level != 0:
            raise ValueError(
                f"level (got {level!r}) seeds the per-image draws: give it with seed or image_ids"
            )
        return None
    if generator is not None:
        raise ValueError(
            "give generator (one stream across the batch) or seed/image_ids (draws seeded per "
            "image), not both"
        )
    seed = 0 if seed is None else check_seed(seed)
    return seed, image_ids_of(image_ids, images.shape[0], images.device), level


def _noise_values(
    images: Tensor, low: float | Tensor | None, high: float | Tensor | None
) -> tuple[Tensor, Tensor]:
    """The pepper and salt values of :func:`salt_and_pepper`, checked, on the images'
    device and dtype."""
    for name, value in (("low", low), ("high", high)):
        if value is not None and not isinstance(value, Tensor):
            check_number(value, name)
    low_values, high_values = low, high
    if low is None or high is None:
        unit = bool(((images >= 0) & (images <= 1)).all())
        if low is None:
            low_values = 0.0 if unit else images.amin(dim=(2, 3), keepdim=True)
        if high is None:
            high_values = 1.0 if unit else images.amax(dim=(2, 3), keepdim=True)
    low_t = torch.as_tensor(low_values, dtype=images.dtype, device=images.device)
    high_t = torch.as_tensor(high_values, dtype=images.dtype, device=images.device)
    if (low is not None or high is not None) and not bool(
        torch.isfinite(low_t).all() & torch.isfinite(high_t).all() & (low_t <= high_t).all()
    ):
        raise ValueError(
            "low and high must be finite with low <= high (the pepper and salt values; by "
            "default 0 and 1 for [0, 1] images, else each image's per-channel minimum and "
            f"maximum), got low={low!r}, "
            f"high={high!r}"
        )
    return low_t, high_t


def _generator_draws(
    images: Tensor, n_noisy: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """``(noisy, salt)`` masks ``(B, 1, H, W)`` drawn from ``generator`` across the batch."""
    batch, _, height, width = images.shape
    # the n_noisy largest of i.i.d. uniform draws are a uniform subset without replacement
    draws = torch.rand(batch, height, width, generator=generator, device=images.device)
    noisy = top_k_mask(draws, n_noisy).unsqueeze(1)
    salt = torch.rand(batch, 1, height, width, generator=generator, device=images.device) < 0.5
    return noisy, salt


def _per_image_draws(
    images: Tensor, n_noisy: int, seed: int, ids: Tensor, level: int
) -> tuple[Tensor, Tensor]:
    """``(noisy, salt)`` masks ``(B, 1, H, W)``, a function of (seed, image id, level, pixel)
    (:func:`salt_and_pepper`'s docstring)."""
    batch, _, height, width = images.shape
    levels = torch.full_like(ids, level)

    def keys(stream: str) -> Tensor:
        n_pixels, stream_id = height * width, KEY_STREAMS[stream]
        return tie_keys(seed, ids, levels, n_pixels, images.device, stream=stream_id)

    flat = torch.zeros(batch, height, width, device=images.device)  # every pixel tied: by key
    noisy = top_k_mask(flat, n_noisy, tie_break="random", keys=keys("noise_pixels"))
    salt = keys("noise_salt") >= 2**61
    return noisy.unsqueeze(1), salt.view(batch, 1, height, width)


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


def check_noise_fractions(fractions: object) -> tuple[float, ...]:
    """``fractions`` of :func:`stability` as a tuple: a noise fraction or a non-empty sequence of
    distinct fractions in (0, 1] (never a bool or a string); ``ValueError``/``TypeError``
    otherwise."""
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
    to_input: Callable[[Tensor], Tensor] | None = None,
    image_ids: Tensor | None = None,
) -> dict[str, MetricResult]:
    """Stability of paper 004 (section 3.3, Table 5): change in Drop(%) (CD) and in Inc(%)
    (CI) when the inputs carry salt-and-pepper noise of a given fraction of pixels.

    For the ``index``-th fraction f, the images get :func:`salt_and_pepper` noise seeded per
    image (``seed``, ``image_ids``, ``level=index``: an image's noisy copy depends on nothing
    else; its default values: 0 and 1 for [0, 1] images),
    ``explain_fn(noisy_images, labels) -> (B, H, W)`` recomputes the maps (called in chunks
    of ``batch_size``), and :func:`drop_inc_win` (``variant``, ``binarize_threshold``,
    ``normalize``, ``binarize_normalization``, ``to_input``) runs on the noisy images and
    maps: with ``to_input`` the noise is added to the [0, 1] images (what ``explain_fn``
    sees) and the energy maps are formed in the model's input space, ``model`` taking
    model-input tensors (see :func:`drop_inc_win`). ``CD = |Drop_noisy - Drop_clean|`` and
    ``CI = |Inc_noisy - Inc_clean|`` in percentage points; the paper does not say whether
    the change is signed, we report its magnitude. The change has no best direction in
    torchlap's tables: paper 004 reads a larger jump at the fractions 0.4-0.5, where the
    image is "noticeably distinct", as the more stable behaviour (its framework "had a higher
    change ... Hence, our framework is more stable"), while a small change at small
    fractions is what "similar explanations for similar inputs" asks. Clean maps are
    ``maps`` if given, else ``explain_fn(images, labels)``.
    Keys: ``"noise_{f}/change_drop_pct"``, ``"noise_{f}/change_inc_pct"``; ``n`` is the
    number of images. ``fractions``: a fraction or distinct fractions in (0, 1]; ``seed``:
    an int in [0, 2**32 - 1]; ``image_ids``: the images' ids, their indices in the split (a
    subset is noised as in the whole set; see :func:`salt_and_pepper`). Every option is
    checked before the first model pass.
    """
    check_images(images, check_maps(maps) if maps is not None else None)
    labels = check_labels(labels, images.shape[0])
    check_batch_size(batch_size)
    check_choice(variant, "variant", _VARIANTS)
    if not callable(explain_fn):
        raise TypeError("explain_fn must be callable: (images, labels) -> maps (B, H, W)")
    levels = check_noise_fractions(fractions)
    check_seed(seed)
    ids = image_ids_of(image_ids, images.shape[0], images.device)
    _check_drop_inc_win_options(normalize, binarize_threshold, binarize_normalization, to_input)

    def explain(inputs: Tensor) -> Tensor:
        return _explain_in_chunks(explain_fn, inputs, labels, batch_size)

    def scores(inputs: Tensor, input_maps: Tensor) -> tuple[float, float]:
        result = drop_inc_win(
            model, inputs, input_maps, labels, variants=(variant,),
            binarize_threshold=binarize_threshold, normalize=normalize, batch_size=batch_size,
            binarize_normalization=binarize_normalization, to_input=to_input,
        )  # fmt: skip
        return result[f"{variant}/drop_pct"].value, result[f"{variant}/inc_pct"].value

    clean_maps = explain(images) if maps is None else maps
    clean_drop, clean_inc = scores(images, clean_maps)
    n = images.shape[0]
    results: dict[str, MetricResult] = {}
    for index, fraction in enumerate(levels):
        # with to_input the images are [0, 1] by contract: black and white noise, not each
        # image's own range because of one value a rounding outside [0, 1]
        bounds = {"low": 0.0, "high": 1.0} if to_input is not None else {}
        noisy = salt_and_pepper(images, fraction, seed=seed, image_ids=ids, level=index, **bounds)
        noisy_drop, noisy_inc = scores(noisy, explain(noisy))
        for key, change in (
            ("change_drop_pct", abs(noisy_drop - clean_drop)),
            ("change_inc_pct", abs(noisy_inc - clean_inc)),
        ):
            results[f"noise_{fraction:g}/{key}"] = _change_result(key, float(change), n)
    return results


def _change_result(key: str, value: float, n: int) -> MetricResult:
    """A change of :func:`stability` over ``n`` images (``nan``: none counted)."""
    finite = math.isfinite(value)
    return MetricResult(
        value=value,
        higher_is_better=higher_is_better(key),
        n=n if finite else 0,
        n_excluded=0 if finite else n,
    )
