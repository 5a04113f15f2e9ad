"""Paper 002's faithfulness comparison (section 4.3, Table 2): BLA-T against Grad-CAM.

Both maps are scored by the Spearman rank correlation of their cell means with LIME cell
scores (captum ``Lime``, as :func:`torchlap.metrics.lime_faithfulness.lime_patch_scores`), one
LIME run shared by both.

**LIME's grid.** The paper compares "LIME scores for patches of size 32x32 of the 224x224 input
images ..., resulting in explanations of size 7x7" with "the 7x7 soft explanations produced by
Q": LIME's patch ``i`` is BLA's cell ``i`` (a stride-32 feature map of a 224-px image). torchlap
keeps that pairing at every size: by default LIME's cells are the cells of BLA's own feature
map, ``h x w`` equal bands of the image (band ``i`` of an axis of ``S`` pixels spans
``[floor(i S / h), floor((i + 1) S / h))``, :func:`band_feature_mask`), so a ResNet's stride-32
map gives the paper's 32-px patches at 64, 128 and 224 px (2x2, 4x4, 7x7) and BLA's ``q`` is
compared as it is, never interpolated. An explicit ``patch`` gives square patches of that size
instead (the last row/column smaller when it does not divide the image), the maps then averaged
over them after bilinear upsampling.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from torchlap._checks import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_positive_int,
    check_seed,
)
from torchlap.explainers import GradCam
from torchlap.metrics._common import MetricResult, eval_mode
from torchlap.metrics.lime_faithfulness import (
    LIME_WEIGHTINGS,
    cell_means,
    check_images,
    lime_cell_scores,
    mean_spearman,
    patch_feature_mask,
    resolve_target,
)
from torchlap.models.bla import bla_maps

__all__ = [
    "LIME_CHECK_DEFAULTS",
    "LIME_CHECK_FIELDS",
    "band_feature_mask",
    "bla_lime_faithfulness",
    "check_lime_check_options",
    "lime_check_settings",
    "lime_section",
]

#: the options LIME takes besides the grid (as ``lime_patch_scores``)
_LIME_OPTIONS = ("baseline", "perturbations_per_eval", "score", "weighting")
#: the options of the LIME check that an evaluation passes on (``EvaluateOptions.lime_options``,
#: ``--lime-option KEY=VALUE``): LIME's and ``cam_relu``, with the defaults of
#: :func:`bla_lime_faithfulness`
LIME_CHECK_DEFAULTS: dict[str, Any] = {
    "baseline": 0.0,
    "perturbations_per_eval": 50,
    "score": "probability",
    "weighting": "kernel",
    "cam_relu": True,
}
#: the LIME check's sample count and cell size: ``--lime-option`` keys (the names
#: :func:`bla_lime_faithfulness` gives them) whose values are ``EvaluateOptions`` fields of
#: their own (one place for each setting: ``lime_options`` refuses them)
LIME_CHECK_FIELDS: dict[str, str] = {"n_samples": "lime_samples", "patch": "lime_patch"}


def band_feature_mask(
    height: int, width: int, rows: int, cols: int, device: torch.device | str | None = None
) -> Tensor:
    """(H, W) long tensor of cell indices, row-major, of the image cut into ``rows x cols``
    equal bands: band ``i`` of an axis of ``S`` pixels spans ``[floor(i S / n), floor((i + 1)
    S / n))`` for ``n`` bands (``rows <= height``, ``cols <= width``: no band is empty)."""
    for name, value, size in (("rows", rows, height), ("cols", cols, width)):
        check_positive_int(size, "height" if name == "rows" else "width")
        check_int(value, name, minimum=1, maximum=size)

    def bands(size: int, n: int) -> Tensor:
        upper = torch.tensor([(i + 1) * size // n for i in range(n)], device=device)
        return torch.bucketize(torch.arange(size, device=device), upper, right=True)

    return bands(height, rows)[:, None] * cols + bands(width, cols)[None, :]


@dataclass
class _Grid:
    """LIME's cells: the (H, W) index mask and the grid's shape."""

    mask: Tensor
    shape: tuple[int, int]
    patch: int | None  # the square size given, None: BLA's own grid as bands

    def describe(self) -> str:
        """The cells' size in pixels, ``"32"`` or ``"9-10"`` (ragged bands)."""
        if self.patch is not None:
            return str(self.patch)
        counts = [torch.bincount(self.mask[:, 0]), torch.bincount(self.mask[0])]
        sizes = sorted({int(c) for c in torch.cat(counts).tolist() if c})
        return str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"


def _grid(soft: Tensor, image_size: tuple[int, int], patch: int | None) -> _Grid:
    height, width = image_size
    if patch is not None:
        shape = (-(-height // patch), -(-width // patch))
        return _Grid(patch_feature_mask(height, width, patch, soft.device), shape, patch)
    rows, cols = int(soft.shape[-2]), int(soft.shape[-1])
    if rows * cols < 2 or rows > height or cols > width:
        what = (
            "one cell, which no rank correlation compares"
            if rows * cols < 2
            else "more cells than pixels"
        )
        raise ValueError(
            f"LIME faithfulness (paper 002, 4.3) pairs LIME's cells with the cells of BLA's "
            f"explanation, here a {rows}x{cols} feature map of a {height}x{width} image: {what}; "
            "use a larger input, or turn the check off (--lime-images 0); square patches also "
            "work (--lime-option patch=N; in Python EvaluateOptions(lime_patch=N), patch=N)"
        )
    return _Grid(band_feature_mask(height, width, rows, cols, soft.device), (rows, cols), None)


def lime_grid(model: nn.Module, images: Tensor, patch: int | None = None) -> tuple[int, int]:
    """The ``(rows, cols)`` of the cells the LIME check of ``model`` (a BLA model) uses on
    images like ``images`` (one forward of the first): BLA's feature-map cells, or
    ``patch``-pixel squares; raises ``ValueError`` where the check cannot run (a map of one
    cell, or of more cells than pixels)."""
    size = (int(images.shape[-2]), int(images.shape[-1]))
    return _grid(_soft_map(model, images[:1]), size, patch).shape


def _check_lime_arguments(
    images: Tensor, patch: object, n_samples: object, seed: object, lime_options: dict
) -> None:
    check_images(images)
    if patch is not None:
        check_positive_int(patch, "patch")
    check_positive_int(n_samples, "n_samples")
    check_seed(seed)
    unknown = sorted(set(lime_options) - set(_LIME_OPTIONS))
    if unknown:
        raise TypeError(f"unknown LIME option(s) {unknown}; accepted: {', '.join(_LIME_OPTIONS)}")
    _check_lime_values(lime_options)


def _check_lime_values(lime_options: Mapping[str, Any]) -> None:
    """The values of LIME's options (those given; ``TypeError``/``ValueError`` naming one)."""
    check_number(lime_options.get("baseline", 0.0), "baseline")
    check_positive_int(lime_options.get("perturbations_per_eval", 50), "perturbations_per_eval")
    check_choice(lime_options.get("score", "probability"), "score", ("probability", "logit"))
    check_choice(lime_options.get("weighting", "kernel"), "weighting", LIME_WEIGHTINGS)


def check_lime_check_options(options: object) -> dict[str, Any]:
    """``options`` (a dict of the LIME check's options, :data:`LIME_CHECK_DEFAULTS`: LIME's
    ``baseline``, ``perturbations_per_eval``, ``score``, ``weighting`` and Grad-CAM's
    ``cam_relu``, as :func:`bla_lime_faithfulness` takes them) checked: ``TypeError`` for
    another type, ``ValueError`` for an unknown key (naming the accepted ones; for a key of
    :data:`LIME_CHECK_FIELDS`, the ``EvaluateOptions`` field that holds it) and
    ``TypeError``/``ValueError`` for a bad value, as :func:`bla_lime_faithfulness` raises.
    Returns a copy, ``baseline`` as a float."""
    if not isinstance(options, Mapping):
        raise TypeError(f"lime_options must be a dict of LIME check options, got {options!r}")
    unknown = sorted(set(options) - set(LIME_CHECK_DEFAULTS))
    if unknown:
        accepted = ", ".join(LIME_CHECK_DEFAULTS)
        fields = [key for key in unknown if key in LIME_CHECK_FIELDS]
        hint = "".join(f"; {key} is EvaluateOptions.{LIME_CHECK_FIELDS[key]}" for key in fields)
        raise ValueError(f"unknown LIME check option(s) {unknown}; accepted: {accepted}{hint}")
    _check_lime_values(options)
    checked = dict(options)
    if "cam_relu" in checked:
        check_bool(checked["cam_relu"], "cam_relu")
    if "baseline" in checked:
        checked["baseline"] = float(checked["baseline"])
    return checked


def lime_check_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of ``options`` (checked LIME check options) that differ from
    :data:`LIME_CHECK_DEFAULTS`, sorted by name: what the check did differently from its
    defaults (``{}``: nothing), as the cache key and the results record it."""
    defaults = LIME_CHECK_DEFAULTS
    return {name: options[name] for name in sorted(options) if options[name] != defaults[name]}


def _soft_map(bla_model: nn.Module, images: Tensor) -> Tensor:
    """BLA's soft explanation ``q`` (B, h, w) of ``images``, eval mode, flags restored."""
    with eval_mode(bla_model), torch.no_grad():
        bla_model(images)
        return bla_maps(bla_model)["soft"][:, 0]


def bla_lime_faithfulness(
    bla_model: nn.Module,
    images: Tensor,
    baseline_model: nn.Module | None = None,
    target: int | Tensor | None = None,
    patch: int | None = None,
    n_samples: int = 1000,
    seed: int = 0,
    gradcam_layer: str | None = None,
    cam_relu: bool = True,
    **lime_options: Any,
) -> dict[str, MetricResult]:
    """Paper 002, section 4.3 / Table 2: rank correlation of LIME with BLA-T and with Grad-CAM.

    LIME cell scores and Grad-CAM maps are computed on ``baseline_model`` (the paper's
    "uninterpretable baseline model"; default ``bla_model`` itself, i.e. faithfulness to the
    BLA model), the soft explanation ``q`` on ``bla_model`` (eval mode); ``q`` is the map the
    paper compares ("the 7x7 soft explanations produced by Q"). One LIME run is shared by both
    maps. ``patch``: ``None`` (default) makes LIME's cells the cells of BLA's feature map
    (``h x w`` equal bands of the image, see the module docstring; the paper's 7x7 grid of
    32-px patches at 224 px), so LIME's cell ``i`` is ``q``'s cell ``i``; a positive int gives
    square patches of that many pixels. A BLA map of one cell (e.g. a ResNet's 1x1 at 32 px)
    is refused, after the BLA pass and before LIME. ``n_samples`` (positive int) occlusion
    patterns, seeded with ``seed`` (int); ``lime_options``: ``baseline`` (a number, the value
    of an occluded pixel, 0), ``perturbations_per_eval`` (positive int, 50), ``score``
    (``"probability"``, default, or ``"logit"``), ``weighting`` (``"kernel"``, default: LIME's
    proximity weights as captum computes them, or ``"none"``: plain least squares; see
    :func:`~torchlap.metrics.lime_faithfulness.lime_cell_scores`). ``target`` defaults to the
    reference model's predicted class; Grad-CAM uses ``gradcam_layer`` (default: the input
    of the global pool) and, with ``cam_relu=True`` (default), Grad-CAM's ReLU;
    ``cam_relu=False`` ranks the signed map ``sum_k alpha_k A_k``, which for a global pool and
    a linear head is CAM (Zhou et al.) divided by the number of positions (Table 2's column
    reads "LIME/CAM", the text "(Grad-)CAM").
    Returns ``{"bla": MetricResult, "gradcam": MetricResult}``; images whose map or LIME
    scores are constant (no ranking) are excluded (``n_excluded``).
    """
    _check_lime_arguments(images, patch, n_samples, seed, lime_options)
    check_bool(cam_relu, "cam_relu")
    reference = bla_model if baseline_model is None else baseline_model
    soft = _soft_map(bla_model, images)
    grid = _grid(soft, (int(images.shape[-2]), int(images.shape[-1])), patch)
    with eval_mode(reference):
        classes = resolve_target(reference, images, target)
    scores = lime_cell_scores(
        reference, images, grid.mask, classes, n_samples, seed, **lime_options
    )
    with GradCam(reference, layer=gradcam_layer, relu=cam_relu) as explainer:
        cam = explainer.raw(images, classes)
    return {
        "bla": mean_spearman(cell_means(soft.detach().float(), grid.mask, grid.shape), scores),
        "gradcam": mean_spearman(cell_means(cam.detach().float(), grid.mask, grid.shape), scores),
    }


def lime_section(
    model: nn.Module,
    images: Tensor,
    labels: Tensor | None,
    options: Any,
    device: torch.device,
    baseline: nn.Module | None = None,
) -> dict[str, Any]:
    """Paper 002's section 4.3 on the first ``options.lime_images`` of ``images``: Spearman
    correlation of LIME cell scores with BLA's soft explanation (of ``model``) and with
    Grad-CAM, one LIME run shared by both. LIME's cells are BLA's feature-map cells as bands of
    the image (``options.lime_patch=None``) or squares of ``options.lime_patch`` pixels. LIME
    and Grad-CAM explain ``baseline`` (the paper's "uninterpretable baseline model", a vanilla
    run of the same architecture and data) when it is given, else ``model`` itself. The class
    explained is ``labels`` (``options.target == "label"``) or, with ``labels=None``, the
    predicted class of the model LIME explains. ``"patch"`` in the result is the cells' size in
    pixels (``"9-10"`` for ragged bands), ``"grid"`` their ``[rows, cols]``. The LIME and
    Grad-CAM options are ``options.lime_options`` (:data:`LIME_CHECK_DEFAULTS`), recorded under
    ``"options"`` where they differ from the defaults."""
    count = min(options.lime_images, len(images))
    chosen = images[:count].to(device)
    # the grid bla_lime_faithfulness will use, from one image (refused here before any LIME)
    size = (int(chosen.shape[-2]), int(chosen.shape[-1]))
    grid = _grid(_soft_map(model, chosen[:1]), size, options.lime_patch)
    started = time.perf_counter()
    metrics = bla_lime_faithfulness(
        model,
        chosen,
        baseline_model=baseline,
        target=None if labels is None else labels[:count].to(device),
        patch=options.lime_patch,
        n_samples=options.lime_samples,
        seed=options.seed,
        **options.lime_options,
    )
    settings = lime_check_settings(options.lime_options)
    return {
        **{name: value.to_dict() for name, value in metrics.items()},
        "patch": grid.describe(),
        "grid": list(grid.shape),
        "n_samples": options.lime_samples,
        **({"options": settings} if settings else {}),
        "seconds": time.perf_counter() - started,
    }
