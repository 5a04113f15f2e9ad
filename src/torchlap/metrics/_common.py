"""Shared pieces of the metrics: the result type, the direction registry, input checks,
deterministic top-k selection and batched model re-runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType

import torch
from torch import Tensor, nn

from torchlap._checks import (
    channel_mismatch,
    check_choice,
    check_fraction,
    check_has_values,
    check_int,
    check_model_inputs,
    check_number,
    check_positive_int,
    exact_decimal,
    is_int,
    is_integer_tensor,
    non_finite_samples,
)
from torchlap._hooks import kept_training_flags

__all__ = [
    "BINARIZE_NORMALIZATIONS",
    "KEY_STREAMS",
    "METRIC_DIRECTIONS",
    "MetricResult",
    "binarize_map",
    "count_for_fraction",
    "higher_is_better",
    "image_ids_of",
    "normalize_by_max",
    "share_of",
    "tie_keys",
    "tied_at_k",
    "top_k_mask",
]


@dataclass(frozen=True)
class MetricResult:
    """One metric value with its direction and the number of samples behind it.

    ``value`` is ``nan`` when no sample could be used (``n == 0``); :meth:`to_dict` then
    writes ``None`` so that the result stays valid JSON. ``per_sample`` (optional) holds the
    per-sample scores, ``nan`` for excluded samples.
    """

    value: float
    higher_is_better: bool
    n: int
    n_excluded: int = 0
    per_sample: Tensor | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, float | bool | int | None]:
        """JSON-ready summary: ``{"value", "higher_is_better", "n", "n_excluded"}``."""
        value = float(self.value)
        return {
            "value": value if math.isfinite(value) else None,
            "higher_is_better": bool(self.higher_is_better),
            "n": int(self.n),
            "n_excluded": int(self.n_excluded),
        }


# Direction of every metric family, as data (Quantus' ``score_direction`` idea). Keys are the
# metric names used by the functions of this package (prefixes such as "keep_10/" or
# "energy/" are stripped by :func:`higher_is_better`).
METRIC_DIRECTIONS: Mapping[str, bool] = MappingProxyType(
    {
        # model performance
        "accuracy": True,
        "sensitivity": True,
        "specificity": True,
        "balanced_accuracy": True,
        "top1_accuracy": True,
        "top2_accuracy": True,
        "top3_accuracy": True,
        "top4_accuracy": True,
        "top5_accuracy": True,
        # LAP as a standalone predictor (paper 000, section IV)
        "predictivity": True,
        "faithfulness": True,
        # localization
        "iou_threshold": True,
        "iou_topk": True,
        "ebpg": True,
        "miou_top20": True,
        "bbox_accuracy": True,
        "pointing_game": True,
        # keep-k% (paper 000, Fig. 4)
        "top1_vs_prediction": True,
        "top2_vs_prediction": True,
        "top3_vs_prediction": True,
        "top4_vs_prediction": True,
        "top5_vs_prediction": True,
        "top1_vs_label": True,
        "top2_vs_label": True,
        "top3_vs_label": True,
        "top4_vs_label": True,
        "top5_vs_label": True,
        # SISE (paper 003)
        "drop_pct": False,
        "increase_pct": True,
        # ante-hoc (paper 004)
        "inc_pct": True,
        "win_pct": True,
        # stability's change: recorded as lower-is-better (a stable map changes little), but
        # paper 004 reads a larger jump at noise 0.4-0.5 as more stable, so the report's
        # stability table marks no best (torchlap.report.tables.stability_table)
        "change_drop_pct": False,
        "change_inc_pct": False,
        # grid pointing game (Böhle et al. 2022; Rao et al. 2022)
        "grid_pointing_game": True,
    }
)


def higher_is_better(name: str) -> bool:
    """Direction of metric ``name`` (a key of :data:`METRIC_DIRECTIONS`, optionally with
    ``"group/"`` prefixes such as ``"keep_10/top1_vs_label"``)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a metric name (a str), got {name!r}")
    key = name.rsplit("/", 1)[-1]
    if key not in METRIC_DIRECTIONS:
        raise ValueError(f"unknown metric name {name!r}; known names: {sorted(METRIC_DIRECTIONS)}")
    return METRIC_DIRECTIONS[key]


def make_result(name: str, per_sample: Tensor, valid: Tensor | None = None) -> MetricResult:
    """Mean of ``per_sample`` over ``valid`` samples, with the direction of ``name``; excluded
    samples are stored as ``nan`` in the result's ``per_sample``."""
    per_sample = per_sample.detach().to(torch.float64)
    if valid is None:
        valid = torch.ones_like(per_sample, dtype=torch.bool)
    kept = per_sample[valid]  # its length is the count: no separate read of valid.sum()
    n = kept.numel()
    total = per_sample.numel()
    value = float(kept.mean()) if n > 0 else float("nan")
    stored = torch.where(valid, per_sample, torch.full_like(per_sample, float("nan")))
    direction = higher_is_better(name)
    return MetricResult(value, direction, n=n, n_excluded=total - n, per_sample=stored)


# ---------------------------------------------------------------------------------- checks


def check_maps(maps: object, name: str = "maps") -> Tensor:
    """``maps`` must be a finite floating tensor of shape (B, H, W)."""
    if not isinstance(maps, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, H, W), got {type(maps)}")
    if maps.dim() != 3:
        raise ValueError(
            f"{name} must have shape (B, H, W) (one map per image, at image resolution), "
            f"got shape {tuple(maps.shape)}"
        )
    if not maps.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {maps.dtype}")
    if maps.shape[0] == 0 or maps.shape[1] == 0 or maps.shape[2] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(maps.shape)}")
    check_has_values(maps, name)
    if not bool(torch.isfinite(maps).all()):
        raise ValueError(f"{name} contains nan or inf values; only finite maps are accepted")
    return maps


def check_masks(masks: object, maps: Tensor, name: str = "masks") -> Tensor:
    """``masks`` must be a bool tensor of the same shape and device as ``maps``."""
    if not isinstance(masks, Tensor):
        raise TypeError(f"{name} must be a bool torch.Tensor of shape (B, H, W), got {type(masks)}")
    if masks.dtype != torch.bool:
        raise TypeError(
            f"{name} must have dtype torch.bool (True inside the region); got {masks.dtype}. "
            "Convert with `masks > 0.5` or `masks.bool()`."
        )
    if masks.shape != maps.shape:
        raise ValueError(
            f"{name} must have the shape of the maps {tuple(maps.shape)}, got {tuple(masks.shape)}"
        )
    check_has_values(masks, name)
    if masks.device != maps.device:
        raise ValueError(f"{name} is on {masks.device} but the maps are on {maps.device}")
    return masks


def check_images(images: object, maps: Tensor | None = None) -> Tensor:
    """``images`` must be a finite, non-empty floating (B, C, H, W) tensor matching ``maps``
    (B, H, W)."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor of shape (B, C, H, W), got {type(images)}")
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(
            f"images must be a floating tensor of shape (B, C, H, W), got shape "
            f"{tuple(images.shape)} and dtype {images.dtype}"
        )
    if images.numel() == 0:
        raise ValueError(f"images must be non-empty, got shape {tuple(images.shape)}")
    check_has_values(images, "images")
    bad = non_finite_samples(images)
    if bad:
        raise ValueError(
            f"images {bad} (batch indices) hold NaN or infinite pixels; only finite images "
            "are accepted"
        )
    if maps is not None:
        expected = (images.shape[0], images.shape[2], images.shape[3])
        if tuple(maps.shape) != expected:
            raise ValueError(
                f"maps must have shape (B, H, W) = {expected} to match images "
                f"{tuple(images.shape)} (resize maps to image resolution first), "
                f"got {tuple(maps.shape)}"
            )
        if maps.device != images.device:
            raise ValueError(f"maps are on {maps.device} but images are on {images.device}")
    return images


def check_labels(labels: object, n: int, name: str = "labels") -> Tensor:
    """``labels`` must be an integer tensor of shape (n,)."""
    if not isinstance(labels, Tensor):
        raise TypeError(
            f"{name} must be an integer torch.Tensor of shape ({n},), got {type(labels)}"
        )
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(labels.shape)}")
    if not is_integer_tensor(labels):
        raise TypeError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    check_has_values(labels, name)
    if n > 0 and bool((labels < 0).any()):
        raise ValueError(f"{name} must be non-negative class indices")
    return labels.long()


def check_class_range(labels: Tensor, num_classes: int, name: str = "labels") -> None:
    """``labels`` (checked by :func:`check_labels`) must be < ``num_classes`` (the model's
    logits width, known after its first pass)."""
    if labels.numel() > 0 and int(labels.max()) >= num_classes:
        raise ValueError(
            f"{name} must be class indices in [0, {num_classes}) (num_classes = {num_classes}, "
            f"the model's logits width), got {int(labels.max())}"
        )


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` as an int >= 1 (the metrics' shared spelling of the check)."""
    return check_positive_int(batch_size, "batch_size")


def check_level_labels(labels: list[str], name: str, values: object) -> None:
    """Refuse repeated levels (``ks=(50, 50)``, ``fractions=(0.1, 0.1)``): their results
    would be written under one key, the later overwriting the earlier."""
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"{name} repeats the level(s) {', '.join(repeated)} (got {values!r}); give each "
            "level once (results are keyed by level)"
        )


# ------------------------------------------------------------------------- pixel selection


def count_for_fraction(fraction: float, n_pixels: int) -> int:
    """Number of pixels kept for a fraction: ``max(1, share_of(fraction, n_pixels))`` (at least
    one pixel, so that a selection is never empty). ``fraction``: a number in (0, 1] (not a
    bool); ``n_pixels``: an int >= 1 (a map has at least one pixel, and one is kept)."""
    fraction = check_fraction(fraction, "fraction")
    check_int(n_pixels, "n_pixels", minimum=1)
    return max(1, min(n_pixels, share_of(fraction, n_pixels)))


def share_of(fraction: float, n_pixels: int) -> int:
    """``floor(fraction * n_pixels + 1/2)`` (round half up) on the decimal ``fraction`` was
    written as: 70% of 45 pixels, 31.5, is 32 (the float 0.7 is below 7/10 and gave 31 before
    metrics revision 15). Unchecked: the callers check their arguments."""
    return math.floor(exact_decimal(fraction) * n_pixels + Fraction(1, 2))


TIE_BREAKS = ("index", "random")


def top_k_mask(
    maps: Tensor,
    k: int | Tensor,
    *,
    tie_break: str = "index",
    generator: torch.Generator | None = None,
    keys: Tensor | None = None,
) -> Tensor:
    """Boolean mask of the ``k`` highest-scored pixels of each map.

    ``k`` is an int >= 0 or a (B,) integer tensor of them (one count per sample; not a bool,
    not a float: a count is never rounded); exactly ``k`` pixels are selected per sample, a
    ``k`` above H*W selecting all of them. Ties at the k-th score:

    - ``tie_break="index"`` (default): the pixel with the lowest flat (row-major) index is
      selected first, so a constant map selects its first ``k`` pixels (its top rows);
    - ``tie_break="random"``: a uniformly random subset of the tied pixels (one random
      permutation per map drawn from ``generator``, on the maps' device), so that no region of
      the image is favoured; or, given ``keys`` (an integer or floating tensor ``(B, H*W)`` on
      the maps' device, e.g. :func:`tie_keys`), tied pixels are taken in ascending key order.

    One stable descending sort plus a rank comparison handles per-sample ``k`` without a
    Python loop over samples.
    """
    check_maps(maps)
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    batch = maps.shape[0]
    flat = maps.reshape(batch, -1)
    n_pixels = flat.shape[1]
    accepted = f"an int >= 0 or a ({batch},) integer tensor of counts >= 0"
    if isinstance(k, Tensor):
        if k.shape != (batch,):
            raise ValueError(f"k must be {accepted}, got shape {tuple(k.shape)}")
        if not is_integer_tensor(k):
            raise TypeError(f"k must be {accepted}, got dtype {k.dtype}")
        if bool((k < 0).any()):
            raise ValueError(f"k must be {accepted}, got {k.tolist()}")
        k_per_sample = k.to(device=maps.device, dtype=torch.long)
    elif is_int(k):
        check_int(k, "k", minimum=0)
        k_per_sample = torch.full((batch,), k, device=maps.device, dtype=torch.long)
    else:
        raise TypeError(f"k must be {accepted}, got {k!r}")
    k_per_sample = k_per_sample.clamp(max=n_pixels)
    _check_keys(keys, tie_break, flat)
    if tie_break == "random":
        # a random permutation first, then a stable sort: tied pixels keep the random order
        if keys is None:
            keys = torch.rand(flat.shape, generator=generator, device=flat.device)
        shuffle = keys.argsort(dim=1, stable=True)
        inner = torch.sort(flat.gather(1, shuffle), dim=1, descending=True, stable=True).indices
        order = shuffle.gather(1, inner)
    else:
        order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    positions = torch.arange(n_pixels, device=maps.device).expand(batch, -1)
    ranks = torch.empty_like(order).scatter_(1, order, positions)
    return (ranks < k_per_sample[:, None]).reshape(maps.shape)


def _check_keys(keys: object, tie_break: str, flat: Tensor) -> None:
    """``ValueError`` unless ``keys`` is None, or a real tensor ``(B, H*W)`` of ``flat``'s
    shape on its device given with ``tie_break="random"``."""
    if keys is None:
        return
    accepted = f"an integer or floating tensor of shape {tuple(flat.shape)} on {flat.device}"
    if tie_break != "random":
        raise ValueError('keys order tied pixels only with tie_break="random"')
    if not isinstance(keys, Tensor) or keys.dtype == torch.bool or keys.is_complex():
        got = keys.dtype if isinstance(keys, Tensor) else type(keys).__name__
        raise TypeError(f"keys must be {accepted}, got {got}")
    if keys.shape != flat.shape or keys.device != flat.device:
        raise ValueError(f"keys must be {accepted}, got {tuple(keys.shape)} on {keys.device}")


_MASK32 = 0xFFFFFFFF


def _mix32(values: Tensor) -> Tensor:
    """A 32-bit integer hash (two multiply-xorshift rounds) of int64 ``values`` in
    [0, 2**32), elementwise; every product stays below 2**59, so nothing overflows."""
    for _ in range(2):
        values = ((values >> 16) ^ values) * 0x45D9F3B & _MASK32
    return (values >> 16) ^ values


#: the ``stream`` of :func:`tie_keys` for each use of its keys: the same ``(seed, image id,
#: draw)`` gives independent keys in each stream (0: the tie-breaks of keep-k% and
#: Drop%/Increase%; 1 and 2: which pixels of an image :func:`salt_and_pepper
#: <torchlap.metrics.salt_and_pepper>` noises and which of them are salt)
KEY_STREAMS: Mapping[str, int] = MappingProxyType({"ties": 0, "noise_pixels": 1, "noise_salt": 2})


def tie_keys(
    seed: int,
    image_ids: Tensor,
    draws: Tensor,
    n_pixels: int,
    device: torch.device | str,
    *,
    stream: int = 0,
) -> Tensor:
    """Random keys ``(B, n_pixels)`` (int64 in [0, 2**62), on ``device``) that order the tied
    pixels of :func:`top_k_mask`'s random tie-break, a pure function of ``(seed, stream, image
    id, draw, pixel)``: an image gets the same draws whatever other images are scored with it,
    in which batch, after which levels k, on which device or process.

    A counter-based hash (no generator state), batched: ``image_ids`` and ``draws`` are
    integer tensors ``(B,)`` of values >= 0 (the image's id: :func:`image_ids_of`; the draw
    number). Two 32-bit hashes make a 62-bit key, so tied pixels practically never share a
    key (a shared key would fall back to pixel order). ``stream`` (an int >= 0, one per use:
    :data:`KEY_STREAMS`) makes keys independent of another use's for the same seed, image and
    draw; stream 0 (the tie-breaks) hashes as before streams existed.
    """
    stream = check_int(stream, "stream", minimum=0, maximum=_MASK32)
    image_ids = torch.as_tensor(image_ids, device=device).long()
    draws = torch.as_tensor(draws, device=device).long()
    base = _mix32(torch.full((), int(seed) & _MASK32, device=device, dtype=torch.long))
    if stream:
        base = _mix32((base ^ _mix32(torch.full_like(base, stream) + 0x3C6EF372)) & _MASK32)
    per_draw = _mix32((base + _mix32(draws & _MASK32)) & _MASK32)
    per_image = _mix32((per_draw ^ _mix32(image_ids & _MASK32)) & _MASK32)
    pixels = torch.arange(n_pixels, device=device, dtype=torch.long) * 0x9E3779B1
    high = _mix32((per_image[:, None] + pixels) & _MASK32)
    low = _mix32(high ^ 0x68E31DA4)
    return (high << 30) | (low >> 2)


def image_ids_of(image_ids: object, n: int, device: torch.device | str) -> Tensor:
    """``image_ids`` (each image's id, seeding its draws: :func:`tie_keys`; torchlap evaluate's:
    its index in the split before ``--max-images`` cut it) as int64 ``(n,)`` on ``device``;
    ``None``: each image's position ``0 .. n-1``. Accepted: ``None`` or an integer tensor
    ``(n,)`` of distinct values >= 0; else ``TypeError``/``ValueError``."""
    accepted = f"None or an integer tensor ({n},) of distinct image indices >= 0"
    if image_ids is None:
        return torch.arange(n, device=device)
    if not is_integer_tensor(image_ids):
        got = image_ids.dtype if isinstance(image_ids, Tensor) else type(image_ids).__name__
        raise TypeError(f"image_ids must be {accepted}, got {got}")
    if image_ids.shape != (n,):
        raise ValueError(f"image_ids must be {accepted}, got shape {tuple(image_ids.shape)}")
    ids = image_ids.detach().to(device=device, dtype=torch.long)
    if bool((ids < 0).any()) or ids.unique().numel() != n:  # one check per call
        raise ValueError(f"image_ids must be {accepted}, got {ids.tolist()}")
    return ids


def tied_at_k(maps: Tensor, k: int | Tensor) -> Tensor:
    """(B,) bool: the k-th highest score of the map is shared by a pixel outside the top ``k``,
    i.e. which ``k`` pixels are "the top k" depends on how ties are broken."""
    check_maps(maps)
    flat = maps.reshape(maps.shape[0], -1)
    k = torch.as_tensor(k, device=flat.device, dtype=torch.long).expand(flat.shape[0])
    k = k.clamp(1, flat.shape[1])
    kth = flat.sort(dim=1, descending=True).values.gather(1, (k - 1)[:, None])
    return ((flat >= kth).sum(dim=1) > k) & (k < flat.shape[1])


def normalize_by_max(maps: Tensor) -> Tensor:
    """Divide each map by its maximum (paper 000, section IV: "we normalized each importance
    map by its maximum value"). Maps whose maximum is not positive (all-zero or all-negative,
    i.e. no positive evidence) become all-zero instead of dividing by zero or flipping signs.
    """
    check_maps(maps)
    return _scale_by_max(maps)


def _scale_by_max(maps: Tensor) -> Tensor:
    peak = maps.amax(dim=(1, 2), keepdim=True)
    positive = peak > 0
    return torch.where(positive, maps / torch.where(positive, peak, torch.ones_like(peak)), 0.0)


#: how :func:`binarize_map` rescales a map before comparing it with the threshold
BINARIZE_NORMALIZATIONS = ("min_max", "max", "none")


def check_binarize_options(threshold: object, normalization: object, prefix: str = "") -> float:
    """``threshold`` as a float in [0, 1]; ``normalization`` one of
    :data:`BINARIZE_NORMALIZATIONS` (the messages name them ``{prefix}threshold`` and
    ``{prefix}normalization``)."""
    check_choice(normalization, f"{prefix}normalization", BINARIZE_NORMALIZATIONS)
    return check_number(
        threshold, f"{prefix}threshold", minimum=0.0, maximum=1.0, accepted="a number in [0, 1]"
    )


def binarize_map(maps: Tensor, threshold: float = 0.8, *, normalization: str = "min_max") -> Tensor:
    """The region of paper 004's *binarized energy map*: ``norm(map) >= threshold`` per map,
    (B, H, W) bool. The binarized energy map is ``image * binarize_map(map)``; the metric
    (:func:`torchlap.metrics.drop_inc_win`), ``AnteHocModel.interpretation_mask`` and the
    ``antehoc`` explainer all use this one definition.

    Paper 004 (section 3.3) binarizes "using a high threshold of 0.8 since it retains only
    highly important regions" and says neither how the map is scaled nor whether 0.8 itself
    is kept. ``normalization``:

    - ``"min_max"`` (default): ``(m - min m) / (max m - min m)`` per map, so 0.8 keeps the top
      fifth of the map's *range*, whatever its floor (a map whose values all lie in
      [0.9, 1] keeps its highest pixels, not all of them). A constant map has no region above
      its floor and keeps nothing (every pixel, at ``threshold=0``).
    - ``"max"``: ``m / max m`` (:func:`normalize_by_max`; all-zero when the maximum is not
      positive): with a high floor every pixel passes 0.8.
    - ``"none"``: the values as they are (maps already in [0, 1]).

    The comparison is ``>=`` ("reaches the threshold"): ``threshold=1`` keeps the maxima,
    ``threshold=0`` every pixel. ``threshold``: a number in [0, 1].
    """
    threshold = check_binarize_options(threshold, normalization)
    check_maps(maps)
    if normalization == "max":
        scaled = _scale_by_max(maps)
    elif normalization == "min_max":
        low = maps.amin(dim=(1, 2), keepdim=True)
        span = maps.amax(dim=(1, 2), keepdim=True) - low
        positive = span > 0
        scaled = torch.where(positive, (maps - low) / torch.where(positive, span, 1.0), 0.0)
    else:
        scaled = maps
    return scaled >= threshold


# ------------------------------------------------------------------------------ model runs


@contextmanager
def eval_mode(model: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Put an ``nn.Module`` in eval mode and restore every submodule's flag afterwards,
    also on error. Other callables are left untouched."""
    if not isinstance(model, nn.Module):
        yield
        return
    with kept_training_flags(model):
        model.eval()
        yield


def run_model(
    model: Callable[[Tensor], Tensor],
    n: int,
    make_inputs: Callable[[slice], Tensor],
    batch_size: int,
    what: str = "",
    image_of: Tensor | None = None,
    labels: Tensor | None = None,
) -> Tensor:
    """Logits of ``model`` on ``make_inputs(chunk)`` for consecutive chunks of ``batch_size``.

    Inputs are built per chunk so that perturbed copies of the whole data set never live in
    memory at once. The model runs in eval mode under ``torch.no_grad``. NaN or infinite logits
    raise a ValueError naming the images (``image_of[i]``: the image of input ``i``, default
    ``i``) and ``what`` the inputs were (e.g. "on copies keeping their top 10% pixels"): a score
    of them would be meaningless (NaN compares false, so a NaN row ranks any class first).
    ``labels``: class indices, checked against the logits' width after the first chunk."""
    check_batch_size(batch_size)
    if not callable(model):
        raise TypeError(f"model must be callable (images -> logits), got {type(model)}")
    outputs = []
    module = model if isinstance(model, nn.Module) else None
    with eval_mode(model), torch.no_grad():
        for start in range(0, n, batch_size):
            chunk = slice(start, min(n, start + batch_size))
            inputs = make_inputs(chunk)
            if module is not None and start == 0:
                check_model_inputs(module, inputs)  # device and dtype, before the first forward
            try:
                logits = model(inputs)
            except RuntimeError as error:
                message = None if module is None else channel_mismatch(module, inputs, error)
                if message is None:
                    raise
                raise ValueError(message) from error
            expected_rows = chunk.stop - chunk.start
            if (
                not isinstance(logits, Tensor)
                or logits.dim() != 2
                or logits.shape[0] != expected_rows
            ):
                shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits)
                raise ValueError(
                    f"model must return logits of shape (batch, num_classes), got {shape} "
                    f"for a batch of {expected_rows}"
                )
            if labels is not None and start == 0:
                check_class_range(labels, logits.shape[1])
            outputs.append(logits.detach())
    logits = torch.cat(outputs, dim=0)
    finite = torch.isfinite(logits).all(dim=1)
    if not bool(finite.all()):  # one sync after every chunk, not one per chunk
        rows = torch.nonzero(~finite).flatten()
        images = rows if image_of is None else image_of.to(rows.device)[rows]
        listed = sorted({int(i) for i in images})
        raise ValueError(
            f"the model returns NaN or infinite logits for images {listed} (batch "
            f"indices){' ' + what if what else ''}; a metric of such logits would be "
            "meaningless, so nothing was scored: check the model's weights (a diverged "
            "run?) and its input range"
        )
    return logits


def topk_hits(logits: Tensor, targets: Tensor, k: int) -> Tensor:
    """(B,) bool: is ``targets`` among the ``k`` largest logits of each row."""
    top = logits.topk(k, dim=1).indices
    return (top == targets[:, None]).any(dim=1)
