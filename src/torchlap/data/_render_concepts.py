"""The ``concepts`` renderer: one class-defining (shape, colour) object per image among
distractors (determinism: see ``_render``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from torchlap._checks import check_int
from torchlap.data._render import (
    F32,
    F64,
    Draws,
    GeneratedBatch,
    Patches,
    block_diagonal,
    cell_centres,
    f32,
    grain,
    keep_inside,
    low_rank_canvas,
    per_image_uniforms,
    rotation,
    to_uint8,
    upsample_matrix,
)

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


def concept_class_names(num_classes: int) -> list[str]:
    """Class names of ``concepts`` (e.g. ``blue_square``), sorted = label order."""
    return [f"{name}_{SHAPES[shape]}" for name, _, shape in CONCEPT_KINDS[:num_classes]]


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
    num_classes: int = 4,
    include_targets: bool = True,
) -> GeneratedBatch:
    """Render ``concepts`` images (label = index mod num_classes).

    Class k is defined by one object of colour k *and* shape k (e.g. a blue square). Every
    image holds exactly one object of each of the ``num_classes`` colours, so colour content
    never reveals the class: the defining object, and for every other colour c a distractor of
    any shape but shape c (never a second defining object); plus one or two neutral-colour
    distractors of any shape. Sizes 0.14-0.30 of the image, random rotation, painter's order
    in random slot order, textured colour background.
    """
    check_int(num_classes, "num_classes", minimum=2, maximum=MAX_CONCEPT_CLASSES)
    size = int(image_size)
    indices = list(indices)
    batch = len(indices)
    n_slots = num_classes + 2
    n_uniforms = 9 + 2 * n_slots + 5 * n_slots + 2 + 3 * 16 + 3 * 64 + 5 + 3
    draws = Draws(per_image_uniforms(0xC0C397, seed, indices, n_uniforms))
    labels = torch.tensor(indices, dtype=torch.int64) % num_classes

    centre_x, centre_y = cell_centres(draws, n_slots, size)
    obj = draws.take(n_slots, 5)
    active, is_target, shape, colour = _concept_objects(obj, draws.take(2), labels, num_classes)

    radius = size * (0.07 + 0.08 * obj[..., 3])
    extent = 1.14 * radius + 1.0
    centre_x = keep_inside(centre_x, extent, size)
    centre_y = keep_inside(centre_y, extent, size)
    patch = min(size, math.ceil(2.0 * (1.14 * 0.15 * size + 1.0)) + 2)
    patches = Patches.around(centre_x, centre_y, patch, size)
    cos, sin = rotation(2.0 * math.pi * obj[..., 4])
    radius32 = f32(radius)
    u = (patches.dx * cos + patches.dy * sin) / radius32
    v = (patches.dy * cos - patches.dx * sin) / radius32
    alpha = (0.5 - _shapes_sdf(shape, u, v) * radius32).clamp(0.0, 1.0)
    keep = active & (is_target.logical_not() | include_targets)
    alpha = alpha * keep[..., None, None]

    canvas = _colour_background(draws, size).reshape(batch, 3, -1)
    _paint(canvas, colour, alpha, patches)
    levels = canvas.reshape(batch, 3, size, size).add_(grain(draws, 3, size, 255.0 * 0.03))
    draws.check_used()

    support = (alpha > 0) & is_target[..., None, None]
    boxes, nonempty = patches.boxes(support)  # at most one non-empty (target) window
    target_slot = (is_target & nonempty).to(F32)[..., None]
    return GeneratedBatch(
        images=to_uint8(levels),
        labels=labels,
        boxes=(boxes * target_slot).sum(dim=1, keepdim=True),
        box_valid=(nonempty & is_target).any(dim=1, keepdim=True),
        masks=patches.union(support, size),
    )


def _concept_objects(
    obj: Tensor, extra: Tensor, labels: Tensor, num_classes: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Which of the ``num_classes + 2`` slots are drawn, which one is the class-defining
    object, each slot's shape id and its colour (B, M, 3) in [0, 1] (all (B, M) but colour).

    Slot k < num_classes holds colour (k + shift) mod num_classes; the rest are neutral."""
    n_slots = obj.shape[1]
    n_neutral = 1 + torch.floor(extra[:, 0] * 2).to(torch.int64)
    shift = torch.floor(extra[:, 1] * num_classes).to(torch.int64)
    slot = torch.arange(n_slots)[None, :]
    colour_index = (slot + shift[:, None]) % num_classes  # used by the first num_classes slots
    is_coloured = slot < num_classes
    active = is_coloured | (slot < num_classes + n_neutral[:, None])
    is_target = is_coloured & (colour_index == labels[:, None])
    own_shape = torch.tensor([k[2] for k in CONCEPT_KINDS])[colour_index]
    other_shape = (own_shape + 1 + torch.floor(obj[..., 0] * 5).to(torch.int64)) % len(SHAPES)
    any_shape = torch.floor(obj[..., 0] * len(SHAPES)).to(torch.int64)
    shape = torch.where(is_target, own_shape, torch.where(is_coloured, other_shape, any_shape))
    palette = torch.tensor([k[1] for k in CONCEPT_KINDS], dtype=F64)[colour_index]
    neutral = torch.tensor(_NEUTRAL_COLOURS, dtype=F64)[torch.floor(obj[..., 1] * 2).long()]
    colour = torch.where(is_coloured[..., None], palette, neutral) * (0.85 + 0.15 * obj[..., 2:3])
    return active, is_target, shape, colour


def _paint(canvas: Tensor, colour: Tensor, alpha: Tensor, patches: Patches) -> None:
    """Paint the objects onto ``canvas`` (B, 3, size * size) in place, in slot order.

    Everything in 8-bit units plus the rounding offset: 255 * value + 0.5 (blending is affine,
    so painting in these units equals painting in [0, 1] and converting after).
    """
    batch, n_slots = alpha.shape[:2]
    colour = colour * 255.0 + 0.5
    alpha64 = alpha.to(F64).reshape(batch, n_slots, 1, -1)
    for k in range(n_slots):  # painter's order over object slots (a loop over slots, not samples)
        index = patches.flat[:, k, None, :].expand(-1, 3, -1)
        under = torch.gather(canvas, 2, index)
        painted = under + (colour[:, k, :, None] - under) * alpha64[:, k]
        canvas.scatter_(2, index, painted)


def _colour_background(draws: Draws, size: int) -> Tensor:
    """Textured colour background (B, 3, size, size) float64 as ``255 * value + 0.5``: a base
    colour plus coarse and medium smooth colour noise (one low-rank product per channel)."""
    coarse_noise = draws.take(3, 4, 4) - 0.5
    medium_noise = draws.take(3, 8, 8) - 0.5
    g = draws.take(5)
    batch = g.shape[0]
    factors = torch.cat(
        [upsample_matrix(size, 4), upsample_matrix(size, 8), torch.ones(size, 1, dtype=F64)],
        dim=-1,
    )
    base = (0.30 + 0.25 * g[:, 0:3]).reshape(batch, 3, 1, 1)
    middle = block_diagonal(
        [
            (0.10 + 0.25 * g[:, 3]).reshape(batch, 1, 1, 1) * coarse_noise,
            (0.05 + 0.10 * g[:, 4]).reshape(batch, 1, 1, 1) * medium_noise,
            base,
        ]
    )
    return low_rank_canvas(factors, middle * 255.0, factors) + 0.5
