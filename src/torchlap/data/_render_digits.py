"""The ``digits`` renderer: scikit-learn's handwritten 8x8 digits on a cluttered canvas
(determinism: see ``_render``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import Tensor

from torchlap.data._base import check_split
from torchlap.data._render import (
    F64,
    Draws,
    GeneratedBatch,
    Patches,
    block_diagonal,
    grain,
    keep_inside,
    low_rank_canvas,
    per_image_uniforms,
    to_uint8,
    upsample_matrix,
)

DIGIT_CLASSES = tuple(str(d) for d in range(10))
DIGIT_SLOTS = 5


@lru_cache(maxsize=1)
def sklearn_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled 1797 handwritten digits: (N, 8, 8) float64 in [0, 1], (N,) labels."""
    from sklearn.datasets import load_digits  # shipped inside scikit-learn: no download

    digits = load_digits()
    return (
        torch.as_tensor(digits.images, dtype=F64) / 16.0,
        torch.as_tensor(digits.target, dtype=torch.int64),
    )


@lru_cache(maxsize=3)
def digit_pool(split: str) -> tuple[Tensor, Tensor]:
    """Handwritten samples a split may use: a (10, L) index table per digit and counts (10,).

    The samples are partitioned by their position in scikit-learn's order: position mod 10 in
    0..7 -> train, 8 -> val, 9 -> test; so no handwritten sample appears in two splits.
    """
    check_split(split)
    _, targets = sklearn_digits()
    position = torch.arange(targets.shape[0]) % 10
    allowed = {"train": position < 8, "val": position == 8, "test": position == 9}[split]
    rows = [torch.nonzero(allowed & (targets == d)).flatten() for d in range(10)]
    counts = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    table = torch.zeros(10, int(counts.max()), dtype=torch.int64)
    for digit, row in enumerate(rows):
        table[digit, : len(row)] = row
    return table, counts


def render_digits(
    indices: Sequence[int],
    image_size: int,
    seed: int,
    split: str = "train",
    include_targets: bool = True,
) -> GeneratedBatch:
    """Render ``digits`` images (label = index mod 10).

    One handwritten digit from the split's pool (see ``digit_pool``), upscaled to a height of
    0.35-0.55 of the image, plus two to four fragments (3x3 to 5x5-pixel windows of the 8x8
    source) of digits of other classes at the same scales, on a dark textured canvas. Ink is
    composited with ``max`` so crossing strokes do not add up. Image ``i`` depends on its
    split through the pool, so that a handwritten sample never crosses splits.
    """
    size = int(image_size)
    indices = list(indices)
    batch = len(indices)
    n_uniforms = DIGIT_SLOTS * 9 + 1 + 16 + 4 + 1
    draws = Draws(per_image_uniforms(0xD161, seed, indices, n_uniforms))
    labels = torch.tensor(indices, dtype=torch.int64) % 10

    obj = draws.take(DIGIT_SLOTS, 9)
    n_fragments = 2 + torch.floor(draws.take(1)[:, 0] * 3).to(torch.int64)
    slot = torch.arange(DIGIT_SLOTS)[None, :]
    is_target = (slot == 0).expand(batch, -1)
    keep = (slot <= n_fragments[:, None]) & (is_target.logical_not() | include_targets)
    source = _digit_sources(obj, labels, is_target, split) * keep[..., None, None]
    cells = torch.arange(8, dtype=F64)

    # upscaling: bilinear (triangle-kernel) weights with zero padding reach half a source
    # pixel beyond the 8x8 frame, so the footprint's half-size is 4.5 source pixels
    scale = size * (0.35 + 0.20 * obj[..., 6]) / 8.0  # canvas pixels per source pixel
    half = 4.5 * scale
    centre_x = keep_inside(obj[..., 7] * size, half, size)
    centre_y = keep_inside(obj[..., 8] * size, half, size)
    patch = min(size, math.ceil(2.0 * 4.5 * 0.55 / 8.0 * size) + 3)
    patches = Patches.around(centre_x, centre_y, patch, size)
    offsets = torch.arange(patch, dtype=F64) + 0.5
    source_x = (patches.x0[..., None] + offsets - centre_x[..., None]) / scale[..., None] + 3.5
    source_y = (patches.y0[..., None] + offsets - centre_y[..., None]) / scale[..., None] + 3.5
    weights_x = (1.0 - (source_x[..., None] - cells).abs()).clamp(min=0.0)  # (B, M, P, 8)
    weights_y = (1.0 - (source_y[..., None] - cells).abs()).clamp(min=0.0)
    ink = weights_y @ source @ weights_x.transpose(-1, -2)  # (B, M, P, P)

    alpha = torch.zeros(batch, size * size, dtype=F64)
    alpha = alpha.scatter_reduce(
        1, patches.flat.reshape(batch, -1), ink.reshape(batch, -1), reduce="amax"
    )
    g = draws.take(4)
    background = _dark_background(draws, g, size)
    alpha = alpha.reshape(batch, size, size)
    ink_level = 0.75 + 0.25 * g[:, 2, None, None]
    levels = (background + (ink_level - background) * alpha) * 255.0 + 0.5
    levels = levels + (255.0 * (0.02 + 0.04 * g[:, 3, None, None])) * grain(draws, 1, size)[:, 0]
    draws.check_used()

    support = (ink[:, :1] > 0) & keep[:, :1, None, None]  # slot 0 holds the digit
    boxes, nonempty = patches.boxes(support)
    return GeneratedBatch(
        images=to_uint8(levels)[:, None],
        labels=labels,
        boxes=boxes,
        box_valid=nonempty,
        masks=patches.union(support, size),
    )


def _digit_sources(obj: Tensor, labels: Tensor, is_target: Tensor, split: str) -> Tensor:
    """The 8x8 source (B, M, 8, 8) of every slot: slot 0 the whole digit of the image's class,
    the others a window (3x3 to 5x5) of a digit of another class, all from the split's pool."""
    pool, counts = digit_pool(split)
    sources, _ = sklearn_digits()
    other = (labels[:, None] + 1 + torch.floor(obj[..., 0] * 9).to(torch.int64)) % 10
    digit_class = torch.where(is_target, labels[:, None], other)
    pick = torch.floor(obj[..., 1] * counts[digit_class]).to(torch.int64)
    source = sources[pool[digit_class, pick]]  # (B, M, 8, 8)
    window_w = 3 + torch.floor(obj[..., 2] * 3)
    window_h = 3 + torch.floor(obj[..., 3] * 3)
    window_x = torch.floor(obj[..., 4] * (9 - window_w))
    window_y = torch.floor(obj[..., 5] * (9 - window_h))
    cells = torch.arange(8, dtype=F64)
    in_x = (cells >= window_x[..., None]) & (cells < (window_x + window_w)[..., None])
    in_y = (cells >= window_y[..., None]) & (cells < (window_y + window_h)[..., None])
    window = (in_y[..., :, None] & in_x[..., None, :]) | is_target[..., None, None]
    return source * window


def _dark_background(draws: Draws, g: Tensor, size: int) -> Tensor:
    """Dark textured canvas (B, size, size) float64 in [0, 1]: a level plus coarse noise."""
    factors = torch.cat([upsample_matrix(size, 4), torch.ones(size, 1, dtype=F64)], dim=-1)
    middle = block_diagonal(
        [
            (0.05 + 0.20 * g[:, 1, None, None]) * (draws.take(4, 4) - 0.5),
            (0.05 + 0.20 * g[:, 0])[:, None, None],
        ]
    )
    return low_rank_canvas(factors, middle, factors)
