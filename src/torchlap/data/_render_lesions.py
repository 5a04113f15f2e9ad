"""The ``lesions`` renderer: the RSNA-like binary task (determinism: see ``_render``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from torchlap.data._render import (
    F32,
    F64,
    Draws,
    GeneratedBatch,
    Patches,
    block_diagonal,
    f32,
    grain,
    low_rank_canvas,
    per_image_uniforms,
    to_uint8,
    upsample_matrix,
)

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
    out = torch.full((3, len(counts), NODULES_MAX, 2), float("nan"), dtype=F64)
    for row, k in enumerate(counts):
        cluster = torch.tensor(lattice[:k], dtype=F64)
        out[0, row, :k] = cluster - cluster.mean(dim=0)
        out[1, row, :k] = out[0, row, :k]
        angles = 2.0 * math.pi * torch.arange(k, dtype=F64) / k
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
    n_uniforms = 4 + 2 * LESION_SLOTS + 5 * LESION_SLOTS + 2 + 16 + 64 + 8 + 1
    draws = Draws(per_image_uniforms(0x1E5105, seed, indices, n_uniforms))
    labels = torch.tensor(indices, dtype=torch.int64) % 2
    layout = _lesion_layout(draws, labels, size, include_targets)
    patches, r2, present, objects = _paint_nodules(layout, size)

    g = draws.take(8)
    levels = _xray_background(draws, g, size)  # 255 * value + 0.5
    levels = levels + objects.to(F64) * 255.0
    levels = levels + (255.0 * (0.01 + 0.03 * g[:, 7, None, None])) * grain(draws, 1, size)[:, 0]
    draws.check_used()

    boxes, box_valid, support = _lesion_targets(patches, r2, layout.is_lesion, present, size)
    return GeneratedBatch(
        images=to_uint8(levels)[:, None],
        labels=labels,
        boxes=boxes,
        box_valid=box_valid,
        masks=patches.union(support, size),
    )


@dataclass
class _LesionLayout:
    """Per-slot parameters (B, M) of a batch of lesion images (M = ``LESION_SLOTS``)."""

    quadrant: Tensor  # slot k lives in image quadrant quadrant[:, k]
    position: Tensor  # (B, M, 2) position of the object inside the room its quadrant leaves
    is_lesion: Tensor
    arrangement: Tensor  # index into LESION_ARRANGEMENTS
    count_row: Tensor  # nodules per object: NODULES_MIN + count_row
    nodule_radius: Tensor
    amplitude: Tensor  # 0 for an inactive slot (and a lesion left out by include_targets)
    angle: Tensor


def _lesion_layout(draws: Draws, labels: Tensor, size: int, include_targets: bool) -> _LesionLayout:
    """Which slots hold objects, which are lesions, and each object's nodule parameters."""
    quadrant = torch.argsort(draws.take(4), dim=1)
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
    return _LesionLayout(
        quadrant, position, is_lesion, arrangement, count_row, nodule_radius, amplitude, angle
    )


def _nodule_centres(layout: _LesionLayout, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Nodule centres x, y (B, M, K) and which of the K template entries exist.

    Template offsets (in spacings) rotated, scaled, moved to the object centre, which is
    placed so that the whole object stays inside its quadrant: objects never overlap.
    """
    template = _arrangement_templates()[layout.arrangement, layout.count_row]  # (B, M, K, 2)
    present = ~torch.isnan(template[..., 0])
    template = torch.nan_to_num(template)
    radius = layout.nodule_radius
    spacing = torch.tensor(NODULE_SPACING, dtype=F64)[layout.arrangement] * radius
    extent = template.norm(dim=-1).amax(dim=-1) * spacing + radius  # (B, M)
    half = size / 2.0
    room = (half - 2.0 * extent).clamp(min=0.0)
    quadrant, position = layout.quadrant, layout.position
    centre_x = (quadrant % 2).to(F64) * half + extent + position[..., 0] * room
    centre_y = (quadrant // 2).to(F64) * half + extent + position[..., 1] * room
    cos, sin = torch.cos(layout.angle)[..., None], torch.sin(layout.angle)[..., None]
    rotated_x = template[..., 0] * cos - template[..., 1] * sin
    rotated_y = template[..., 0] * sin + template[..., 1] * cos
    nodule_x = centre_x[..., None] + spacing[..., None] * rotated_x
    nodule_y = centre_y[..., None] + spacing[..., None] * rotated_y
    return nodule_x, nodule_y, present


def _paint_nodules(layout: _LesionLayout, size: int) -> tuple[Patches, Tensor, Tensor, Tensor]:
    """The nodules of every object: their windows, squared radii r^2 (B, M * K, P, P), which
    template entries exist (B, M, K) and their sum (B, size, size) float32."""
    nodule_x, nodule_y, present = _nodule_centres(layout, size)
    batch = nodule_x.shape[0]
    n_nodules = LESION_SLOTS * NODULES_MAX
    patch = min(size, math.ceil(2.0 * NODULE_RADIUS[1] * size) + 3)
    patches = Patches.around(
        nodule_x.reshape(batch, n_nodules), nodule_y.reshape(batch, n_nodules), patch, size
    )
    inv_radius = 1.0 / f32(layout.nodule_radius.repeat_interleave(NODULES_MAX, dim=1))
    u, v = patches.dx * inv_radius, patches.dy * inv_radius
    r2 = u * u + v * v
    bump = (1.0 - r2).clamp(min=0.0)  # soft nodule (1 - r^2)^2 with compact support r < 1
    strength = (layout.amplitude[..., None] * present).reshape(batch, n_nodules)
    values = bump * bump * f32(strength)
    objects = torch.zeros(batch, size * size, dtype=F32)
    objects.scatter_add_(1, patches.flat.reshape(batch, -1), values.reshape(batch, -1))
    return patches, r2, present, objects.reshape(batch, size, size)


def _lesion_targets(
    patches: Patches, r2: Tensor, is_lesion: Tensor, present: Tensor, size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Boxes (B, T, 4) around each lesion's nodules, their validity (B, T), and the lesions'
    nodule footprints (B, T * K, P, P): lesions only ever occupy the first T slots."""
    batch = r2.shape[0]
    n_target_nodules = LESION_MAX_TARGETS * NODULES_MAX
    target = (is_lesion[..., None] & present)[:, :LESION_MAX_TARGETS].reshape(batch, -1)
    support = (r2[:, :n_target_nodules] < 1.0) & target[..., None, None]
    nodule_boxes, nonempty = patches.boxes(support)  # (B, 3 * K, 4)
    nodule_boxes = nodule_boxes.reshape(batch, LESION_MAX_TARGETS, NODULES_MAX, 4)
    nonempty = nonempty.reshape(batch, LESION_MAX_TARGETS, NODULES_MAX)
    big = torch.tensor(float(size), dtype=F32)
    x_min = torch.where(nonempty, nodule_boxes[..., 0], big).amin(dim=-1)
    y_min = torch.where(nonempty, nodule_boxes[..., 1], big).amin(dim=-1)
    x_max = torch.where(nonempty, nodule_boxes[..., 2], 0.0).amax(dim=-1)
    y_max = torch.where(nonempty, nodule_boxes[..., 3], 0.0).amax(dim=-1)
    box_valid = nonempty.any(dim=-1)
    boxes = torch.stack([x_min, y_min, x_max, y_max], dim=-1) * box_valid[..., None]
    return boxes, box_valid, support


def _xray_background(draws: Draws, g: Tensor, size: int) -> Tensor:
    """X-ray-like grayscale background (B, size, size) float64, as ``255 * value + 0.5``.

    value = level + coarse and medium smooth mottling + rib stripes, all stationary over the
    image so that where an object sits does not change the global statistics.
    """
    batch = g.shape[0]
    coords = (torch.arange(size, dtype=F64) + 0.5) / size
    coarse, medium = upsample_matrix(size, 4), upsample_matrix(size, 8)
    # rib stripes sin(w (y cos(tilt) + x sin(tilt)) + phase) = sin(ay)cos(bx) + cos(ay)sin(bx)
    tilt = (g[:, 1, None] - 0.5) * 0.6
    omega = 2.0 * math.pi * (3.0 + 3.0 * g[:, 2, None])
    along_y = omega * torch.cos(tilt) * coords[None, :] + 2.0 * math.pi * g[:, 3, None]
    along_x = omega * torch.sin(tilt) * coords[None, :]
    ones = torch.ones(batch, size, 1, dtype=F64)

    def factor(stripes: Tensor) -> Tensor:
        """A side's factor of the canvas: the mottling bases, the stripes' pair, the level."""
        bases = [coarse.expand(batch, -1, -1), medium.expand(batch, -1, -1)]
        return torch.cat([*bases, stripes, ones], dim=-1)

    left = factor(torch.stack([torch.sin(along_y), torch.cos(along_y)], dim=-1))
    right = factor(torch.stack([torch.cos(along_x), torch.sin(along_x)], dim=-1))
    middle = block_diagonal(
        [
            (0.15 + 0.35 * g[:, 4])[:, None, None] * (draws.take(4, 4) - 0.5),
            (0.04 + 0.12 * g[:, 5])[:, None, None] * (draws.take(8, 8) - 0.5),
            (0.05 * g[:, 6])[:, None, None] * torch.eye(2, dtype=F64),
            (0.25 + 0.25 * g[:, 0])[:, None, None],  # the level
        ]
    )
    return low_rank_canvas(left, middle * 255.0, right) + 0.5
