"""Paper 002's faithfulness comparison (section 4.3, Table 2): BLA-T against Grad-CAM.

Both maps are scored by the Spearman rank correlation of their patch means with LIME patch
scores (:mod:`torchlap.metrics.lime_faithfulness`), one LIME run shared by both.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from torchlap.explainers import GradCam
from torchlap.metrics._common import MetricResult
from torchlap.metrics.lime_faithfulness import (
    EvalMode,
    check_images,
    lime_patch_scores,
    lime_spearman,
    resolve_target,
)
from torchlap.models.bla import bla_maps

__all__ = ["bla_lime_faithfulness", "lime_section"]


def bla_lime_faithfulness(
    bla_model: nn.Module,
    images: Tensor,
    baseline_model: nn.Module | None = None,
    target: int | Tensor | None = None,
    patch: int = 32,
    n_samples: int = 1000,
    seed: int = 0,
    gradcam_layer: str | None = None,
    **lime_options: Any,
) -> dict[str, MetricResult]:
    """Paper 002, section 4.3 / Table 2: rank correlation of LIME with BLA-T and with Grad-CAM.

    LIME patch scores and Grad-CAM maps are computed on ``baseline_model`` (the paper's
    "uninterpretable baseline model"; default ``bla_model`` itself, i.e. faithfulness to the
    BLA model), the soft explanation ``q`` on ``bla_model`` (eval mode). One LIME run is shared
    by both maps. ``target`` defaults to the reference model's predicted class; Grad-CAM uses
    ``gradcam_layer`` (default: the input of the global pool). Returns
    ``{"bla": MetricResult, "gradcam": MetricResult}``.
    """
    check_images(images)
    reference = bla_model if baseline_model is None else baseline_model
    with EvalMode(bla_model), torch.no_grad():
        bla_model(images)
        soft = bla_maps(bla_model)["soft"][:, 0]
    with EvalMode(reference):
        classes = resolve_target(reference, images, target)
    scores = lime_patch_scores(
        reference, images, classes, patch=patch, n_samples=n_samples, seed=seed, **lime_options
    )
    with GradCam(reference, layer=gradcam_layer) as explainer:
        cam = explainer.raw(images, classes)
    return {
        "bla": lime_spearman(reference, images, soft, classes, patch, lime_scores=scores),
        "gradcam": lime_spearman(reference, images, cam, classes, patch, lime_scores=scores),
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
    correlation of LIME patch scores with BLA's soft explanation (of ``model``) and with
    Grad-CAM, one LIME run shared by both. LIME and Grad-CAM explain ``baseline`` (the paper's
    "uninterpretable baseline model", a vanilla run of the same architecture and data) when it
    is given, else ``model`` itself. The class explained is ``labels`` (``options.target ==
    "label"``) or, with ``labels=None``, the predicted class of the model LIME explains."""
    count = min(options.lime_images, len(images))
    side = min(images.shape[-2:])
    patch = options.lime_patch or max(1, round(side * 32 / 224))
    started = time.perf_counter()
    metrics = bla_lime_faithfulness(
        model,
        images[:count].to(device),
        baseline_model=baseline,
        target=None if labels is None else labels[:count].to(device),
        patch=patch,
        n_samples=options.lime_samples,
        seed=options.seed,
    )
    return {
        **{name: value.to_dict() for name, value in metrics.items()},
        "patch": patch,
        "n_samples": options.lime_samples,
        "seconds": time.perf_counter() - started,
    }
