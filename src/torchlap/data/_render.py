"""Batched renderers of the built-in benchmarks (``lesions``, ``concepts``, ``digits``).

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

from torchlap.data._base import check_split, masks_to_tight_boxes

_F32 = torch.float32
_F64 = torch.float64
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
    out = torch.empty(len(indices), n, dtype=_F32)
    generator = torch.Generator(device="cpu")
    for row, index in enumerate(indices):
        generator.manual_seed(image_seed(salt, seed, int(index)))
        torch.rand(n, generator=generator, dtype=_F32, out=out[row])
    return out


class _Draws:
    """Consecutive named blocks of the per-image uniforms: ``draws.take(5, 2)`` -> (B, 5, 2)."""

    def __init__(self, uniforms: Tensor) -> None:
        self.uniforms = uniforms.to(_F64)
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


def _to_uint8(levels: Tensor) -> Tensor:
    """8-bit image from float64 ``255 * value + 0.5`` (clipped; the cast floors = rounds)."""
    return levels.clamp_(0.0, 255.0).to(torch.uint8)


@lru_cache(maxsize=32)
def _upsample_matrix(size: int, grid: int) -> Tensor:
    """(size, grid) float64 bilinear upsampling weights (pixel centres, edge values held).

    ``A @ G @ A.T`` upsamples a (grid, grid) field to (size, size) as two small matrix
    products, several times faster than ``F.interpolate`` on many tiny images.
    """
    source = ((torch.arange(size, dtype=_F64) + 0.5) * grid / size - 0.5).clamp(0, grid - 1)
    return (1.0 - (source[:, None] - torch.arange(grid, dtype=_F64)[None, :]).abs()).clamp(min=0)


def _block_diagonal(blocks: Sequence[Tensor]) -> Tensor:
    """Batched block-diagonal matrix from (..., k_i, k_i) blocks with equal leading dims."""
    total = sum(block.shape[-1] for block in blocks)
    out = blocks[0].new_zeros(*blocks[0].shape[:-2], total, total)
    start = 0
    for block in blocks:
        k = block.shape[-1]
        out[..., start : start + k, start : start + k] = block
        start += k
    return out


def _low_rank_canvas(left: Tensor, middle: Tensor, right: Tensor) -> Tensor:
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
    strip = torch.rand(_GRAIN_OFFSETS + pixels, generator=generator, dtype=_F32)
    return ((strip.to(_F64) * 2.0 - 1.0) * scale).unfold(0, pixels, 1)


def _grain(draws: _Draws, channels: int, size: int, scale: float = 1.0) -> Tensor:
    """Per-pixel grain (B, C, size, size) in [-scale, scale): a window of a fixed noise strip
    at a random offset per image and channel.

    Drawing ``size**2`` fresh uniforms per image would dominate the generation time; one of
    65536 windows of an i.i.d. strip is as good as fresh grain for a CNN, and it is a copy.
    """
    offsets = torch.floor(draws.take(channels) * _GRAIN_OFFSETS).to(torch.int64)
    windows = _grain_windows(size * size, scale)[offsets]  # (B, C, size * size)
    return windows.reshape(offsets.shape[0], channels, size, size)


def _cell_centres(draws: _Draws, n_objects: int, size: int, grid: int = 3) -> tuple[Tensor, Tensor]:
    """Object centres in distinct cells of a ``grid x grid`` layout, jittered inside each cell.

    Distinct cells keep objects from piling up; the cells are a random permutation per image
    (argsort of uniforms), so positions are uniform over the canvas.
    """
    cells = torch.argsort(draws.take(grid * grid), dim=1)[:, :n_objects]
    jitter = draws.take(n_objects, 2)
    cell = size / grid
    centre_x = (cells % grid).to(_F64) * cell + jitter[..., 0] * cell
    centre_y = (cells // grid).to(_F64) * cell + jitter[..., 1] * cell
    return centre_x, centre_y


def _keep_inside(centre: Tensor, extent: Tensor | float, size: int) -> Tensor:
    """Clamp centres so that a footprint of half-size ``extent`` stays inside the canvas."""
    extent = torch.as_tensor(extent, dtype=_F64)
    return torch.minimum(torch.maximum(centre, extent + 0.5), size - extent - 0.5)


@dataclass
class _Patches:
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
    def around(centre_x: Tensor, centre_y: Tensor, patch: int, size: int) -> _Patches:
        half = patch // 2
        x0 = (torch.floor(centre_x) - half).clamp(0, size - patch).to(torch.int64)
        y0 = (torch.floor(centre_y) - half).clamp(0, size - patch).to(torch.int64)
        offsets = torch.arange(patch, dtype=torch.int64)
        cols = x0[..., None, None] + offsets[None, None, None, :]  # (B, M, 1, P)
        rows = y0[..., None, None] + offsets[None, None, :, None]  # (B, M, P, 1)
        flat = (rows * size + cols).expand(*x0.shape, patch, patch).flatten(-2)
        # offsets from the centre, rounded once to float32 (the patch math is exact from here);
        # kept as (B, M, 1, P) and (B, M, P, 1) so that broadcasting does the expansion
        dx = (cols.to(_F64) + 0.5 - centre_x[..., None, None]).to(_F32)
        dy = (rows.to(_F64) + 0.5 - centre_y[..., None, None]).to(_F32)
        return _Patches(dx, dy, flat, x0, y0)

    def boxes(self, support: Tensor) -> tuple[Tensor, Tensor]:
        """Tight canvas boxes (B, M, 4) of per-window footprints (B, M, P, P), non-empty flags."""
        boxes, nonempty = masks_to_tight_boxes(support)
        n = support.shape[1]  # the first n windows
        x0, y0 = self.x0[:, :n], self.y0[:, :n]
        origin = torch.stack([x0, y0, x0, y0], dim=-1).to(_F32)
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


def _rotation(angle: Tensor) -> tuple[Tensor, Tensor]:
    """cos, sin of per-object angles, rounded to float32 and shaped (B, M, 1, 1)."""
    return torch.cos(angle).to(_F32)[..., None, None], torch.sin(angle).to(_F32)[..., None, None]


def _f32(values: Tensor) -> Tensor:
    """Per-object parameters (B, M) as float32 (B, M, 1, 1) for broadcasting over windows."""
    return values.to(_F32)[..., None, None]


# --------------------------------------------------------------------------------------------
# lesions: the RSNA-like binary task
# --------------------------------------------------------------------------------------------

LESION_CLASSES = ("negative", "positive")
LESION_ARRANGEMENTS = ("cluster", "loose_cluster", "loose_ring")  # cluster = lesion
LESION_SLOTS = 4  # objects per image, one per quadrant: 1-3 core slots plus 0-1 extra
LESION_MAX_TARGETS = 3
NODULES_MIN, NODULES_MAX = 7, 9  # nodules per object
NODULE_RADIUS = (1.5 / 64.0, 2.0 / 64.0)  # range of the nodule radius, as a fraction of the size
# centre distance of neighbouring nodules per arrangement, in nodule radii (> 2: no overlap)
NODULE_SPACING = (2.7, 4.2, 4.2)


@lru_cache(maxsize=1)
def _arrangement_templates() -> Tensor:
    """Nodule offsets (3 arrangements, NODULES_MAX - NODULES_MIN + 1 counts, NODULES_MAX, 2) in
    units of the arrangement's nodule spacing; unused entries are NaN.

    cluster and loose_cluster: the hexagonal-lattice points nearest the centre (a filled
    group); loose_ring: K points on a circle, neighbours one spacing apart (a hollow ring).
    """
    lattice = [(i + 0.5 * j, j * math.sqrt(3.0) / 2.0) for i in range(-4, 5) for j in range(-4, 5)]
    lattice.sort(key=lambda p: (round(p[0] ** 2 + p[1] ** 2, 6), math.atan2(p[1], p[0])))
    counts = range(NODULES_MIN, NODULES_MAX + 1)
    out = torch.full((3, len(counts), NODULES_MAX, 2), float("nan"), dtype=_F64)
    for row, k in enumerate(counts):
        cluster = torch.tensor(lattice[:k], dtype=_F64)
        out[0, row, :k] = cluster - cluster.mean(dim=0)
        out[1, row, :k] = out[0, row, :k]
        angles = 2.0 * math.pi * torch.arange(k, dtype=_F64) / k
        radius = 0.5 / math.sin(math.pi / k)  # chord between neighbours = 1
        out[2, row, :k] = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    return out


def render_lesions(
    indices: Sequence[int], image_size: int, seed: int, include_targets: bool = True
) -> GeneratedBatch:
    """Render ``lesions`` images (label = index mod 2; 1 = positive).

    Background: X-ray-like grayscale (level, two scales of smooth mottling, rib stripes,
    grain). Objects: ``a`` in {1, 2, 3} core slots plus ``b`` in {0, 1} extra distractors, one
    per image quadrant and confined to it, so objects never overlap. Every object is a group
    of K in {7, 8, 9} identical soft nodules (profile (1 - r^2)^2, radius 1.5-2 px at 64x64,
    one amplitude per object) that never overlap either. In a positive image the core objects
    are lesions: compact hexagonal clusters of nearly touching nodules, i.e. lumpy opacities
    (boxes 10-19 px at 64x64); in a negative one they are distractors: the same nodules
    loosely spaced, as a loose cluster or a loose ring; extra distractors are loose in both.

    Because all objects are translated copies of the same nodules, drawn from the same
    distributions in both classes, every global statistic (intensity histogram, contrast,
    gradient and edge counts) has the same distribution in both classes up to the rare
    overlaps between different objects: only the arrangement tells a lesion apart.
    ``include_targets=False`` renders the same images without the lesions (for tests).
    """
    size = int(image_size)
    indices = list(indices)
    batch = len(indices)
    n_uniforms = 4 + 2 * LESION_SLOTS + 5 * LESION_SLOTS + 2 + 16 + 64 + 8 + 1
    draws = _Draws(per_image_uniforms(0x1E5105, seed, indices, n_uniforms))

    labels = torch.tensor(indices, dtype=torch.int64) % 2
    quadrant = torch.argsort(draws.take(4), dim=1)  # slot k lives in quadrant quadrant[:, k]
    position = draws.take(LESION_SLOTS, 2)
    obj = draws.take(LESION_SLOTS, 5)
    counts = draws.take(2)
    n_core = 1 + torch.floor(counts[:, 0] * LESION_MAX_TARGETS).to(torch.int64)
    n_extra = torch.floor(counts[:, 1] * (LESION_SLOTS - LESION_MAX_TARGETS + 1)).to(torch.int64)
    slot = torch.arange(LESION_SLOTS)[None, :]
    active = slot < (n_core + n_extra)[:, None]
    is_lesion = active & labels.bool()[:, None] & (slot < n_core[:, None])
    arrangement = torch.where(is_lesion, 0, 1 + torch.floor(obj[..., 0] * 2).to(torch.int64))
    n_choices = NODULES_MAX - NODULES_MIN + 1
    count_row = torch.floor(obj[..., 1] * n_choices).to(torch.int64)
    low, high = NODULE_RADIUS
    nodule_radius = size * (low + (high - low) * obj[..., 2])
    amplitude = (0.14 + 0.14 * obj[..., 3]) * (active & (is_lesion.logical_not() | include_targets))
    angle = 2.0 * math.pi * obj[..., 4]

    # nodule centres: template offsets (in spacings) rotated, scaled, moved to the object centre,
    # which is placed so that the whole object stays inside its quadrant: objects never overlap
    template = _arrangement_templates()[arrangement, count_row]  # (B, M, K, 2)
    present = ~torch.isnan(template[..., 0])
    template = torch.nan_to_num(template)
    spacing = torch.tensor(NODULE_SPACING, dtype=_F64)[arrangement] * nodule_radius
    extent = template.norm(dim=-1).amax(dim=-1) * spacing + nodule_radius  # (B, M)
    half = size / 2.0
    room = (half - 2.0 * extent).clamp(min=0.0)
    centre_x = (quadrant % 2).to(_F64) * half + extent + position[..., 0] * room
    centre_y = (quadrant // 2).to(_F64) * half + extent + position[..., 1] * room
    cos, sin = torch.cos(angle)[..., None], torch.sin(angle)[..., None]
    rotated_x = template[..., 0] * cos - template[..., 1] * sin
    rotated_y = template[..., 0] * sin + template[..., 1] * cos
    nodule_x = centre_x[..., None] + spacing[..., None] * rotated_x
    nodule_y = centre_y[..., None] + spacing[..., None] * rotated_y

    n_nodules = LESION_SLOTS * NODULES_MAX
    patch = min(size, math.ceil(2.0 * NODULE_RADIUS[1] * size) + 3)
    patches = _Patches.around(
        nodule_x.reshape(batch, n_nodules), nodule_y.reshape(batch, n_nodules), patch, size
    )
    inv_radius = 1.0 / _f32(nodule_radius.repeat_interleave(NODULES_MAX, dim=1))
    u, v = patches.dx * inv_radius, patches.dy * inv_radius
    r2 = u * u + v * v
    bump = (1.0 - r2).clamp(min=0.0)  # soft nodule (1 - r^2)^2 with compact support r < 1
    strength = (amplitude[..., None] * present).reshape(batch, n_nodules)
    values = bump * bump * _f32(strength)
    objects = torch.zeros(batch, size * size, dtype=_F32)
    objects.scatter_add_(1, patches.flat.reshape(batch, -1), values.reshape(batch, -1))

    g = draws.take(8)
    levels = _xray_background(draws, g, size)  # 255 * value + 0.5
    levels = levels + objects.reshape(batch, size, size).to(_F64) * 255.0
    levels = levels + (255.0 * (0.01 + 0.03 * g[:, 7, None, None])) * _grain(draws, 1, size)[:, 0]
    draws.check_used()

    # lesions only ever occupy the first LESION_MAX_TARGETS slots
    n_target_nodules = LESION_MAX_TARGETS * NODULES_MAX
    target = (is_lesion[..., None] & present)[:, :LESION_MAX_TARGETS].reshape(batch, -1)
    support = (r2[:, :n_target_nodules] < 1.0) & target[..., None, None]
    nodule_boxes, nonempty = patches.boxes(support)  # (B, 3 * K, 4)
    nodule_boxes = nodule_boxes.reshape(batch, LESION_MAX_TARGETS, NODULES_MAX, 4)
    nonempty = nonempty.reshape(batch, LESION_MAX_TARGETS, NODULES_MAX)
    big = torch.tensor(float(size), dtype=_F32)
    x_min = torch.where(nonempty, nodule_boxes[..., 0], big).amin(dim=-1)
    y_min = torch.where(nonempty, nodule_boxes[..., 1], big).amin(dim=-1)
    x_max = torch.where(nonempty, nodule_boxes[..., 2], 0.0).amax(dim=-1)
    y_max = torch.where(nonempty, nodule_boxes[..., 3], 0.0).amax(dim=-1)
    box_valid = nonempty.any(dim=-1)
    boxes = torch.stack([x_min, y_min, x_max, y_max], dim=-1) * box_valid[..., None]
    return GeneratedBatch(
        images=_to_uint8(levels)[:, None],
        labels=labels,
        boxes=boxes,
        box_valid=box_valid,
        masks=patches.union(support, size),
    )


def _xray_background(draws: _Draws, g: Tensor, size: int) -> Tensor:
    """X-ray-like grayscale background (B, size, size) float64, as ``255 * value + 0.5``.

    value = level + coarse and medium smooth mottling + rib stripes, all stationary over the
    image so that where an object sits does not change the global statistics.
    """
    batch = g.shape[0]
    coords = (torch.arange(size, dtype=_F64) + 0.5) / size
    coarse, medium = _upsample_matrix(size, 4), _upsample_matrix(size, 8)
    # rib stripes sin(w (y cos(tilt) + x sin(tilt)) + phase) = sin(ay)cos(bx) + cos(ay)sin(bx)
    tilt = (g[:, 1, None] - 0.5) * 0.6
    omega = 2.0 * math.pi * (3.0 + 3.0 * g[:, 2, None])
    along_y = omega * torch.cos(tilt) * coords[None, :] + 2.0 * math.pi * g[:, 3, None]
    along_x = omega * torch.sin(tilt) * coords[None, :]
    ones = torch.ones(batch, size, 1, dtype=_F64)
    left = torch.cat(
        [
            coarse.expand(batch, -1, -1),
            medium.expand(batch, -1, -1),
            torch.stack([torch.sin(along_y), torch.cos(along_y)], dim=-1),
            ones,
        ],
        dim=-1,
    )
    right = torch.cat(
        [
            coarse.expand(batch, -1, -1),
            medium.expand(batch, -1, -1),
            torch.stack([torch.cos(along_x), torch.sin(along_x)], dim=-1),
            ones,
        ],
        dim=-1,
    )
    middle = _block_diagonal(
        [
            (0.15 + 0.35 * g[:, 4])[:, None, None] * (draws.take(4, 4) - 0.5),
            (0.04 + 0.12 * g[:, 5])[:, None, None] * (draws.take(8, 8) - 0.5),
            (0.05 * g[:, 6])[:, None, None] * torch.eye(2, dtype=_F64),
            (0.25 + 0.25 * g[:, 0])[:, None, None],  # the level
        ]
    )
    return _low_rank_canvas(left, middle * 255.0, right) + 0.5


# --------------------------------------------------------------------------------------------
# concepts: one class-defining (shape, colour) object per image among distractors
# --------------------------------------------------------------------------------------------

SHAPES = ("square", "diamond", "triangle", "cross", "disk", "ring")
# (colour name, RGB, shape index); colour names sorted so that label k <-> sorted class name k
CONCEPT_KINDS: tuple[tuple[str, tuple[float, float, float], int], ...] = (
    ("blue", (0.15, 0.30, 0.95), 0),
    ("cyan", (0.10, 0.85, 0.90), 1),
    ("green", (0.15, 0.75, 0.15), 2),
    ("magenta", (0.90, 0.20, 0.85), 3),
    ("red", (0.90, 0.15, 0.10), 4),
    ("yellow", (0.95, 0.90, 0.15), 5),
)
_NEUTRAL_COLOURS = ((0.95, 0.95, 0.95), (0.55, 0.35, 0.20))
MAX_CONCEPT_CLASSES = len(CONCEPT_KINDS)


def concept_class_names(n_classes: int) -> list[str]:
    """Class names of ``concepts`` (e.g. ``blue_square``), sorted = label order."""
    return [f"{name}_{SHAPES[shape]}" for name, _, shape in CONCEPT_KINDS[:n_classes]]


def _shape_sdf(shape_id: int, u: Tensor, v: Tensor) -> Tensor:
    """Approximate signed distance of one of the six shapes, in object radii (float32, exact
    ops). All shapes fit in the unit disk except the square's corners (0.8 sqrt(2) < 1.14)."""
    name = SHAPES[shape_id]
    if name in ("disk", "ring"):
        r = torch.sqrt(u * u + v * v)
        return r - 1.0 if name == "disk" else (r - 0.72).abs() - 0.28
    au, av = u.abs(), v.abs()
    if name == "square":
        return torch.maximum(au, av) - 0.8
    if name == "diamond":
        return (au + av - 1.0) * (1.0 / math.sqrt(2.0))
    if name == "cross":
        return torch.minimum(torch.maximum(au - 0.3, av - 1.0), torch.maximum(av - 0.3, au - 1.0))
    s3 = math.sqrt(3.0) / 2.0  # triangle: three half-planes at inradius 0.5
    return torch.maximum(torch.maximum(-v, s3 * u + 0.5 * v), 0.5 * v - s3 * u) - 0.5


def _shapes_sdf(shape: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Signed distances (B, M, P, P) for per-object shape ids (B, M): each object's window is
    evaluated for its own shape only (a loop over the six shapes, not over samples)."""
    out = torch.empty_like(u)
    for shape_id in range(len(SHAPES)):
        selected = shape == shape_id
        if bool(selected.any()):
            out[selected] = _shape_sdf(shape_id, u[selected], v[selected])
    return out


def render_concepts(
    indices: Sequence[int],
    image_size: int,
    seed: int,
    n_classes: int = 4,
    include_targets: bool = True,
) -> GeneratedBatch:
    """Render ``concepts`` images (label = index mod n_classes).

    Class k is defined by one object of colour k *and* shape k (e.g. a blue square). Every
    image holds exactly one object of each of the ``n_classes`` colours, so colour content
    never reveals the class: the defining object, and for every other colour c a distractor of
    any shape but shape c (never a second defining object); plus one or two neutral-colour
    distractors of any shape. Sizes 0.14-0.30 of the image, random rotation, painter's order
    in random slot order, textured colour background.
    """
    if not 2 <= n_classes <= MAX_CONCEPT_CLASSES:
        raise ValueError(
            f"concepts supports n_classes from 2 to {MAX_CONCEPT_CLASSES}, got {n_classes}"
        )
    size = int(image_size)
    indices = list(indices)
    batch = len(indices)
    n_slots = n_classes + 2
    n_uniforms = 9 + 2 * n_slots + 5 * n_slots + 2 + 3 * 16 + 3 * 64 + 5 + 3
    draws = _Draws(per_image_uniforms(0xC0C397, seed, indices, n_uniforms))
    labels = torch.tensor(indices, dtype=torch.int64) % n_classes

    centre_x, centre_y = _cell_centres(draws, n_slots, size)
    obj = draws.take(n_slots, 5)
    extra = draws.take(2)
    n_neutral = 1 + torch.floor(extra[:, 0] * 2).to(torch.int64)
    shift = torch.floor(extra[:, 1] * n_classes).to(torch.int64)
    slot = torch.arange(n_slots)[None, :]
    colour_index = (slot + shift[:, None]) % n_classes  # used by the first n_classes slots
    is_coloured = slot < n_classes
    active = is_coloured | (slot < n_classes + n_neutral[:, None])
    is_target = is_coloured & (colour_index == labels[:, None])
    own_shape = torch.tensor([k[2] for k in CONCEPT_KINDS])[colour_index]
    other_shape = (own_shape + 1 + torch.floor(obj[..., 0] * 5).to(torch.int64)) % len(SHAPES)
    any_shape = torch.floor(obj[..., 0] * len(SHAPES)).to(torch.int64)
    shape = torch.where(is_target, own_shape, torch.where(is_coloured, other_shape, any_shape))
    palette = torch.tensor([k[1] for k in CONCEPT_KINDS], dtype=_F64)[colour_index]
    neutral = torch.tensor(_NEUTRAL_COLOURS, dtype=_F64)[torch.floor(obj[..., 1] * 2).long()]
    colour = torch.where(is_coloured[..., None], palette, neutral) * (0.85 + 0.15 * obj[..., 2:3])

    radius = size * (0.07 + 0.08 * obj[..., 3])
    extent = 1.14 * radius + 1.0
    centre_x = _keep_inside(centre_x, extent, size)
    centre_y = _keep_inside(centre_y, extent, size)
    patch = min(size, math.ceil(2.0 * (1.14 * 0.15 * size + 1.0)) + 2)
    patches = _Patches.around(centre_x, centre_y, patch, size)
    cos, sin = _rotation(2.0 * math.pi * obj[..., 4])
    radius32 = _f32(radius)
    u = (patches.dx * cos + patches.dy * sin) / radius32
    v = (patches.dy * cos - patches.dx * sin) / radius32
    alpha = (0.5 - _shapes_sdf(shape, u, v) * radius32).clamp(0.0, 1.0)
    keep = active & (is_target.logical_not() | include_targets)
    alpha = alpha * keep[..., None, None]

    # everything in 8-bit units plus the rounding offset: 255 * value + 0.5 (blending is affine,
    # so painting in these units equals painting in [0, 1] and converting after)
    canvas = _colour_background(draws, size).reshape(batch, 3, -1)
    colour = colour * 255.0 + 0.5
    alpha64 = alpha.to(_F64).reshape(batch, n_slots, 1, -1)
    for k in range(n_slots):  # painter's order over object slots (a loop over slots, not samples)
        index = patches.flat[:, k, None, :].expand(-1, 3, -1)
        under = torch.gather(canvas, 2, index)
        painted = under + (colour[:, k, :, None] - under) * alpha64[:, k]
        canvas.scatter_(2, index, painted)
    levels = canvas.reshape(batch, 3, size, size).add_(_grain(draws, 3, size, 255.0 * 0.03))
    draws.check_used()

    support = (alpha > 0) & is_target[..., None, None]
    boxes, nonempty = patches.boxes(support)  # at most one non-empty (target) window
    target_slot = (is_target & nonempty).to(_F32)[..., None]
    return GeneratedBatch(
        images=_to_uint8(levels),
        labels=labels,
        boxes=(boxes * target_slot).sum(dim=1, keepdim=True),
        box_valid=(nonempty & is_target).any(dim=1, keepdim=True),
        masks=patches.union(support, size),
    )


def _colour_background(draws: _Draws, size: int) -> Tensor:
    """Textured colour background (B, 3, size, size) float64 as ``255 * value + 0.5``: a base
    colour plus coarse and medium smooth colour noise (one low-rank product per channel)."""
    coarse_noise = draws.take(3, 4, 4) - 0.5
    medium_noise = draws.take(3, 8, 8) - 0.5
    g = draws.take(5)
    batch = g.shape[0]
    factors = torch.cat(
        [_upsample_matrix(size, 4), _upsample_matrix(size, 8), torch.ones(size, 1, dtype=_F64)],
        dim=-1,
    )
    base = (0.30 + 0.25 * g[:, 0:3]).reshape(batch, 3, 1, 1)
    middle = _block_diagonal(
        [
            (0.10 + 0.25 * g[:, 3]).reshape(batch, 1, 1, 1) * coarse_noise,
            (0.05 + 0.10 * g[:, 4]).reshape(batch, 1, 1, 1) * medium_noise,
            base,
        ]
    )
    return _low_rank_canvas(factors, middle * 255.0, factors) + 0.5


# --------------------------------------------------------------------------------------------
# digits: scikit-learn's handwritten 8x8 digits on a cluttered canvas
# --------------------------------------------------------------------------------------------

DIGIT_CLASSES = tuple(str(d) for d in range(10))
DIGIT_SLOTS = 5


@lru_cache(maxsize=1)
def sklearn_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled 1797 handwritten digits: (N, 8, 8) float64 in [0, 1], (N,) labels."""
    from sklearn.datasets import load_digits  # shipped inside scikit-learn: no download

    digits = load_digits()
    return (
        torch.as_tensor(digits.images, dtype=_F64) / 16.0,
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
    pool, counts = digit_pool(split)
    size = int(image_size)
    indices = list(indices)
    batch = len(indices)
    n_uniforms = DIGIT_SLOTS * 9 + 1 + 16 + 4 + 1
    draws = _Draws(per_image_uniforms(0xD161, seed, indices, n_uniforms))
    labels = torch.tensor(indices, dtype=torch.int64) % 10
    sources, _ = sklearn_digits()

    obj = draws.take(DIGIT_SLOTS, 9)
    n_fragments = 2 + torch.floor(draws.take(1)[:, 0] * 3).to(torch.int64)
    slot = torch.arange(DIGIT_SLOTS)[None, :]
    is_target = (slot == 0).expand(batch, -1)
    keep = (slot <= n_fragments[:, None]) & (is_target.logical_not() | include_targets)
    other = (labels[:, None] + 1 + torch.floor(obj[..., 0] * 9).to(torch.int64)) % 10
    digit_class = torch.where(is_target, labels[:, None], other)
    pick = torch.floor(obj[..., 1] * counts[digit_class]).to(torch.int64)
    source = sources[pool[digit_class, pick]]  # (B, M, 8, 8)
    window_w = 3 + torch.floor(obj[..., 2] * 3)
    window_h = 3 + torch.floor(obj[..., 3] * 3)
    window_x = torch.floor(obj[..., 4] * (9 - window_w))
    window_y = torch.floor(obj[..., 5] * (9 - window_h))
    cells = torch.arange(8, dtype=_F64)
    in_x = (cells >= window_x[..., None]) & (cells < (window_x + window_w)[..., None])
    in_y = (cells >= window_y[..., None]) & (cells < (window_y + window_h)[..., None])
    window = (in_y[..., :, None] & in_x[..., None, :]) | is_target[..., None, None]
    source = source * window * keep[..., None, None]

    # upscaling: bilinear (triangle-kernel) weights with zero padding reach half a source
    # pixel beyond the 8x8 frame, so the footprint's half-size is 4.5 source pixels
    scale = size * (0.35 + 0.20 * obj[..., 6]) / 8.0  # canvas pixels per source pixel
    half = 4.5 * scale
    centre_x = _keep_inside(obj[..., 7] * size, half, size)
    centre_y = _keep_inside(obj[..., 8] * size, half, size)
    patch = min(size, math.ceil(2.0 * 4.5 * 0.55 / 8.0 * size) + 3)
    patches = _Patches.around(centre_x, centre_y, patch, size)
    offsets = torch.arange(patch, dtype=_F64) + 0.5
    source_x = (patches.x0[..., None] + offsets - centre_x[..., None]) / scale[..., None] + 3.5
    source_y = (patches.y0[..., None] + offsets - centre_y[..., None]) / scale[..., None] + 3.5
    weights_x = (1.0 - (source_x[..., None] - cells).abs()).clamp(min=0.0)  # (B, M, P, 8)
    weights_y = (1.0 - (source_y[..., None] - cells).abs()).clamp(min=0.0)
    ink = weights_y @ source @ weights_x.transpose(-1, -2)  # (B, M, P, P)

    alpha = torch.zeros(batch, size * size, dtype=_F64)
    alpha = alpha.scatter_reduce(
        1, patches.flat.reshape(batch, -1), ink.reshape(batch, -1), reduce="amax"
    )
    g = draws.take(4)
    factors = torch.cat([_upsample_matrix(size, 4), torch.ones(size, 1, dtype=_F64)], dim=-1)
    middle = _block_diagonal(
        [
            (0.05 + 0.20 * g[:, 1, None, None]) * (draws.take(4, 4) - 0.5),
            (0.05 + 0.20 * g[:, 0])[:, None, None],
        ]
    )
    background = _low_rank_canvas(factors, middle, factors)
    alpha = alpha.reshape(batch, size, size)
    ink_level = 0.75 + 0.25 * g[:, 2, None, None]
    levels = (background + (ink_level - background) * alpha) * 255.0 + 0.5
    levels = levels + (255.0 * (0.02 + 0.04 * g[:, 3, None, None])) * _grain(draws, 1, size)[:, 0]
    draws.check_used()

    support = (ink[:, :1] > 0) & keep[:, :1, None, None]  # slot 0 holds the digit
    boxes, nonempty = patches.boxes(support)
    return GeneratedBatch(
        images=_to_uint8(levels)[:, None],
        labels=labels,
        boxes=boxes,
        box_valid=nonempty,
        masks=patches.union(support, size),
    )


RENDERERS = {"lesions": render_lesions, "concepts": render_concepts, "digits": render_digits}
