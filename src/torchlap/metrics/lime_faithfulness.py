"""LIME faithfulness of explanation maps: paper 002, section 4.3 (Table 2).

The Spearman rank correlation between LIME scores of square patches (captum's ``Lime``
algorithm, batched; a least-squares surrogate) and an explanation map averaged over the same
patches: :func:`lime_patch_scores`, :func:`patch_means`, :func:`spearman_correlation` and
:func:`lime_spearman`. The comparison protocol of the paper (BLA-T against Grad-CAM) is
:func:`torchlap.evaluate.bla_comparison.bla_lime_faithfulness`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlap._checks import check_number, check_seed, is_int, is_integer_tensor
from torchlap._checks import check_positive_int as _check_positive_int
from torchlap.metrics._common import MetricResult, check_images, eval_mode

__all__ = [
    "LIME_WEIGHTINGS",
    "cell_means",
    "check_images",
    "lime_cell_scores",
    "lime_patch_scores",
    "lime_spearman",
    "mean_spearman",
    "patch_feature_mask",
    "patch_means",
    "resolve_target",
    "spearman_correlation",
]


def spearman_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's rank correlation of each row pair of ``a``, ``b`` (N, n): (N,), float64
    whatever the inputs' dtype (the ranks are computed in float64).

    Ties get their average rank (as ``scipy.stats.spearmanr``); a row whose ranks are constant
    has no correlation: ``nan``, and so has a row of ``a`` or ``b`` holding a NaN (scipy's
    default ``nan_policy="propagate"``) or an infinite value (scipy would rank ``inf`` as the
    largest value; here a non-finite score or map is a failure, never a rank). Ranks come from
    pairwise comparisons (O(n^2) per row; ``n`` is a number of patches here), batched on the
    tensors' device.
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("a and b must be tensors")
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be (N, n), got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] < 2:
        raise ValueError(f"a rank correlation needs at least 2 values per row, got {a.shape[1]}")
    ranks_a = _average_ranks(a.to(torch.float64))
    ranks_b = _average_ranks(b.to(torch.float64))
    ranks_a = ranks_a - ranks_a.mean(dim=1, keepdim=True)
    ranks_b = ranks_b - ranks_b.mean(dim=1, keepdim=True)
    numerator = (ranks_a * ranks_b).sum(dim=1)
    denominator = (ranks_a.square().sum(dim=1) * ranks_b.square().sum(dim=1)).sqrt()
    nan = torch.full_like(numerator, float("nan"))
    # NaN compares neither smaller nor equal, so its row's ranks above are meaningless
    finite = torch.isfinite(a).all(dim=1) & torch.isfinite(b).all(dim=1)
    return torch.where(finite & (denominator > 0), numerator / denominator.clamp_min(1e-300), nan)


def _average_ranks(x: Tensor) -> Tensor:
    """1-based ranks, ties averaged: ``#{j: x_j < x_i} + (#{j: x_j = x_i} + 1) / 2``."""
    less = (x.unsqueeze(1) < x.unsqueeze(2)).sum(dim=2)
    equal = (x.unsqueeze(1) == x.unsqueeze(2)).sum(dim=2)
    return less.to(x.dtype) + (equal.to(x.dtype) + 1) / 2


def patch_feature_mask(
    height: int, width: int, patch: int, device: torch.device | str | None = None
) -> Tensor:
    """(H, W) long tensor of patch indices, row-major over a grid of ``patch`` x ``patch``
    squares (the last row/column of patches is smaller when ``patch`` does not divide the size).
    """
    _check_positive_int(patch, "patch")
    columns = -(-width // patch)
    rows = torch.arange(height, device=device) // patch
    cols = torch.arange(width, device=device) // patch
    return rows[:, None] * columns + cols[None, :]


def patch_means(maps: Tensor, image_size: Sequence[int], patch: int) -> Tensor:
    """Average explanation maps ``(B, h, w)`` over the patches of an image of ``image_size``.

    Maps already at the patch-grid resolution (e.g. a 7x7 BLA map for 32x32 patches of a 224
    image) are used as they are; other maps are resized to ``image_size`` (bilinear,
    ``align_corners=False``, torchlap's shared upsampling) and averaged per patch
    (:func:`cell_means`). Returns (B, n_patches), patches row-major.
    """
    if not isinstance(maps, Tensor) or maps.dim() != 3:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"maps must be (B, h, w), got {shape}")
    height, width = int(image_size[0]), int(image_size[1])
    _check_positive_int(patch, "patch")
    grid = (-(-height // patch), -(-width // patch))
    return cell_means(maps, patch_feature_mask(height, width, patch, maps.device), grid)


def cell_means(maps: Tensor, mask: Tensor, grid: Sequence[int]) -> Tensor:
    """Average maps ``(B, h, w)`` over the cells of ``mask``: maps already at ``grid`` are used
    as they are, others are resized to (H, W) (bilinear, ``align_corners=False``) and averaged
    per cell. Returns (B, rows * cols).

    ``maps``: a floating (B, h, w) tensor; ``grid``: (rows, cols), two ints >= 1; ``mask``: an
    integer (H, W) tensor of cell ids, row-major, holding exactly the ids 0..rows*cols-1, each
    at least once (``ValueError`` otherwise: a cell without pixels would average to 0/0, an id
    past the grid has no cell). Checking the mask costs two reductions."""
    if not isinstance(maps, Tensor) or maps.dim() != 3 or not maps.is_floating_point():
        got = f"{tuple(maps.shape)} {maps.dtype}" if isinstance(maps, Tensor) else type(maps)
        raise ValueError(f"maps must be a floating (B, h, w) tensor, got {got}")
    rows, cols = _check_grid(grid)
    n_cells = rows * cols
    counts = _cell_counts(mask, n_cells, f"the {rows}x{cols} grid").to(maps.device)
    ids = mask.flatten().long().to(maps.device)
    if tuple(maps.shape[-2:]) == (rows, cols):
        return maps.flatten(1)
    size = tuple(mask.shape)
    if tuple(maps.shape[-2:]) != size:
        maps = F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
        maps = maps[:, 0]
    sums = maps.new_zeros(maps.shape[0], n_cells).index_add_(1, ids, maps.flatten(1))
    return sums / counts.to(maps.dtype)


def _check_grid(grid: object) -> tuple[int, int]:
    """``grid`` as (rows, cols), two ints >= 1 (a tuple or a list)."""
    if (
        not isinstance(grid, (tuple, list))
        or len(grid) != 2
        or not all(is_int(n) and n >= 1 for n in grid)
    ):
        raise ValueError(f"grid must be (rows, cols), two ints >= 1, got {grid!r}")
    return int(grid[0]), int(grid[1])


def _cell_counts(
    mask: object, n_cells: int | None, grid: str = "", size: tuple[int, int] | None = None
) -> Tensor:
    """The pixel count of every cell of ``mask``, an integer (H, W) tensor (of ``size`` when
    given) whose ids are exactly 0..n_cells-1, each used (``n_cells`` None: as many cells as
    the largest id says); ``ValueError`` naming what is wrong. Two reductions."""
    if (
        not isinstance(mask, Tensor)
        or mask.dim() != 2
        or mask.numel() == 0
        or (size is not None and tuple(mask.shape) != size)
        or not is_integer_tensor(mask)
    ):
        got = f"{tuple(mask.shape)} {mask.dtype}" if isinstance(mask, Tensor) else type(mask)
        shape = "(H, W)" if size is None else str(size)
        raise ValueError(
            f"mask must be an integer {shape} tensor of cell ids, non-empty, got {got}"
        )
    low, high = (int(v) for v in torch.stack(torch.aminmax(mask.long())).tolist())
    if n_cells is None:  # the ids say the cells: captum fits one coefficient per id 0..max
        counts = torch.bincount(mask.flatten().long()) if low >= 0 else None
        if counts is None or not bool(counts.all()):
            distinct = torch.unique(mask).numel()
            raise ValueError(
                f"mask's cell ids must be 0..n_cells-1, each used, got {distinct} distinct ids "
                f"from {low} to {high}"
            )
        return counts
    if low < 0 or high >= n_cells:
        raise ValueError(
            f"mask's cell ids must lie in [0, {n_cells}) (one per cell of the grid), got ids "
            f"from {low} to {high}"
        )
    counts = torch.bincount(mask.flatten().long(), minlength=n_cells)
    if not bool(counts.all()):
        empty = torch.nonzero(counts == 0).flatten()[:5].tolist()
        raise ValueError(
            f"mask must use every cell id 0..{n_cells - 1} of {grid}; cell(s) {empty} have no pixel"
        )
    return counts


def mean_spearman(map_scores: Tensor, lime_scores: Tensor) -> MetricResult:
    """Mean Spearman correlation of ``map_scores`` and ``lime_scores`` (B, n_cells) over the
    images where both rank; higher is better. Rows that are constant or hold a NaN or an
    infinite value (in either) have no correlation (``nan`` in ``per_sample``) and are
    excluded: ``n_excluded``."""
    if isinstance(lime_scores, Tensor) and isinstance(map_scores, Tensor):
        lime_scores = lime_scores.to(map_scores.device)
    per_sample = spearman_correlation(map_scores, lime_scores)
    valid = torch.isfinite(per_sample)
    n = int(valid.sum())
    value = float(per_sample[valid].mean()) if n else float("nan")
    return MetricResult(
        value=value,
        higher_is_better=True,
        n=n,
        n_excluded=int(per_sample.numel() - n),
        per_sample=per_sample,
    )


def resolve_target(model: nn.Module, images: Tensor, target: int | Tensor | None) -> Tensor:
    """(B,) class indices: ``target`` broadcast, or the model's predicted classes (``None``).

    ``target``: ``None``, an int, or an integer tensor of 1 or B class indices; each must lie in
    ``[0, n_classes)``, ``n_classes`` the width of the model's (B, n_classes) output, read from
    one forward of the first image (no gradient; call it in eval mode). Its form is checked
    before that forward, its range right after (one reduction): before any other model pass.
    """
    batch = images.shape[0]
    classes = None if target is None else _target_tensor(target, batch, images.device)
    with torch.no_grad():
        logits = model(images if classes is None else images[:1])
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        raise TypeError("the model must return class scores of shape (B, n_classes)")
    if classes is None:
        return logits.argmax(dim=1)
    n_classes = int(logits.shape[1])
    low, high = (int(v) for v in torch.stack(torch.aminmax(classes)).tolist())
    if low < 0 or high >= n_classes:
        raise ValueError(
            f"target must hold class indices in [0, {n_classes}) (the width of the model's "
            f"output), got {low if low < 0 else high}"
        )
    return classes


def _target_tensor(target: object, batch: int, device: torch.device) -> Tensor:
    """``target`` (an int, or an integer tensor of 1 or ``batch`` values) as a (batch,) long."""
    if is_int(target):
        return torch.full((batch,), target, dtype=torch.long, device=device)
    if is_integer_tensor(target) and target.dim() <= 1:
        target = target.reshape(-1).to(device=device, dtype=torch.long)
        if target.numel() == 1:
            return target.expand(batch).clone()
        if target.numel() == batch:
            return target
    raise ValueError(
        f"target must be None, an int or an integer tensor of 1 or {batch} class indices, "
        f"got {target!r}"
    )


#: how :func:`lime_cell_scores` weights LIME's samples: captum's proximity kernel, or not at all
LIME_WEIGHTINGS = ("kernel", "none")


def lime_patch_scores(
    model: nn.Module,
    images: Tensor,
    target: int | Tensor | None = None,
    patch: int = 32,
    n_samples: int = 1000,
    seed: int = 0,
    baseline: float = 0.0,
    perturbations_per_eval: int = 50,
    score: str = "probability",
    weighting: str = "kernel",
) -> Tensor:
    """LIME scores of square patches (paper 002, section 4.3), one row per image: (B, n_patches).

    :func:`lime_cell_scores` with a feature mask of ``patch`` x ``patch`` squares (the last row
    and column of squares cut by the image border); the other arguments are its own.
    """
    check_images(images)
    height, width = images.shape[-2:]
    mask = patch_feature_mask(height, width, patch, images.device)  # checks ``patch``
    return lime_cell_scores(
        model, images, mask, target, n_samples, seed, baseline, perturbations_per_eval, score,
        weighting,
    )  # fmt: skip


def lime_cell_scores(
    model: nn.Module,
    images: Tensor,
    mask: Tensor,
    target: int | Tensor | None = None,
    n_samples: int = 1000,
    seed: int = 0,
    baseline: float = 0.0,
    perturbations_per_eval: int = 50,
    score: str = "probability",
    weighting: str = "kernel",
) -> Tensor:
    """LIME's coefficient of every cell of ``mask``, one row per image: (B, n_cells).

    ``mask`` (H, W) integer cell ids 0..n_cells-1 (e.g. :func:`patch_feature_mask`). captum's
    ``Lime`` algorithm with ``n_samples`` random occlusion patterns (each cell kept with
    probability 1/2, an absent cell set to ``baseline``: black for un-normalised images, the
    mean for normalised ones) and a least-squares linear model with an intercept (its
    ``SkLearnLinearRegression``), as paper 002 fits "a least squares model", computed for the
    whole batch at once on the images' device (captum loops over images and samples in Python;
    the same patterns, weights and fit, tested against it). ``perturbations_per_eval``: the
    occluded copies per model forward (they may come from several images). The paper does not
    say how samples are weighted:
    ``weighting="kernel"`` (default) is LIME's proximity weight as captum computes it,
    ``exp(-d^2 / 2)`` with ``d`` the cosine distance between the image and the occluded copy
    (all pixels and channels); ``"none"`` weights every sample 1 (plain least squares). ``target``:
    the class scored per image (``None``: the model's prediction); ``score``:
    ``"probability"`` (softmax of the target class) or ``"logit"``. The occlusion patterns are
    drawn from a CPU generator seeded with ``seed`` (the same patterns for each image and on
    every device, captum's draws under ``torch.manual_seed(seed)``; the global RNG is left
    untouched). The model runs in eval mode, flags restored.

    Checked before any model pass: ``images`` a non-empty, finite, floating (B, C, H, W)
    tensor; ``baseline`` a finite number; ``seed`` an int in [0, 2**32 - 1]; ``n_samples`` and
    ``perturbations_per_eval`` ints >= 1; ``target`` (see :func:`resolve_target`) class
    indices in [0, n_classes), its range checked after one forward of the first image (or the
    prediction pass, ``target=None``), before LIME runs.
    """
    check_images(images)
    height, width = images.shape[-2:]
    n_cells = _cell_counts(mask, None, size=(int(height), int(width))).numel()
    _check_positive_int(n_samples, "n_samples")
    _check_positive_int(perturbations_per_eval, "perturbations_per_eval")
    if score not in ("probability", "logit"):
        raise ValueError(f"score must be 'probability' or 'logit', got {score!r}")
    if weighting not in LIME_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {LIME_WEIGHTINGS}, got {weighting!r}")
    check_seed(seed)
    check_number(baseline, "baseline", accepted="a finite number (the value of an occluded pixel)")
    cells = mask.to(images.device).long()
    # the patterns come from a seeded CPU generator (captum's draws, the same on every device),
    # one (n_samples, n_cells) transfer per call
    generator = torch.Generator().manual_seed(seed)
    coin = torch.full((n_samples, n_cells), 0.5, device="cpu")  # each cell kept with p = 1/2
    patterns = torch.bernoulli(coin, generator=generator).to(images.device, torch.bool)
    # the copies' value, rounded to the images' dtype on the host
    baseline = float(torch.tensor(baseline, dtype=images.dtype, device="cpu"))
    with eval_mode(model), torch.no_grad():
        classes = resolve_target(model, images, target)
        outputs = _lime_outputs(
            model, images, cells, patterns, classes, baseline, perturbations_per_eval, score
        )
        if weighting == "kernel":
            weights = _kernel_weights(images, cells, patterns, baseline)
        else:
            weights = torch.ones_like(outputs)
        return _weighted_fit(patterns, outputs, weights).to(images.device, torch.float32)


def _lime_outputs(
    model: nn.Module,
    images: Tensor,
    cells: Tensor,
    patterns: Tensor,
    classes: Tensor,
    baseline: float,
    per_eval: int,
    score: str,
) -> Tensor:
    """The model's score of the target class for every (image, pattern) pair, (B, n_samples):
    the pairs in image-major order, ``per_eval`` occluded copies per forward (they span
    images), each cell of a pattern kept or set to ``baseline``."""
    n_images, n_samples = images.shape[0], patterns.shape[0]
    outputs = images.new_empty((n_images * n_samples,), dtype=torch.float32)
    for start in range(0, n_images * n_samples, per_eval):  # chunks of copies bound the memory
        stop = min(start + per_eval, n_images * n_samples)
        pair = torch.arange(start, stop, device=cells.device)
        rows, drawn = pair // n_samples, pair % n_samples
        keep = patterns[drawn][:, cells]  # (n, H, W): each pixel's cell present or not
        copies = torch.where(keep[:, None], images[rows], baseline).to(images.dtype)
        logits = model(copies)
        scored = logits.softmax(dim=1) if score == "probability" else logits
        outputs[start:stop] = scored.gather(1, classes[rows, None])[:, 0].float()
    return outputs.reshape(n_images, n_samples)


def _kernel_weights(images: Tensor, cells: Tensor, patterns: Tensor, baseline: float) -> Tensor:
    """captum's LIME weight ``exp(-d^2 / 2)`` of every (image, pattern) pair, (B, n_samples),
    ``d`` one minus the cosine (norms clamped at 1e-8, as ``torch.cosine_similarity``) between
    the image and its copy with the pattern's absent cells set to ``baseline``, from per-cell
    sums: a copy's dot product with the image is ``sum_c z_c Q_c + (1 - z_c) b L_c`` and its
    squared norm ``sum_c z_c Q_c + (1 - z_c) b^2 N_c`` (``Q_c``, ``L_c``, ``N_c`` the sum of
    squares, the sum and the count of cell ``c``'s values over every channel)."""
    n_cells = patterns.shape[1]
    flat = images.flatten(2).to(torch.float64)  # (B, C, HW)
    index = cells.flatten()
    squares = flat.new_zeros(flat.shape[0], n_cells).index_add_(1, index, (flat * flat).sum(1))
    sums = flat.new_zeros(flat.shape[0], n_cells).index_add_(1, index, flat.sum(1))
    counts = torch.bincount(index, minlength=n_cells).to(torch.float64) * flat.shape[1]
    kept = patterns.to(torch.float64).t()  # (n_cells, S)
    shared = squares @ kept
    dot = shared + baseline * (sums @ (1 - kept))
    copy_norm = (shared + baseline**2 * (counts @ (1 - kept))[None]).sqrt().clamp_min(1e-8)
    image_norm = squares.sum(dim=1, keepdim=True).sqrt().clamp_min(1e-8)
    distance = 1 - dot / (image_norm * copy_norm)
    return (-(distance**2) / 2).exp().float()


def _weighted_fit(patterns: Tensor, outputs: Tensor, weights: Tensor) -> Tensor:
    """Each image's least-squares coefficients (B, n_cells) of ``outputs`` (B, S) on the
    ``patterns`` (S, n_cells) with an intercept, sample ``s`` weighted by ``weights[:, s]``:
    scikit-learn's ``LinearRegression`` as captum's ``SkLearnLinearRegression`` calls it
    (weighted centring, rows scaled by the root weights, the minimum-norm solution with
    singular values below 1e-6 of the largest dropped), in float64, a few images at a time."""
    design = patterns.to(torch.float64)
    n_images = outputs.shape[0]
    group = max(1, (1 << 22) // max(1, design.numel()))  # at most 32 MiB of design per group
    parts = []
    for first in range(0, n_images, group):  # chunks of images bound the memory
        y = outputs[first : first + group].to(torch.float64)
        w = weights[first : first + group].to(torch.float64)
        total = w.sum(dim=1, keepdim=True)
        x_mean = (w @ design) / total  # (g, n_cells)
        y_mean = (w * y).sum(dim=1, keepdim=True) / total
        root = w.sqrt()
        centred = root[:, :, None] * (design[None] - x_mean[:, None, :])  # (g, S, n_cells)
        response = root * (y - y_mean)
        solution = torch.linalg.pinv(centred, rtol=1e-6) @ response[:, :, None]
        parts.append(solution[:, :, 0])
    return torch.cat(parts)


def lime_spearman(
    model: nn.Module,
    images: Tensor,
    explanation_maps: Tensor,
    target: int | Tensor | None = None,
    patch: int = 32,
    n_samples: int = 1000,
    seed: int = 0,
    lime_scores: Tensor | None = None,
    **lime_options: Any,
) -> MetricResult:
    """Spearman rank correlation between LIME patch scores and explanation maps (section 4.3).

    ``explanation_maps`` (B, h, w) or (B, 1, h, w) are averaged per ``patch`` x ``patch`` square
    (:func:`patch_means`); LIME scores come from :func:`lime_patch_scores` on ``model`` (pass
    precomputed ``lime_scores`` (B, n_patches) to compare several maps with one LIME run).
    Returns a :class:`~torchlap.metrics.MetricResult` (higher is better, in [-1, 1]); images
    whose map or LIME scores are constant (no ranking) are excluded (``n_excluded``).
    """
    check_images(images)
    if isinstance(explanation_maps, Tensor) and explanation_maps.dim() == 4:
        if explanation_maps.shape[1] != 1:
            raise ValueError(
                f"explanation_maps must be (B, h, w) or (B, 1, h, w), got "
                f"{tuple(explanation_maps.shape)}"
            )
        explanation_maps = explanation_maps[:, 0]
    if not isinstance(explanation_maps, Tensor) or explanation_maps.dim() != 3:
        raise ValueError("explanation_maps must be a (B, h, w) tensor")
    if explanation_maps.shape[0] != images.shape[0]:
        raise ValueError(
            f"{explanation_maps.shape[0]} explanation maps for {images.shape[0]} images"
        )
    map_scores = patch_means(explanation_maps.detach().to(images.device), images.shape[-2:], patch)
    if lime_scores is None:
        lime_scores = lime_patch_scores(
            model, images, target, patch=patch, n_samples=n_samples, seed=seed, **lime_options
        )
    elif tuple(lime_scores.shape) != tuple(map_scores.shape):
        raise ValueError(
            f"lime_scores has shape {tuple(lime_scores.shape)}, expected "
            f"{tuple(map_scores.shape)} (B, n_patches)"
        )
    return mean_spearman(map_scores, lime_scores)
