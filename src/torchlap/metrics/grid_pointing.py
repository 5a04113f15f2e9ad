"""Grid pointing game (Böhle et al., B-cos networks, CVPR 2022; Rao et al., CVPR 2022).

Images of *different* classes are tiled into a ``rows x cols`` grid; one cell's class is
explained, and the score is the share of the map's positive attribution that falls inside that
cell:

    score = sum_{p in cell} max(m_p, 0) / sum_p max(m_p, 0)

A map with no positive attribution at all (all zero or all negative) carries no evidence for any
cell: it scores the uniform share ``1 / (rows * cols)`` (the limit of a constant positive map,
the chance level), and is counted in ``n_zero_maps``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from torchlap._checks import non_finite_samples
from torchlap.metrics._common import MetricResult, make_result

__all__ = ["cell_masks", "grid_pointing_game", "grid_pointing_scores", "grid_pointing_summary"]


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape)
        or shape[0] * shape[1] < 2
    ):
        raise ValueError(f"grid shape must be (rows, cols) of ints >= 1, >= 2 cells, got {shape!r}")
    return int(shape[0]), int(shape[1])


def cell_masks(
    shape: Sequence[int], size: Sequence[int], device: torch.device | None = None
) -> Tensor:
    """Boolean masks ``(rows*cols, H, W)`` of the cells of a ``rows x cols`` grid on an ``H x W``
    image, cells in row-major order. ``H`` and ``W`` must be multiples of ``rows``/``cols``."""
    rows, cols = _check_shape(shape)
    height, width = int(size[0]), int(size[1])
    if height % rows or width % cols:
        raise ValueError(f"a {height}x{width} image does not split into {rows}x{cols} equal cells")
    row_of = torch.arange(height, device=device) // (height // rows)
    col_of = torch.arange(width, device=device) // (width // cols)
    cell_of = row_of[:, None] * cols + col_of[None, :]
    return cell_of[None] == torch.arange(rows * cols, device=device)[:, None, None]


def grid_pointing_scores(
    maps: Tensor, cells: Tensor, shape: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """Per map, the positive-attribution share inside its cell; and which maps had none.

    ``maps`` ``(N, H, W)`` at grid resolution; ``cells`` ``(N,)`` the explained cell of each map
    (row-major index); ``maps`` must be finite (a NaN or infinite map has no share to score).
    Returns ``(scores (N,), zero (N,) bool)``.
    """
    if not isinstance(maps, Tensor) or maps.dim() != 3:
        raise ValueError(f"maps must be a (N, H, W) tensor, got {getattr(maps, 'shape', maps)!r}")
    if not maps.is_floating_point():
        raise TypeError(f"maps must be floating point, got {maps.dtype}")
    rows, cols = _check_shape(shape)
    if not isinstance(cells, Tensor) or cells.shape != (maps.shape[0],):
        raise ValueError(f"cells must be a ({maps.shape[0]},) tensor of cell indices")
    if cells.is_floating_point() or (
        cells.numel() and not (int(cells.min()) >= 0 and int(cells.max()) < rows * cols)
    ):
        raise ValueError(f"cells must hold integer cell indices in [0, {rows * cols})")
    masks = cell_masks((rows, cols), maps.shape[-2:], maps.device)  # (K, H, W)
    bad = non_finite_samples(maps)
    if bad:
        raise ValueError(
            f"maps {bad} (indices) contain NaN or infinite values; only finite maps are accepted"
        )
    positive = maps.double().clamp_min(0.0)
    total = positive.flatten(1).sum(dim=1)
    inside = (positive * masks[cells.long()]).flatten(1).sum(dim=1)
    zero = total <= 0
    scores = torch.where(
        zero, 1.0 / (rows * cols), inside / total.clamp_min(torch.finfo(torch.float64).tiny)
    )
    return scores, zero


def grid_pointing_game(maps: Tensor, cells: Tensor, shape: Sequence[int]) -> MetricResult:
    """Mean positive-attribution share inside the explained cell (higher is better; chance is
    ``1 / (rows * cols)``). ``per_sample`` holds every map's score."""
    scores, _ = grid_pointing_scores(maps, cells, shape)
    return make_result("grid_pointing_game", scores)


def grid_pointing_summary(scores: Tensor, zero: Tensor, shape: Sequence[int]) -> dict:
    """JSON-ready summary of per-map scores: mean, distribution (std, min, quartiles, max),
    ``n``, ``n_zero_maps``, the chance level and the scores themselves."""
    rows, cols = _check_shape(shape)
    values = scores.detach().double().cpu()
    if values.numel() == 0:
        raise ValueError("no grid pointing game scores to summarise")
    levels = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64, device=values.device)
    quartiles = torch.quantile(values, levels)
    return {
        "mean": float(values.mean()),
        "higher_is_better": True,
        "n": int(values.numel()),
        "distribution": {
            "std": float(values.std(unbiased=False)),
            "min": float(values.min()),
            "q25": float(quartiles[0]),
            "median": float(quartiles[1]),
            "q75": float(quartiles[2]),
            "max": float(values.max()),
        },
        "n_zero_maps": int(zero.sum()),
        "chance": 1.0 / (rows * cols),
        "scores": [round(float(v), 6) for v in values],
    }
