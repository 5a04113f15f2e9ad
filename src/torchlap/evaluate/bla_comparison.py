"""Paper 002's faithfulness comparison (section 4.3, Table 2): BLA-T against Grad-CAM.

Both maps are scored by the Spearman rank correlation of their patch means with LIME patch
scores (:mod:`torchlap.metrics.lime_faithfulness`), one LIME run shared by both.
"""

from __future__ import annotations

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

__all__ = ["bla_lime_faithfulness"]


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
