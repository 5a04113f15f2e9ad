"""What the batched renderers of the built-in benchmarks share (the renderers themselves:
``_render_lesions``, ``_render_concepts``, ``_render_digits``).

Determinism. Image ``i`` is a pure function of ``(benchmark, seed, i, image_size)`` (for
``digits`` also of its split, see ``render_digits``). Each image gets its own
``torch.Generator`` (Mersenne Twister: the same stream on every platform) seeded with a 64-bit
hash of ``(benchmark, seed, i)``; it draws one fixed-length vector of uniforms, and everything
else is computed from those with batched tensor ops, then rounded to 8-bit levels:

* per-object geometry runs in float32 using only IEEE-754 correctly-rounded operations
  (add, sub, mul, div, sqrt, min/max, comparisons), which give the same bits on every CPU;
* anything that involves transcendental functions, matrix products or sums of several terms
  (smooth noise, rib pattern, compositing) runs in float64, where instruction-set dependent
  last-bit differences (~1e-16) cannot move a value across an 8-bit rounding boundary.

So the same seed gives the same bytes on any machine (a test pins checksums).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from torchlap.data._base import masks_to_tight_boxes

F32 = torch.float32
F64 = torch.float64
_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    """One step of SplitMix64 (Steele, Lea, Flood 2014): a bijective 64-bit integer mix."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def image_seed(salt: int, seed: int, index: int) -> int:
    """64-bit generator seed of image ``index`` of the benchmark ``salt`` with user ``seed``."""
    return _splitmix64(_splitmix64(_splitmix64(salt) ^ (seed & _MASK64)) ^ index)


def per_image_uniforms(salt: int, seed: int, indices: Sequence[int], n: int) -> Tensor:
    """(len(indices), n) float32 uniforms in [0, 1); row k depends only on ``indices[k]``.

    torch.Generator cannot be seeded per row of a batch, so this is the one Python loop of the
    renderers: it seeds and draws a short vector once per image; all rendering is batched.
    """
    out = torch.empty(len(indices), n, dtype=F32)
    generator = torch.Generator(device="cpu")
    for row, index in enumerate(indices):
        generator.manual_seed(image_seed(salt, seed, int(index)))
        torch.rand(n, generator=generator, dtype=F32, out=out[row])
    return out


class Draws:
    """Consecutive named blocks of the per-image uniforms: ``draws.take(5, 2)`` -> (B, 5, 2)."""

    def __init__(self, uniforms: Tensor) -> None:
        self.uniforms = uniforms.to(F64)
        self.offset = 0

    def take(self, *shape: int) -> Tensor:
        size = math.prod(shape)
        block = self.uniforms[:, self.offset : self.offset + size]
        if block.shape[1] != size:
            raise RuntimeError("internal error: the per-image uniform vector is too short")
        self.offset += size
        return block.reshape(self.uniforms.shape[0], *shape)

    def check_used(self) -> None:
        """Fail loudly if a renderer's uniform count and its draws disagree."""
        if self.offset != self.uniforms.shape[1]:
            raise RuntimeError(f"internal error: drew {self.offset} of {self.uniforms.shape[1]}")


@dataclass
class GeneratedBatch:
    """Rendered images and their ground truth.

    ``images`` (B, C, H, W) uint8; ``labels`` (B,) int64; ``boxes`` (B, T, 4) float32 XYXY
    pixel-edge boxes of up to T target objects, ``box_valid`` (B, T) bool; ``masks`` (B, H, W)
    bool footprint of the target (class-defining) objects, empty for a negative lesion image.
    """

    images: Tensor
    labels: Tensor
    boxes: Tensor
    box_valid: Tensor
    masks: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @staticmethod
    def cat(parts: Sequence[GeneratedBatch]) -> GeneratedBatch:
        """Concatenate along the image dimension."""
        return GeneratedBatch(
            images=torch.cat([p.images for p in parts]),
            labels=torch.cat([p.labels for p in parts]),
            boxes=torch.cat([p.boxes for p in parts]),
            box_valid=torch.cat([p.box_valid for p in parts]),
            masks=torch.cat([p.masks for p in parts]),
        )


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def to_uint8(levels: Tensor) -> Tensor:
    """8-bit image from float64 ``255 * value + 0.5`` (clipped; the cast floors = rounds)."""
    return levels.clamp_(0.0, 255.0).to(torch.uint8)


@lru_cache(maxsize=32)
def upsample_matrix(size: int, grid: int) -> Tensor:
    """(size, grid) float64 bilinear upsampling weights (pixel centres, edge values held).

    ``A @ G @ A.T`` upsamples a (grid, grid) field to (size, size) as two small matrix
    products, several times faster than ``F.interpolate`` on many tiny images.
    """
    source = ((torch.arange(size, dtype=F64) + 0.5) * grid / size - 0.5).clamp(0, grid - 1)
    return (1.0 - (source[:, None] - torch.arange(grid, dtype=F64)[None, :]).abs()).clamp(min=0)


def block_diagonal(blocks: Sequence[Tensor]) -> Tensor:
    """Batched block-diagonal matrix from (..., k_i, k_i) blocks with equal leading dims."""
    total = sum(block.shape[-1] for block in blocks)
    out = blocks[0].new_zeros(*blocks[0].shape[:-2], total, total)
    start = 0
    for block in blocks:
        k = block.shape[-1]
        out[..., start : start + k, start : start + k] = block
        start += k
    return out


def low_rank_canvas(left: Tensor, middle: Tensor, right: Tensor) -> Tensor:
    """``left @ middle @ right^T``: a whole background as one batched matrix product.

    Every background term here is low-rank in (row, column): a constant level, smooth noise
    ``A G A^T`` (A the upsampling matrix) and stripes ``sin(a y + b x) = sin(ay)cos(bx) +
    cos(ay)sin(bx)``; stacking their factors into ``left`` and
    ``right`` (..., size, K) and their weights into ``middle`` (..., K, K) costs one product
    instead of a dozen full-canvas passes.
    """
    return left @ middle @ right.transpose(-1, -2)


_GRAIN_OFFSETS = 1 << 16


@lru_cache(maxsize=8)
def _grain_windows(pixels: int, scale: float) -> Tensor:
    """All (65536, pixels) windows of a fixed uniform-noise strip in [-scale, scale), a view.

    The strip is drawn once from a constant seed, so it is the same on every machine.
    """
    generator = torch.Generator(device="cpu").manual_seed(0x6A41)
    strip = torch.rand(_GRAIN_OFFSETS + pixels, generator=generator, dtype=F32)
    return ((strip.to(F64) * 2.0 - 1.0) * scale).unfold(0, pixels, 1)


def grain(draws: Draws, channels: int, size: int, scale: float = 1.0) -> Tensor:
    """Per-pixel grain (B, C, size, size) in [-scale, scale): a window of a fixed noise strip
    at a random offset per image and channel.

    Drawing ``size**2`` fresh uniforms per image would dominate the generation time; one of
    65536 windows of an i.i.d. strip is as good as fresh grain for a CNN, and it is a copy.
    """
    offsets = torch.floor(draws.take(channels) * _GRAIN_OFFSETS).to(torch.int64)
    windows = _grain_windows(size * size, scale)[offsets]  # (B, C, size * size)
    return windows.reshape(offsets.shape[0], channels, size, size)


def cell_centres(draws: Draws, n_objects: int, size: int, grid: int = 3) -> tuple[Tensor, Tensor]:
    """Object centres in distinct cells of a ``grid x grid`` layout, jittered inside each cell.

    Distinct cells keep objects from piling up; the cells are a random permutation per image
    (argsort of uniforms), so positions are uniform over the canvas.
    """
    cells = torch.argsort(draws.take(grid * grid), dim=1)[:, :n_objects]
    jitter = draws.take(n_objects, 2)
    cell = size / grid
    centre_x = (cells % grid).to(F64) * cell + jitter[..., 0] * cell
    centre_y = (cells // grid).to(F64) * cell + jitter[..., 1] * cell
    return centre_x, centre_y


def keep_inside(centre: Tensor, extent: Tensor | float, size: int) -> Tensor:
    """Clamp centres so that a footprint of half-size ``extent`` stays inside the canvas."""
    extent = torch.as_tensor(extent, dtype=F64)
    return torch.minimum(torch.maximum(centre, extent + 0.5), size - extent - 0.5)


@dataclass
class Patches:
    """Square render windows (side P) around objects, fully inside the canvas.

    ``dx`` (B, M, 1, P), ``dy`` (B, M, P, 1): float32 offsets of pixel centres from the object
    centre; ``flat``: int64 (B, M, P*P) flat canvas index of each window pixel; ``x0``, ``y0``:
    window origins.
    Rendering each object only inside its window keeps the cost independent of object count.
    """

    dx: Tensor
    dy: Tensor
    flat: Tensor
    x0: Tensor
    y0: Tensor

    @staticmethod
    def around(centre_x: Tensor, centre_y: Tensor, patch: int, size: int) -> Patches:
        half = patch // 2
        x0 = (torch.floor(centre_x) - half).clamp(0, size - patch).to(torch.int64)
        y0 = (torch.floor(centre_y) - half).clamp(0, size - patch).to(torch.int64)
        offsets = torch.arange(patch, dtype=torch.int64)
        cols = x0[..., None, None] + offsets[None, None, None, :]  # (B, M, 1, P)
        rows = y0[..., None, None] + offsets[None, None, :, None]  # (B, M, P, 1)
        flat = (rows * size + cols).expand(*x0.shape, patch, patch).flatten(-2)
        # offsets from the centre, rounded once to float32 (the patch math is exact from here);
        # kept as (B, M, 1, P) and (B, M, P, 1) so that broadcasting does the expansion
        dx = (cols.to(F64) + 0.5 - centre_x[..., None, None]).to(F32)
        dy = (rows.to(F64) + 0.5 - centre_y[..., None, None]).to(F32)
        return Patches(dx, dy, flat, x0, y0)

    def boxes(self, support: Tensor) -> tuple[Tensor, Tensor]:
        """Tight canvas boxes (B, M, 4) of per-window footprints (B, M, P, P), non-empty flags."""
        boxes, nonempty = masks_to_tight_boxes(support)
        n = support.shape[1]  # the first n windows
        x0, y0 = self.x0[:, :n], self.y0[:, :n]
        origin = torch.stack([x0, y0, x0, y0], dim=-1).to(F32)
        return torch.where(nonempty[..., None], boxes + origin, boxes), nonempty

    def union(self, support: Tensor, size: int) -> Tensor:
        """Union of the first M' windows' footprints (B, M', P, P) as (B, size, size) bool."""
        batch, n = support.shape[:2]
        canvas = torch.zeros(batch, size * size, dtype=torch.uint8)
        canvas.scatter_reduce_(
            1,
            self.flat[:, :n].reshape(batch, -1),
            support.reshape(batch, -1).to(torch.uint8),
            reduce="amax",
        )
        return canvas.reshape(batch, size, size).bool()


def rotation(angle: Tensor) -> tuple[Tensor, Tensor]:
    """cos, sin of per-object angles, rounded to float32 and shaped (B, M, 1, 1)."""
    return torch.cos(angle).to(F32)[..., None, None], torch.sin(angle).to(F32)[..., None, None]


def f32(values: Tensor) -> Tensor:
    """Per-object parameters (B, M) as float32 (B, M, 1, 1) for broadcasting over windows."""
    return values.to(F32)[..., None, None]
