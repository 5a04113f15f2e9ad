"""How sure a metric's mean is: percentile bootstrap intervals over the evaluated images.

The papers report each metric as a mean over their test images, without an interval; torchlap's
verdicts rest on a few dozen images at most (the study's 16, of which 8 hold a lesion), where a
difference of a few IoU points can be chance. Two intervals, both over the images (the unit the
papers sample):

- :func:`bootstrap_interval`: the mean of one method's per-image scores;
- :func:`paired_difference`: the mean of the per-image differences between two methods scored
  on the same images (the question "is LAP above Grad-CAM?": the images' own difficulty, shared
  by both methods, cancels, so this interval is narrower than the two separate ones suggest).

Both are percentile bootstrap intervals (Efron and Tibshirani 1993, ch. 13): the images are
drawn with replacement ``resamples`` times, the mean of each draw computed, and the interval is
the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those means. The draws come from a
CPU generator seeded by ``seed``, so an interval is the same on every device and in every
process of a sharded evaluation. A ``nan`` per-image score is an image the metric excluded (the
convention of :class:`~torchlap.metrics.MetricResult`'s ``per_sample``). Written here rather
than taken from SciPy's ``scipy.stats.bootstrap``: that works on NumPy arrays (a copy to the
CPU of scores that live on the evaluation's device) and defaults to the BCa interval, whose
jackknife pass is one statistic per image; here the means of a chunk of draws are one gather on
the scores' device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from torchlap._checks import check_has_values, check_int, check_number, check_seed

__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "MAX_RESAMPLES",
    "bootstrap_interval",
    "paired_difference",
]

#: the interval's coverage and the number of draws of :func:`bootstrap_interval`
DEFAULT_LEVEL = 0.95
DEFAULT_RESAMPLES = 2000
#: the most draws: the percentiles' Monte-Carlo error is then far below any shown digit, and
#: ``torch.quantile`` takes at most 2**24 values
MAX_RESAMPLES = 1_000_000
#: at most this many drawn indices at once (a chunk of draws: 32 MB of int64)
_CHUNK_ELEMENTS = 1 << 22


def _check_settings(level: object, resamples: object, seed: object) -> None:
    check_number(
        level, "level", minimum=0.0, maximum=1.0, strict_minimum=True,
        accepted="a coverage in (0, 1), e.g. 0.95",
    )  # fmt: skip
    if float(level) == 1.0:  # type: ignore[arg-type]
        raise ValueError("level must be a coverage in (0, 1), e.g. 0.95, got 1.0")
    check_int(resamples, "resamples", minimum=1, maximum=MAX_RESAMPLES)
    check_seed(seed)


def _scores(values: object, name: str) -> Tensor:
    """``values`` as a 1-D float64 tensor; NaN (an excluded image) allowed, infinity not."""
    if not isinstance(values, Tensor):
        raise TypeError(
            f"{name} must be a 1-D float tensor of per-image scores, got {values!r:.80}"
        )
    if values.dim() != 1 or not values.is_floating_point():
        raise ValueError(
            f"{name} must be a 1-D float tensor of per-image scores (nan: an excluded image), "
            f"got shape {tuple(values.shape)} and dtype {values.dtype}"
        )
    values = check_has_values(values, name).detach().to(torch.float64)
    if bool(torch.isinf(values).any()):
        raise ValueError(
            f"{name} holds an infinite score; per-image scores are finite numbers, or nan for an "
            "excluded image"
        )
    return values


def _resampled_means(values: Tensor, resamples: int, seed: int) -> Tensor:
    """The means of ``resamples`` draws with replacement of ``values`` (n,), in draw order."""
    n = values.numel()
    generator = torch.Generator().manual_seed(seed)  # CPU: the same draws on every device
    rows = max(1, _CHUNK_ELEMENTS // n)
    means = []
    for start in range(0, resamples, rows):  # chunks of draws bound the index memory
        shape = (min(rows, resamples - start), n)
        index = torch.randint(n, shape, generator=generator, device="cpu")
        means.append(values[index.to(values.device)].mean(dim=1))
    return torch.cat(means)


def _interval(values: Tensor, level: float, resamples: int, seed: int) -> list[float] | None:
    """The percentile interval of the mean of ``values`` (all finite); None below 2 values."""
    if values.numel() < 2:
        return None  # one image: no spread to resample
    means = _resampled_means(values, resamples, seed)
    tail = (1.0 - level) / 2.0
    bounds = torch.quantile(means, torch.tensor([tail, 1.0 - tail], dtype=means.dtype,
                                                device=means.device))  # fmt: skip
    return [float(bound) for bound in bounds.tolist()]


def bootstrap_interval(
    values: Tensor,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> list[float] | None:
    """The percentile bootstrap interval ``[low, high]`` of the mean of ``values``' scores.

    ``values``: per-image scores (1-D float tensor, ``nan`` for an image the metric excluded);
    ``level``: the coverage in (0, 1); ``resamples``: draws of the images with replacement;
    ``seed``: the draws' seed (an int from 0 to 2**32 - 1). Returns ``None`` when fewer than two
    images were scored.
    """
    _check_settings(level, resamples, seed)
    scores = _scores(values, "values")
    return _interval(scores[~torch.isnan(scores)], float(level), resamples, seed)


def paired_difference(
    reference: Tensor,
    other: Tensor,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """The mean per-image difference ``reference - other`` and its bootstrap interval.

    ``reference`` and ``other``: the per-image scores of two methods on the same images, in the
    same order (1-D float tensors of one length, ``nan`` for an excluded image); only the images
    scored by both count. Returns ``{"difference": mean or None, "interval": [low, high] or
    None, "n": images scored by both}`` (``None``: no image, or for the interval fewer than two).
    ``level``, ``resamples`` and ``seed`` as in :func:`bootstrap_interval`.
    """
    _check_settings(level, resamples, seed)
    first, second = _scores(reference, "reference"), _scores(other, "other")
    second = second.to(first.device)
    if first.shape != second.shape:
        raise ValueError(
            f"reference and other must score the same images: got {first.numel()} and "
            f"{second.numel()} per-image scores"
        )
    both = ~(torch.isnan(first) | torch.isnan(second))
    differences = (first - second)[both]
    n = int(differences.numel())
    return {
        "difference": float(differences.mean()) if n else None,
        "interval": _interval(differences, float(level), resamples, seed),
        "n": n,
    }
