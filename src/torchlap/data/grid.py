"""Synthetic grid pointing game data: ``rows x cols`` grids of images of distinct classes.

Böhle et al. (B-cos networks, CVPR 2022 / TPAMI 2024) and Rao et al. (CVPR 2022) tile images
of different classes, each one the model classifies correctly and confidently, into a grid and
ask an explanation of one cell's class to point at that cell. Their grids come from ImageNet;
:func:`build_grid_set` makes them from any dataset with classes (the built-in benchmarks, a
user folder), deterministically from a seed:

1. :func:`confident_images`: the images the model classifies correctly with a softmax
   probability of at least ``min_confidence`` (recorded with the grids);
2. each grid takes ``rows * cols`` distinct classes among those with such images, in random
   order (the cell of each class is random), and for each class one of its images at random;
3. cells keep the images' own resolution: a grid is ``rows * H`` by ``cols * W`` pixels (the
   model sees it as one larger image, as in Rao et al.'s 2x2 grids of 224-pixel images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from torchlap._checks import check_positive_int
from torchlap._hooks import kept_training_flags

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "GridSet",
    "build_grid_set",
    "build_grids",
    "confident_images",
    "resolve_grid_shape",
    "tile_grid",
]

#: cells are images the model classifies correctly with at least this softmax probability
DEFAULT_MIN_CONFIDENCE = 0.9


@dataclass
class GridSet:
    """Grids ``images`` ``(G, C, rows*H, cols*W)``; per grid and cell (row-major) the class
    ``cell_classes`` ``(G, K)`` and the source image index ``cell_sources`` ``(G, K)``."""

    images: Tensor
    cell_classes: Tensor
    cell_sources: Tensor
    shape: tuple[int, int]
    min_confidence: float
    seed: int
    n_eligible: int

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_cells(self) -> int:
        """Cells per grid."""
        return self.shape[0] * self.shape[1]

    def queries(self) -> tuple[Tensor, Tensor, Tensor]:
        """Every (grid, cell) pair to explain: ``grid_index``, ``cell`` and ``target`` class,
        each ``(G * K,)``, grid-major."""
        grids = torch.arange(len(self)).repeat_interleave(self.n_cells)
        cells = torch.arange(self.n_cells).repeat(len(self))
        return grids, cells, self.cell_classes.reshape(-1)

    def to_dict(self) -> dict:
        """JSON-ready description (not the pixels)."""
        return {
            "shape": list(self.shape),
            "n_grids": len(self),
            "min_confidence": self.min_confidence,
            "seed": self.seed,
            "n_eligible_images": self.n_eligible,
            "cell_classes": self.cell_classes.tolist(),
            "cell_sources": self.cell_sources.tolist(),
        }


def resolve_grid_shape(shape: str | Sequence[int], num_classes: int) -> tuple[int, int]:
    """``"auto"`` (2x2 with at least 4 classes, else ``1 x num_classes``), ``"RxC"`` or a pair."""
    if isinstance(shape, str):
        text = shape.strip().lower()
        if text == "auto":
            if num_classes < 2:
                raise ValueError("the grid pointing game needs at least 2 classes")
            return (2, 2) if num_classes >= 4 else (1, num_classes)
        parts = text.split("x")
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"grid shape must be 'auto' or 'RxC' (e.g. '2x2'), got {text!r}"
            ) from None
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape)
    ):
        raise ValueError(f"grid shape must be 'auto', 'RxC' or (rows, cols), got {shape!r}")
    rows, cols = int(shape[0]), int(shape[1])
    if rows * cols < 2:
        raise ValueError(f"a grid needs at least 2 cells, got {rows}x{cols}")
    if rows * cols > num_classes:
        raise ValueError(
            f"a {rows}x{cols} grid needs {rows * cols} distinct classes, the data has "
            f"{num_classes}; use a smaller grid (e.g. 1x{num_classes}) or 'auto'"
        )
    return rows, cols


@torch.no_grad()
def confident_images(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """``(eligible (N,) bool, confidence (N,))``: correct and softmax probability of the label
    at least ``min_confidence`` (a one-logit model: the sigmoid). The model's flags are kept."""
    if not 0.0 <= float(min_confidence) < 1.0:
        raise ValueError(f"min_confidence must be in [0, 1), got {min_confidence!r}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with kept_training_flags(model):
        model.eval()
        probs = torch.cat(
            [
                _probabilities(model(images[i : i + batch_size].to(device))).float().cpu()
                for i in range(0, len(images), batch_size)
            ]
        )
    confidence = probs.gather(1, labels.view(-1, 1).long()).squeeze(1)
    eligible = (probs.argmax(dim=1) == labels) & (confidence >= min_confidence)
    return eligible, confidence


def _probabilities(logits: Tensor) -> Tensor:
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return logits.softmax(dim=1)


def tile_grid(cells: Tensor, shape: Sequence[int]) -> Tensor:
    """Tile ``cells`` ``(G, K, C, H, W)`` (row-major) into grids ``(G, C, rows*H, cols*W)``."""
    rows, cols = int(shape[0]), int(shape[1])
    g, k, c, h, w = cells.shape
    if k != rows * cols:
        raise ValueError(f"{k} cells do not fill a {rows}x{cols} grid")
    grid = cells.reshape(g, rows, cols, c, h, w).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(g, c, rows * h, cols * w)


def build_grids(
    images: Tensor,
    labels: Tensor,
    eligible: Tensor,
    shape: Sequence[int],
    n_grids: int,
    seed: int = 0,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> GridSet:
    """``n_grids`` grids of distinct classes from the ``eligible`` images (see the module
    docstring), deterministic from ``seed``; raises ``ValueError`` when fewer than
    ``rows * cols`` classes have an eligible image."""
    rows, cols = int(shape[0]), int(shape[1])
    n_cells = rows * cols
    check_positive_int(n_grids, "n_grids")
    if images.dim() != 4 or labels.shape != (images.shape[0],) or eligible.shape != labels.shape:
        raise ValueError("images (N, C, H, W), labels (N,) and eligible (N,) must match")
    pool = torch.nonzero(eligible, as_tuple=False).flatten()
    pool_labels = labels[pool].long()
    classes, counts = torch.unique(pool_labels, return_counts=True)
    if classes.numel() < n_cells:
        raise ValueError(
            f"a {rows}x{cols} grid needs {n_cells} classes with a correctly and confidently "
            f"(p >= {min_confidence}) classified image; only {classes.numel()} have one "
            f"({int(pool.numel())} eligible images)"
        )
    order = torch.argsort(pool_labels, stable=True)
    pool = pool[order]
    offsets = torch.cumsum(counts, 0) - counts
    generator = torch.Generator().manual_seed(int(seed))
    chosen = torch.rand(n_grids, classes.numel(), generator=generator).argsort(dim=1)[:, :n_cells]
    pick = torch.rand(n_grids, n_cells, generator=generator)
    within = (pick * counts[chosen]).long().clamp_max(counts[chosen] - 1)
    sources = pool[offsets[chosen] + within]
    grids = tile_grid(images[sources], (rows, cols))
    return GridSet(
        images=grids,
        cell_classes=classes[chosen],
        cell_sources=sources,
        shape=(rows, cols),
        min_confidence=float(min_confidence),
        seed=int(seed),
        n_eligible=int(pool.numel()),
    )


def build_grid_set(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    shape: str | Sequence[int] = "auto",
    n_grids: int = 16,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    seed: int = 0,
    batch_size: int = 64,
) -> GridSet:
    """:func:`confident_images` then :func:`build_grids` (shape via :func:`resolve_grid_shape`)."""
    resolved = resolve_grid_shape(shape, num_classes)
    eligible, _ = confident_images(model, images, labels, min_confidence, batch_size)
    return build_grids(images, labels, eligible, resolved, n_grids, seed, min_confidence)
