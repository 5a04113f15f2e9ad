"""One method's metrics on one run: localization, faithfulness and stability (step 3 of
:mod:`torchlap.evaluate.core`).

What differs between methods comes from the explainer's facts (:mod:`torchlap.explainers.base`):
a method with a ``native_threshold`` (LAP's 0.5) is binarized there and its maps are not
rescaled, every other method gets a global threshold fitted on the validation images; a method
whose ``ranking_options`` differ (LAP's "LAP All" variants) gives the metrics that rank pixels
their own maps.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

import torchlap.metrics as metrics
from torchlap.evaluate.common import (
    EvalData,
    explain_all,
    flat_map_counts,
    method_options,
    metric,
)
from torchlap.explainers import get

__all__ = ["BINARIZE_NORMALIZATION", "BINARIZE_THRESHOLD", "evaluate_method"]

#: the binarized energy map of Drop/Inc/Win and stability (paper 004): each map min-max
#: normalised per image, region = values >= 0.8 (:func:`torchlap.metrics.binarize_map`);
#: ``results.json["protocol"]["drop_inc_win_binarization"]`` records it
BINARIZE_THRESHOLD = 0.8
BINARIZE_NORMALIZATION = "min_max"

_LOCALIZATION_KEYS = {
    "iou_threshold": "iou_threshold",
    "iou_topk": "iou_topk",
    "ebpg": "ebpg",
    "miou_top20": "miou_top20",
    "bbox_accuracy": "bbox",
    "pointing_game": "pointing_game",
}


def evaluate_method(
    method: str,
    model: nn.Module,
    test: EvalData,
    val: EvalData,
    test_targets: Tensor,
    val_targets: Tensor,
    options: Any,
    device: torch.device,
    concept_sets: Any = None,
) -> tuple[dict[str, Any], Tensor]:
    """All localization, faithfulness and stability metrics of one method; and its maps.

    ``options``: an :class:`~torchlap.evaluate.EvaluateOptions`. ``concept_sets``: the run's
    (``load_run(run).concept_sets``), given to the explainers that take them (``lap``: each
    class explained by its own concept heads). For ``lap`` the metrics that rank pixels read
    the ``options.lap_all_ranking`` "LAP All" and the others Algorithm 1's (the returned maps).
    """
    chosen = method_options(method, options, {"concept_sets": concept_sets})
    start = time.perf_counter()
    maps = explain_all(model, test.images, test_targets, method, chosen, options.batch_size, device)
    seconds = time.perf_counter() - start
    # the maps of the metrics that rank pixels (top-k, top-k%, maximum): for LAP the LAP All
    # of top-scored selection, the same maps for every other method
    rank_maps = maps
    rank_options = get(method).ranking_options(chosen, options.lap_all_ranking)
    if rank_options is not None:
        rank_maps = explain_all(
            model, test.images, test_targets, method, rank_options, options.batch_size, device
        )
    out: dict[str, Any] = {
        "timing": {"seconds": seconds, "images_per_second": len(test) / max(seconds, 1e-9)},
        "maps": flat_map_counts(maps),
    }
    notes: list[str] = []
    if bool(test.has_region.any()):
        out.update(
            _localization(method, model, test, val, val_targets, maps, rank_maps, chosen,
                          options, device, notes)
        )  # fmt: skip
    else:
        notes.append("no sample of the split has a region: localization skipped")
    label_maps = _label_class_maps(method, model, test, test_targets, rank_maps,
                                   rank_options or chosen, options, device)  # fmt: skip
    out["faithfulness"] = _faithfulness(model, test, maps, rank_maps, label_maps, options)
    out["stability"] = _stability(method, model, test, maps, chosen, options, device)
    if notes:
        out["notes"] = notes
    return out, maps


def _localization(
    method: str,
    model: nn.Module,
    test: EvalData,
    val: EvalData,
    val_targets: Tensor,
    maps: Tensor,
    rank_maps: Tensor,
    chosen: dict[str, Any],
    options: Any,
    device: torch.device,
    notes: list[str],
) -> dict[str, Any]:
    """Paper 000 Table II; SISE's EBPG, mIoU, Bbox; pointing game (``localization`` and the
    per-sample IoU the examples are picked from)."""
    threshold = get(method).native_threshold
    normalize = threshold is None
    if threshold is None:
        threshold = _fitted_threshold(method, model, val, val_targets, chosen, options, device,
                                      notes)  # fmt: skip
    results = metrics.localization_metrics(
        rank_maps, test.masks, threshold=threshold, normalize=normalize, value_maps=maps
    )
    localization = {_LOCALIZATION_KEYS[k]: metric(v) for k, v in results.items()}
    if threshold is None:  # the key stays, undefined, so every method has the same keys
        n_region = int(test.has_region.sum())
        localization["iou_threshold"] = {
            "value": None, "higher_is_better": True, "n": 0,
            "n_excluded": n_region, "reason": notes[-1],
        }  # fmt: skip
    localization["threshold"] = threshold
    per_sample = results["iou_topk"].per_sample.tolist()
    return {
        "localization": localization,
        "per_sample_iou_topk": [None if math.isnan(v) else v for v in per_sample],
    }


def _fitted_threshold(
    method: str,
    model: nn.Module,
    val: EvalData,
    val_targets: Tensor,
    chosen: dict[str, Any],
    options: Any,
    device: torch.device,
    notes: list[str],
) -> float | None:
    """The global threshold that separates pixels inside from outside the regions, fitted on
    the validation samples (paper 000), or only on those holding a region (option); ``None``
    (with a note) when it cannot be fitted."""
    region = val.masks.flatten(1).any(dim=1)
    if not bool(region.any()):
        notes.append("no global threshold: no validation image holds a region")
        return None
    if options.threshold_fit == "all":
        region = torch.ones_like(region)
    val_maps = explain_all(
        model, val.images[region], val_targets[region], method, chosen, options.batch_size,
        device,
    )  # fmt: skip
    try:
        return metrics.fit_global_threshold(
            val_maps, val.masks[region], classifier=options.threshold_classifier, seed=options.seed
        )
    except ValueError as error:
        notes.append(f"no global threshold: {error}")
        return None


def _label_class_maps(
    method: str,
    model: nn.Module,
    test: EvalData,
    test_targets: Tensor,
    rank_maps: Tensor,
    rank_options: dict[str, Any],
    options: Any,
    device: torch.device,
) -> tuple[Tensor, Tensor] | None:
    """The ranking maps of the label class for the images whose explained class is not their
    label (paper 000's supplement evaluates keep-k% against the ground truth with maps of the
    ground-truth class): ``(indices, maps)``, only those images explained again, batched;
    ``None`` when every image was explained for its label."""
    wrong = torch.nonzero(test_targets.cpu() != test.labels.cpu()).flatten()
    if wrong.numel() == 0:
        return None
    maps = explain_all(model, test.images[wrong], test.labels[wrong], method, rank_options,
                       options.batch_size, device)  # fmt: skip
    return wrong, maps


def _keep_top_k(
    model: nn.Module,
    test: EvalData,
    rank_maps: Tensor,
    label_maps: tuple[Tensor, Tensor] | None,
    options: Any,
) -> dict[str, dict[str, Any]]:
    """keep-k% by k: ``*_vs_prediction`` from the explained class's maps, ``*_vs_label`` from
    maps of the label class (the explained maps where the class is the label, the images in
    ``label_maps`` with their label-class maps, scored on their own: with ``ties="random"``
    their tie-break draws are not those of a ``target="label"`` evaluation, an estimate of the
    same expectation)."""
    ties = {"ties": options.ties, "tie_draws": options.tie_draws, "seed": options.seed}
    common = {"ks": options.ks, "baseline": options.baseline, "batch_size": options.batch_size}
    keep = metrics.keep_top_k(model, test.images, rank_maps, test.labels, **common, **ties)
    if label_maps is not None:
        wrong, maps = label_maps
        again = metrics.keep_top_k(model, test.images[wrong], maps, test.labels[wrong],
                                   **common, **ties)  # fmt: skip
        for name, value in again.items():
            if name.split("/", 1)[1].endswith("_vs_label"):
                keep[name] = _merged(keep[name], wrong, value)
    keep_by_k: dict[str, dict[str, Any]] = {}
    for name, value in keep.items():
        k_label, key = name.split("/", 1)
        keep_by_k.setdefault(k_label.removeprefix("keep_"), {})[key] = metric(value)
    return keep_by_k


def _merged(whole: Any, rows: Tensor, part: Any) -> Any:
    """``whole`` (a MetricResult over every image) with the samples ``rows`` taken from
    ``part`` (computed on those images alone)."""
    per_sample = whole.per_sample.clone()
    per_sample[rows] = part.per_sample.to(per_sample.dtype)
    valid = ~per_sample.isnan()
    n = int(valid.sum())
    value = float(per_sample[valid].mean()) if n else float("nan")
    return replace(whole, value=value, n=n, n_excluded=len(per_sample) - n, per_sample=per_sample)


def _faithfulness(
    model: nn.Module,
    test: EvalData,
    maps: Tensor,
    rank_maps: Tensor,
    label_maps: tuple[Tensor, Tensor] | None,
    options: Any,
) -> dict[str, Any]:
    """keep-k% (paper 000), Drop/Increase (SISE) and Drop/Inc/Win (ante-hoc)."""
    ties = {"ties": options.ties, "tie_draws": options.tie_draws, "seed": options.seed}
    keep_by_k = _keep_top_k(model, test, rank_maps, label_maps, options)
    sise = metrics.drop_increase(
        model, test.images, rank_maps, test.labels, baseline=options.baseline,
        batch_size=options.batch_size, **ties,
    )  # fmt: skip
    antehoc = metrics.drop_inc_win(
        model, test.images, maps, test.labels, batch_size=options.batch_size,
        binarize_threshold=BINARIZE_THRESHOLD, binarize_normalization=BINARIZE_NORMALIZATION,
    )  # fmt: skip
    return {
        "keep_top_k": keep_by_k,
        "keep_top_k_label_maps": {
            "n_explained_again": 0 if label_maps is None else int(label_maps[0].numel())
        },
        "drop": metric(sise["drop_pct"]),
        "increase": metric(sise["increase_pct"]),
        "win": metric(antehoc["energy/win_pct"]),
        "drop_inc_win": {name: metric(value) for name, value in antehoc.items()},
    }


def _stability(
    method: str,
    model: nn.Module,
    test: EvalData,
    maps: Tensor,
    chosen: dict[str, Any],
    options: Any,
    device: torch.device,
) -> dict[str, Any]:
    """Stability (paper 004): maps recomputed on noisy copies of a subset."""
    subset = slice(0, min(options.stability_images, len(test)))

    def explain_fn(images: Tensor, labels: Tensor) -> Tensor:
        targets = labels if options.target == "label" else _predictions(model, images, device)
        return explain_all(model, images, targets, method, chosen, options.batch_size, device)

    stable = metrics.stability(
        model,
        explain_fn,
        test.images[subset],
        test.labels[subset],
        fractions=options.stability_fractions,
        maps=maps[subset],
        seed=options.seed,
        batch_size=options.batch_size,
        binarize_threshold=BINARIZE_THRESHOLD,
        binarize_normalization=BINARIZE_NORMALIZATION,
    )
    by_fraction: dict[str, dict[str, Any]] = {}
    for name, value in stable.items():
        noise, key = name.split("/", 1)
        key = {"change_drop_pct": "change_drop", "change_inc_pct": "change_inc"}.get(key, key)
        by_fraction.setdefault(noise.removeprefix("noise_"), {})[key] = metric(value)
    return by_fraction


@torch.no_grad()
def _predictions(model: nn.Module, images: Tensor, device: torch.device) -> Tensor:
    return model(images.to(device)).argmax(dim=1).cpu()
