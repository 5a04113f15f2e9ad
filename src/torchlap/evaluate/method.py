"""One method's metrics on one run: localization, faithfulness and stability (step 3 of
:mod:`torchlap.evaluate.core`).

What differs between methods comes from the explainer's facts (:mod:`torchlap.explainers.base`):
a method with a ``native_threshold`` (LAP's 0.5) is binarized there and its maps are not
rescaled (at its ``threshold`` option when the user gives one), every other method gets a global
threshold fitted on the validation images; a method whose ``ranking_options`` differ (LAP's
"LAP All" variants) gives the metrics that rank pixels their own maps.

Each metric reads maps of the class it scores, whatever ``--target`` explains: keep-k% "vs
label", Drop/Inc/Win and stability (paper 004 scores the ground-truth class) maps of the label
class, keep-k% "vs prediction" maps of the predicted class, Drop%/Increase% (paper 003) the
explained class. The images whose explained class is not the scored one are explained again
for it, only those, batched.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

import torchlap.metrics as metrics
from torchlap.evaluate.common import (
    METRICS_REVISION,
    EvalData,
    explain_all,
    flat_map_counts,
    method_options,
    metric,
)
from torchlap.evaluate.intervals import FAITHFULNESS_PREFIX
from torchlap.evaluate.options import EvaluateOptions
from torchlap.explainers import get
from torchlap.explainers.lap import concept_mapping

__all__ = ["BINARIZE_NORMALIZATION", "BINARIZE_THRESHOLD", "evaluate_method", "protocol"]

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


def protocol(options: EvaluateOptions, concept_sets: Any = None) -> dict[str, Any]:
    """The protocol choices behind the numbers (``results.json["protocol"]``), so that two
    evaluations can be compared knowingly."""
    sets = concept_mapping(concept_sets)
    return {
        "metrics_revision": METRICS_REVISION,
        "threshold_fit_set": (
            "all validation images" if options.threshold_fit == "all"
            else "validation images holding a region"
        ),
        "threshold_classifier": options.threshold_classifier,
        "max_val_images": options.max_val_images,
        "tie_rule": {
            "localization": "expectation over a uniformly random choice among tied pixels",
            "keep_top_k_and_drop_increase": (
                f"mean of {options.tie_draws} seeded uniformly random tie-breaks "
                f"(seed {options.seed}, seeded per image: an image's draws depend on the seed "
                "and its index in the split, before --max-images cut it, alone) for the "
                "samples whose selection depends on them"
                if options.ties == "random"
                else "lowest flat index first (raster order)"
            ),
            "drop_inc_win": "thresholds and energy maps: no order involved",
            "ties": options.ties,
            "tie_draws": options.tie_draws if options.ties == "random" else 1,
        },
        "lap_all": {
            "ranking_metrics": options.lap_all_ranking,
            "value_metrics": "algorithm1",
            "ranking_metric_names": [
                "iou_topk", "miou_top20", "bbox", "pointing_game", "keep_top_k", "drop",
                "increase",
            ],
            "value_metric_names": ["iou_threshold", "ebpg", "drop_inc_win", "stability"],
        },
        "lap_concept_sets": None if sets is None else {str(k): list(v) for k, v in sets.items()},
        "lap_common_heads": "left out (include_common=False)",
        "drop_inc_win_binarization": {
            "rule": "each map clipped at 0, min-max normalised per image, region = values >= "
                    "the threshold (torchlap.metrics.binarize_map)",
            "threshold": BINARIZE_THRESHOLD,
            "normalization": BINARIZE_NORMALIZATION,
        },
        "keep_top_k_vs_label_maps": (
            "maps of the label class (misclassified images explained again for their label)"
            if options.target == "prediction" else "maps of the label class (target: label)"
        ),
        "keep_top_k_vs_prediction_maps": (
            "maps of the predicted class (target: prediction)" if options.target == "prediction"
            else "maps of the predicted class (misclassified images explained again for their "
                 "prediction)"
        ),
        "drop_increase_class": f"the explained class (target: {options.target})",
        "drop_inc_win_and_stability_maps": (
            "maps of the label class, the class they score (paper 004)"
            + (" (misclassified images explained again for their label; noisy images "
               "explained for their label)" if options.target == "prediction" else "")
        ),
        "stability_noise": (
            f"salt and pepper seeded per image (seed {options.seed}): an image's noisy copy "
            "depends on the seed, its index in the split (before --max-images cut it), the "
            "noise level's index and the pixel alone (torchlap.metrics.salt_and_pepper)"
        ),
        "nonfinite_maps": "a map holding NaN/inf is scored as a flat all-zero map, counted",
        "energy_map_space": (
            "Drop/Inc/Win and stability: the model's input (the normalised image) times the "
            "map, as paper 004 trains, for every method (B-cos: the [0, 1] image before its "
            "[x, 1 - x] encoding); keep-k% and Drop%/Increase%: removed pixels set to the "
            "baseline in [0, 1] image space (zero: black)"
        ),
    }  # fmt: skip


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
    *,
    predictions: Tensor | None = None,
) -> tuple[dict[str, Any], Tensor]:
    """All localization, faithfulness and stability metrics of one method; and its maps.

    ``options``: an :class:`~torchlap.evaluate.EvaluateOptions`. ``concept_sets``: the run's
    (``load_run(run).concept_sets``), given to the explainers that take them (``lap``: each
    class explained by its own concept heads). For ``lap`` the metrics that rank pixels read
    the ``options.lap_all_ranking`` "LAP All" and the others Algorithm 1's (the returned maps).
    ``predictions``: the model's class per test image (``None``: ``test_targets`` under
    ``options.target == "prediction"``, else one batched forward pass).

    Every metric reads maps of the class it scores: the maps explain ``test_targets``; keep-k%
    "vs label", Drop/Inc/Win and stability (paper 004: "k is the ground truth class") read maps
    of the label class, keep-k% "vs prediction" maps of the predicted class, Drop%/Increase%
    score the explained class (``target=options.target``). Only the images whose explained
    class is not the one scored are explained again, batched. A map holding NaN/inf is scored
    as a flat all-zero map (:func:`~torchlap.evaluate.common.explain_all`): ``results["maps"]
    ["n_nonfinite"]`` counts the evaluated ones, a note names them and any other.
    """
    chosen = method_options(method, options, {"concept_sets": concept_sets})
    explain = _Explaining(method, model, chosen, options.batch_size, device)
    evaluated: list[int] = []
    start = time.perf_counter()
    maps = explain(test.images, test_targets, nonfinite=evaluated)
    seconds = time.perf_counter() - start
    # the maps of the metrics that rank pixels (top-k, top-k%, maximum): for LAP the LAP All
    # of top-scored selection, the same maps for every other method
    rank_maps = maps
    rank_options = get(method).ranking_options(chosen, options.lap_all_ranking)
    if rank_options is not None:
        rank_maps = explain(test.images, test_targets, rank_options)
    out: dict[str, Any] = {
        "timing": {"seconds": seconds, "images_per_second": len(test) / max(seconds, 1e-9)},
        "maps": {**flat_map_counts(maps), "n_nonfinite": sum(evaluated)},
    }
    notes: list[str] = []
    if bool(test.has_region.any()):
        out.update(_localization(explain, test, val, val_targets, maps, rank_maps, options, notes))
    else:
        notes.append("no sample of the split has a region: localization skipped")
    if predictions is None:
        predictions = (
            test_targets if options.target == "prediction" else _predictions(explain, test)
        )
    classes = _class_maps(explain, test, test_targets, predictions, maps, rank_options)
    out["faithfulness"], faithful = _faithfulness(model, test, rank_maps, classes, options)
    out["per_sample"] = {**out.get("per_sample", {}), **faithful}
    out["stability"] = _stability(explain, model, test, classes.label_values, options)
    notes.extend(_nonfinite_notes(method, sum(evaluated), len(test), sum(explain.nonfinite)))
    if notes:
        out["notes"] = notes
    return out, maps


@dataclass
class _Explaining:
    """How one method explains (model, options, batch size, device), and the count of the maps
    holding NaN/inf among every explanation beyond the evaluated maps."""

    method: str
    model: nn.Module
    options: dict[str, Any]
    batch_size: int
    device: torch.device
    nonfinite: list[int] = field(default_factory=list)

    def __call__(
        self,
        images: Tensor,
        targets: Tensor,
        options: dict[str, Any] | None = None,
        nonfinite: list[int] | None = None,
    ) -> Tensor:
        return explain_all(
            self.model, images, targets, self.method,
            self.options if options is None else options, self.batch_size, self.device,
            nonfinite=self.nonfinite if nonfinite is None else nonfinite,
        )  # fmt: skip


def _nonfinite_notes(method: str, evaluated: int, n: int, others: int) -> list[str]:
    """The notes of the maps that held NaN/inf (scored as flat all-zero maps)."""
    notes = []
    if evaluated:
        notes.append(
            f"{method}: {evaluated} of {n} evaluated maps held NaN or infinite values; each was "
            "scored as a flat (all-zero) map"
        )
    if others:
        notes.append(
            f"{method}: {others} of its other maps (ranking, other-class, validation or "
            "noisy-image maps) held NaN or infinite values; each was used as a flat (all-zero) map"
        )
    return notes


def _localization(
    explain: _Explaining,
    test: EvalData,
    val: EvalData,
    val_targets: Tensor,
    maps: Tensor,
    rank_maps: Tensor,
    options: Any,
    notes: list[str],
) -> dict[str, Any]:
    """Paper 000 Table II; SISE's EBPG, mIoU, Bbox; pointing game (``localization``, and
    ``per_sample``: each metric's per-image scores, ``None`` for an excluded image). A method
    with a native threshold (LAP's 0.5) is binarized at its ``threshold`` option when one is
    given (``--method-options``)."""
    threshold = get(explain.method).native_threshold
    normalize = threshold is None
    if threshold is None:
        threshold = _fitted_threshold(explain, val, val_targets, options, notes)
    else:
        threshold = float(explain.options.get("threshold", threshold))
    results = metrics.localization_metrics(
        rank_maps, test.masks, threshold=threshold, normalize=normalize, value_maps=maps
    )
    localization = {_LOCALIZATION_KEYS[k]: metric(v) for k, v in results.items()}
    if threshold is None:  # the key stays, undefined, so every method has the same keys
        n_region = int(test.masks.flatten(1).any(1).sum())  # as the metrics: non-empty
        localization["iou_threshold"] = {
            "value": None, "higher_is_better": True, "n": 0,
            "n_excluded": n_region, "reason": notes[-1],
        }  # fmt: skip
    localization["threshold"] = threshold
    # each image's score (None: excluded), for the examples (best, median, worst IoU by top-K)
    # and the bootstrap intervals, which torchlap.evaluate.intervals computes after all methods
    per_sample = _score_lists({_LOCALIZATION_KEYS[name]: r for name, r in results.items()})
    return {"localization": localization, "per_sample": per_sample}


def _score_lists(results: dict[str, Any], prefix: str = "") -> dict[str, list[float | None]]:
    """Each result's per-image scores as results.json keeps them (``None``: an excluded image),
    keyed ``prefix + name`` (the bootstrap intervals read them: :mod:`.intervals`)."""
    return {
        prefix + name: [None if math.isnan(x) else x for x in result.per_sample.tolist()]
        for name, result in results.items()
        if result.per_sample is not None
    }


def _fitted_threshold(
    explain: _Explaining,
    val: EvalData,
    val_targets: Tensor,
    options: Any,
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
    val_maps = explain(val.images[region], val_targets[region])
    try:
        return metrics.fit_global_threshold(
            val_maps, val.masks[region], classifier=options.threshold_classifier, seed=options.seed
        )
    except ValueError as error:
        notes.append(f"no global threshold: {error}")
        return None


@dataclass
class _ClassMaps:
    """The maps of the class each metric scores, beyond the explained class's: ``(rows,
    ranking maps)`` of the label class (keep-k% "vs label") and of the predicted class
    (keep-k% "vs prediction") for the rows whose explained class differs (``None``: none
    differs), and the value maps of the label class for every image (Drop/Inc/Win,
    stability)."""

    label_rank: tuple[Tensor, Tensor] | None
    prediction_rank: tuple[Tensor, Tensor] | None
    label_values: Tensor
    n_label_values_again: int


def _class_maps(
    explain: _Explaining,
    test: EvalData,
    test_targets: Tensor,
    predictions: Tensor,
    maps: Tensor,
    rank_options: dict[str, Any] | None,
) -> _ClassMaps:
    """Paper 000's supplement evaluates keep-k% against the ground truth with maps of the
    ground-truth class; paper 004 scores Drop/Inc/Win and stability on the ground-truth class:
    the images whose explained class is not the scored one are explained again for it (only
    those, batched). The label-class maps of keep-k% serve Drop/Inc/Win too when the method
    ranks by its own maps (no second explanation of the same images)."""
    labels = test.labels.cpu()
    label_rank = _explained_again(explain, test, test_targets, labels, rank_options)
    prediction_rank = _explained_again(explain, test, test_targets, predictions, rank_options)
    label_values, again = maps, 0
    if label_rank is not None:
        rows, rank_label_maps = label_rank
        if rank_options is None:
            value_maps = rank_label_maps
        else:  # LAP All: the ranking variant differs from the value maps'
            value_maps = explain(test.images[rows], labels[rows])
        label_values = maps.clone()
        label_values[rows] = value_maps
        again = int(rows.numel())
    return _ClassMaps(label_rank, prediction_rank, label_values, again)


def _explained_again(
    explain: _Explaining,
    test: EvalData,
    explained: Tensor,
    wanted: Tensor,
    rank_options: dict[str, Any] | None,
) -> tuple[Tensor, Tensor] | None:
    """``(rows, ranking maps of the class wanted)`` for the rows whose explained class is not
    ``wanted``; ``None`` when there is none."""
    rows = torch.nonzero(explained.cpu() != wanted.cpu()).flatten()
    if rows.numel() == 0:
        return None
    return rows, explain(test.images[rows], wanted.cpu()[rows], rank_options)


def _keep_top_k(
    model: nn.Module,
    test: EvalData,
    rank_maps: Tensor,
    classes: _ClassMaps,
    options: Any,
) -> dict[str, Any]:
    """keep-k% (``"<k>/<name>"``: a MetricResult): ``*_vs_prediction`` from maps of the
    predicted class, ``*_vs_label`` from maps of the label class (the explained maps where the
    class is the one scored, the rows of ``classes`` with their other-class maps, scored on
    their own with their ids (``test.image_ids``): with ``ties="random"`` they get the draws an
    evaluation of the other ``target`` gives them, the draws being seeded per image)."""
    ties = {"ties": options.ties, "tie_draws": options.tie_draws, "seed": options.seed}
    common = {"ks": options.ks, "baseline": options.baseline, "batch_size": options.batch_size}
    keep = metrics.keep_top_k(model, test.images, rank_maps, test.labels, **common, **ties,
                              image_ids=test.image_ids)  # fmt: skip
    for again, scored in ((classes.label_rank, "_vs_label"),
                          (classes.prediction_rank, "_vs_prediction")):  # fmt: skip
        if again is None:
            continue
        rows, maps = again
        part = metrics.keep_top_k(model, test.images[rows], maps, test.labels[rows],
                                  **common, **ties, image_ids=test.image_ids[rows])  # fmt: skip
        for name, value in part.items():
            if name.endswith(scored):
                keep[name] = _merged(keep[name], rows, value)
    return {name.removeprefix("keep_"): value for name, value in keep.items()}


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
    rank_maps: Tensor,
    classes: _ClassMaps,
    options: Any,
) -> tuple[dict[str, Any], dict[str, list[float | None]]]:
    """keep-k% (paper 000), Drop/Increase (SISE, on the explained class) and Drop/Inc/Win
    (ante-hoc, on the label class with maps of the label class): the ``faithfulness`` section
    and each metric's per-image scores (keyed ``"faithfulness/<path in the section>"``)."""
    ties = {"ties": options.ties, "tie_draws": options.tie_draws, "seed": options.seed}
    keep = _keep_top_k(model, test, rank_maps, classes, options)
    keep_by_k: dict[str, dict[str, Any]] = {}
    for name, value in keep.items():
        k, key = name.split("/", 1)
        keep_by_k.setdefault(k, {})[key] = metric(value)
    sise = metrics.drop_increase(
        model, test.images, rank_maps, test.labels, target=options.target,
        baseline=options.baseline, batch_size=options.batch_size, **ties,
        image_ids=test.image_ids,
    )  # fmt: skip
    scorer, to_input = _input_space(model)
    antehoc = metrics.drop_inc_win(
        scorer, test.images, classes.label_values, test.labels, batch_size=options.batch_size,
        binarize_threshold=BINARIZE_THRESHOLD, binarize_normalization=BINARIZE_NORMALIZATION,
        to_input=to_input,
    )  # fmt: skip

    def again(rows: tuple[Tensor, Tensor] | None) -> dict[str, int]:
        return {"n_explained_again": 0 if rows is None else int(rows[0].numel())}

    section = {
        "keep_top_k": keep_by_k,
        "keep_top_k_label_maps": again(classes.label_rank),
        "keep_top_k_prediction_maps": again(classes.prediction_rank),
        "drop_inc_win_label_maps": {"n_explained_again": classes.n_label_values_again},
        "drop": metric(sise["drop_pct"]),
        "increase": metric(sise["increase_pct"]),
        "win": metric(antehoc["energy/win_pct"]),
        "drop_inc_win": {name: metric(value) for name, value in antehoc.items()},
    }
    scored = {"drop": sise["drop_pct"], "increase": sise["increase_pct"],
              "win": antehoc["energy/win_pct"],
              **{f"keep_top_k/{name}": value for name, value in keep.items()},
              **{f"drop_inc_win/{name}": value for name, value in antehoc.items()}}  # fmt: skip
    return section, _score_lists(scored, FAITHFULNESS_PREFIX)


def _stability(
    explain: _Explaining,
    model: nn.Module,
    test: EvalData,
    label_maps: Tensor,
    options: Any,
) -> dict[str, Any]:
    """Stability (paper 004): the change of Drop(%)/Inc(%), which score the label class, when
    the maps are recomputed on noisy copies of a subset: clean and noisy maps both explain the
    label class (``label_maps``: the clean ones), whatever ``options.target``. The subset is
    the first ``options.stability_images`` test images; each is noised by its id (its index
    in the split before ``--max-images`` cut it: ``test.image_ids``) and ``options.seed``
    (:func:`~torchlap.metrics.salt_and_pepper`'s per-image draws), so its noisy copy does not
    depend on the subset's size, on ``--max-images`` or on the batches."""
    n = min(options.stability_images, len(test))
    subset = slice(0, n)
    scorer, to_input = _input_space(model)  # noise on [0, 1] images, energy maps in input space
    stable = metrics.stability(
        scorer,
        explain,  # (noisy images, labels) -> maps of the label class
        test.images[subset],
        test.labels[subset],
        fractions=options.stability_fractions,
        maps=label_maps[subset],
        seed=options.seed,
        batch_size=options.batch_size,
        binarize_threshold=BINARIZE_THRESHOLD,
        binarize_normalization=BINARIZE_NORMALIZATION,
        to_input=to_input,
        image_ids=test.image_ids[subset],
    )
    by_fraction: dict[str, dict[str, Any]] = {}
    for name, value in stable.items():
        noise, key = name.split("/", 1)
        key = {"change_drop_pct": "change_drop", "change_inc_pct": "change_inc"}.get(key, key)
        by_fraction.setdefault(noise.removeprefix("noise_"), {})[key] = metric(value)
    return by_fraction


def _input_space(model: nn.Module) -> tuple[Any, Any]:
    """``(scoring model, to_input)`` of paper 004's energy maps, formed in the model's input
    space ("the input to the CNN is the Hadamard product of the image and the generated
    interpretation map", as the ante-hoc training multiplies the normalised image): a model
    with a ``normalize`` and a ``net`` (a :class:`~torchlap.models.NormalizedClassifier`)
    gives ``(net, normalize)``, so every method's maps multiply the normalised image; any
    other model takes [0, 1] images as its input: ``(model, None)``."""
    normalize, net = getattr(model, "normalize", None), getattr(model, "net", None)
    if callable(normalize) and callable(net):
        return net, normalize
    return model, None


@torch.no_grad()
def _predictions(explain: _Explaining, test: EvalData) -> Tensor:
    """The model's class per test image, batched (to the host, where the test labels are)."""
    size = explain.batch_size
    return torch.cat([
        explain.model(test.images[i : i + size].to(explain.device)).argmax(dim=1).cpu()
        for i in range(0, len(test), size)
    ])  # fmt: skip
