"""``torchlap evaluate``: every metric of the papers for one trained run, every explainer.

The flow for one run (each step batched on the model's device):

1. the run is rebuilt from its folder (:func:`torchlap.load_run`), the evaluation split is
   generated or read the way the run saw it (same built-in seed and size when ``--data`` is the
   run's own data);
2. model metrics (paper 000 Table I), and the LAP layers as standalone predictors;
3. per explainer: maps of the validation images (to fit the global threshold of the paper's
   "binarization by thresholding") and of the evaluation images, then localization, keep-k%,
   Drop/Increase (SISE), Drop/Inc/Win (ante-hoc) and stability;
4. ``results.json``, ``tables.md``, plots, overlays and ``report.html``.

Each method's results are cached in ``methods/<method>.json`` with a fingerprint of everything
they depend on, so an interrupted evaluation resumes where it stopped; ``force=True`` recomputes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchlap.explainers.base import COMPARISON_METHODS
from torchlap.runs import WEIGHTS_FILE

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_METHODS",
    "EvalData",
    "EvaluateOptions",
    "evaluate_run",
    "load_eval_data",
]

DEFAULT_METHODS = COMPARISON_METHODS

RESULTS_FORMAT = "torchlap-results"
#: bumped whenever a metric's definition changes, so cached method results are recomputed
#: (2: top-k metrics and the pointing game score ties by their expectation; thresholds are
#: fitted on the validation images holding a region. 3: thresholds fitted on all validation
#: images; keep-k% and Drop%/Increase% break ties at random (mean of seeded draws); LAP's
#: ranking metrics read the unclipped-sum LAP All; LAP maps follow the run's concept sets;
#: L2X-F/BLA-T train as in the BLA authors' code)
METRICS_REVISION = 3
#: the choices of ``threshold_fit``, ``ties`` and ``lap_all_ranking`` (EvaluateOptions)
THRESHOLD_FIT_SETS = ("all", "with_region")
_LOCALIZATION_KEYS = {
    "iou_threshold": "iou_threshold",
    "iou_topk": "iou_topk",
    "ebpg": "ebpg",
    "miou_top20": "miou_top20",
    "bbox_accuracy": "bbox",
    "pointing_game": "pointing_game",
}


@dataclass
class EvaluateOptions:
    """Settings of one evaluation (all recorded in ``results.json``).

    ``max_images`` caps the evaluation images (the first ones of the split) and
    ``max_val_images`` the validation images used to fit thresholds and the learned LAP
    predictor. ``threshold_fit``: which validation images fit the global threshold of the
    other methods (paper 000: "over the validation samples"): ``"all"`` (default) or
    ``"with_region"`` (only those holding a region, torchlap's rule before metrics revision 3).
    ``ties``: how keep-k% and Drop%/Increase% break ties at the k-th score, ``"random"``
    (default: the mean over ``tie_draws`` seeded random tie-breaks for the samples whose
    selection depends on it) or ``"index"`` (raster order, the earlier rule); see
    :func:`torchlap.metrics.keep_top_k`. ``lap_all_ranking``: the "LAP All" map of the metrics
    that rank pixels (IoU by top-scored selection, mIoU, Bbox, pointing game, keep-k%,
    Drop%/Increase%): ``"unclipped_sum"`` (default, the supplement's map for top-K selection) or
    ``"algorithm1"``; the metrics that read the map's values (IoU by thresholding at 0.5, EBPG,
    Drop/Inc/Win and stability) use Algorithm 1 (see :func:`torchlap.explainers.lap_all`).
    ``stability_images`` is the subset on which stability recomputes every map under noise
    (one more explanation pass per fraction of ``stability_fractions``). ``method_options`` go
    to the explainers' constructors, e.g. ``{"rise": {"n_masks": 1000}}``. ``target`` is whose
    map is explained: ``"prediction"`` (the paper's choice for keep-k%) or ``"label"``.

    ``sanity`` (off by default): the model-parameter randomization test of Adebayo et al.
    2018 on the first ``sanity_images`` images, modes ``sanity_modes`` (``cascading``,
    ``independent``), units of ``sanity_granularity`` (``block``/``layer``); a method passes
    when its Spearman |map| correlation at full randomization is below ``sanity_threshold``
    (results key ``sanity``, see :mod:`torchlap.evaluate.sanity`). ``grid_pg``: the synthetic
    grid pointing game on ``grid_pg_grids`` grids of ``grid_pg_shape`` (``auto``: 2x2, or 1xK
    for K < 4 classes) whose cells the model classifies correctly with probability at least
    ``grid_pg_confidence`` (results keys ``grid_pointing_game``, ``grid_pointing_setup``).

    ``lime_images``: for a model with a BLA module and ``bla`` among the methods, the BLA
    paper's faithfulness check (section 4.3) on that many test images: Spearman rank
    correlation of LIME's patch scores (``lime_samples`` samples, ``lime_patch``-pixel squares;
    ``None``: the paper's 7x7 grid, 32 px at 224) with BLA's soft explanation and with
    Grad-CAM (results key ``lime_spearman``); 0 turns it off.
    """

    split: str = "test"
    methods: tuple[str, ...] = DEFAULT_METHODS
    batch_size: int = 32
    max_images: int | None = None
    max_val_images: int | None = 200
    ks: tuple[float, ...] = (10, 30, 50, 70, 90)
    baseline: str = "zero"
    stability_images: int = 16
    stability_fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
    threshold_classifier: str = "ridge"
    threshold_fit: str = "all"
    ties: str = "random"
    tie_draws: int = 4
    lap_all_ranking: str = "unclipped_sum"
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    target: str = "prediction"
    examples: bool = True
    lime_images: int = 8
    lime_samples: int = 1000
    lime_patch: int | None = None
    seed: int = 0
    device: str = "cpu"
    # sanity checks and grid pointing game (torchlap.evaluate.sanity; off by default)
    sanity: bool = False
    sanity_images: int = 8
    sanity_modes: tuple[str, ...] = ("cascading", "independent")
    sanity_granularity: str = "block"
    sanity_threshold: float = 0.5
    grid_pg: bool = False
    grid_pg_shape: str = "auto"
    grid_pg_grids: int = 16
    grid_pg_confidence: float = 0.9

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        from torchlap.explainers import available

        if self.split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {self.split!r}")
        if not self.methods:
            raise ValueError("methods is empty; name at least one of " + ", ".join(available()))
        unknown = [m for m in self.methods if m not in available()]
        if unknown:
            raise ValueError(
                f"unknown method(s) {', '.join(unknown)}; available: {', '.join(available())}"
            )
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods are listed twice: {list(self.methods)}")
        for name in ("batch_size", "stability_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("max_images", "max_val_images", "lime_patch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
        for name, low in (("lime_images", 0), ("lime_samples", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if self.target not in ("prediction", "label"):
            raise ValueError(f"target must be 'prediction' or 'label', got {self.target!r}")
        from torchlap.explainers.lap import LAP_ALL_VARIANTS
        from torchlap.metrics.perturbation import TIE_RULES

        for name, accepted in (
            ("threshold_fit", THRESHOLD_FIT_SETS),
            ("ties", TIE_RULES),
            ("lap_all_ranking", LAP_ALL_VARIANTS),
        ):
            if getattr(self, name) not in accepted:
                raise ValueError(f"{name} must be one of {accepted}, got {getattr(self, name)!r}")
        if isinstance(self.tie_draws, bool) or not isinstance(self.tie_draws, int):
            raise ValueError(f"tie_draws must be an int >= 1, got {self.tie_draws!r}")
        if self.tie_draws < 1:
            raise ValueError(f"tie_draws must be an int >= 1, got {self.tie_draws!r}")
        if any(not 0 < k <= 100 for k in self.ks):
            raise ValueError(f"ks are percentages in (0, 100], got {self.ks}")
        if any(not 0 < f < 1 for f in self.stability_fractions):
            raise ValueError(
                f"stability_fractions must be in (0, 1), got {self.stability_fractions}"
            )
        from torchlap.evaluate.sanity import validate_check_options

        validate_check_options(self)


@dataclass
class EvalData:
    """The tensors of one split: images in [0, 1], labels, region masks and flags."""

    images: Tensor
    labels: Tensor
    masks: Tensor
    has_region: Tensor
    classes: list[str]
    name: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_eval_data(
    run: Any, data: str, split: str, max_images: int | None, batch_size: int = 64
) -> EvalData:
    """Read ``split`` of ``data`` as ``run`` saw it (same seed/size for its own built-in data)."""
    from torch.utils.data import DataLoader, Subset

    from torchlap.data import collate_regions, load_dataset

    train = run.config.get("train", {})
    kwargs: dict[str, Any] = {}
    seed = 0
    if data == train.get("data"):
        kwargs = dict(train.get("data_options") or {})
        if train.get("n_images") is not None:
            kwargs["n_images"] = train["n_images"]
        seed = int(train.get("seed", 0))
    dataset = load_dataset(data, split=split, image_size=run.image_size, seed=seed, **kwargs)
    if list(dataset.classes) != list(run.classes):
        raise ValueError(
            f"{data!r} has classes {list(dataset.classes)}, the run was trained on "
            f"{list(run.classes)}: evaluate it on data with the same classes"
        )
    if len(dataset) == 0:
        raise ValueError(f"the {split} split of {data!r} is empty")
    if max_images is not None and len(dataset) > max_images:
        dataset = Subset(dataset, range(max_images))
    parts: dict[str, list[Tensor]] = {"image": [], "label": [], "mask": [], "has_region": []}
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_regions):
        for key in parts:
            parts[key].append(batch[key])
    images = torch.cat(parts["image"]).float()
    if images.shape[1] != run.in_channels:
        raise ValueError(
            f"{data!r} has {images.shape[1]}-channel images, the run expects {run.in_channels}"
        )
    return EvalData(
        images=images,
        labels=torch.cat(parts["label"]),
        masks=torch.cat(parts["mask"]).bool(),
        has_region=torch.cat(parts["has_region"]),
        classes=list(run.classes),
        name=str(data),
    )


# ------------------------------------------------------------------------------------ helpers


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON through :func:`torchlap.io.atomic_write` (never a half-written file)."""
    from torchlap.evaluate.shard import is_writer
    from torchlap.io import atomic_write

    if not is_writer():  # sharded evaluation: rank 0 alone writes
        return
    atomic_write(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _metric(result: Any) -> dict[str, Any]:
    return result.to_dict()


def _progress(iterable: Any, total: int, description: str) -> Any:
    """Progress of the image batches (rich on a terminal, plain lines otherwise; torchlap.logs)."""
    from torchlap.logs import track

    return track(iterable, total=total, description=description, unit="image batches")


@torch.no_grad()
def _logits(model: nn.Module, images: Tensor, batch_size: int, device: torch.device) -> Tensor:
    outs = [
        model(images[i : i + batch_size].to(device)).float()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(outs)


def model_metrics(logits: Tensor, labels: Tensor) -> dict[str, Any]:
    """Paper 000 Table I: accuracy/sensitivity/specificity/BA (2 classes) or top-1/top-5."""
    from torchlap.metrics import binary_classification_metrics, multiclass_classification_metrics

    if logits.shape[1] == 2:
        results = binary_classification_metrics(logits, labels)
    else:
        results = multiclass_classification_metrics(logits, labels)
    return {name: _metric(value) for name, value in results.items()}


# --------------------------------------------------------------------------- LAP predictors


@torch.no_grad()
def _concept_summaries(
    model: nn.Module, images: Tensor, batch_size: int, device: torch.device
) -> dict[str, dict[str, Tensor]]:
    """Per LAP layer: concept size features F_C (B, h) and the per-concept maximum (B, h)."""
    from torchlap.layers import attention_maps, clear_attention_maps

    sums: dict[str, list[Tensor]] = {}
    peaks: dict[str, list[Tensor]] = {}
    try:
        for i in range(0, len(images), batch_size):
            model(images[i : i + batch_size].to(device))
            for name, maps in attention_maps(model).items():
                sums.setdefault(name, []).append(maps.concepts.flatten(2).sum(2).float())
                peaks.setdefault(name, []).append(maps.concepts.flatten(2).amax(2).float())
    finally:
        clear_attention_maps(model)
    return {
        name: {"features": torch.cat(sums[name]), "peaks": torch.cat(peaks[name])} for name in sums
    }


def lap_predictor_results(
    model: nn.Module,
    test: EvalData,
    val: EvalData,
    test_predictions: Tensor,
    concept_sets: Any,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
) -> dict[str, Any]:
    """LAP layers as standalone predictors (paper 000, section IV; Table I).

    Per layer every rule that applies: ``binary`` (two classes: positive when a pixel of a
    concept present only in the positive class is above 0.5), ``concept_sum`` (every class has
    its own concepts: the class whose concept maps have the larger sum), ``learned`` (a 2-layer
    MLP on F_C, trained on the validation split; with more than 5 classes also its
    ``top5_predictivity``/``top5_faithfulness``). ``rule`` names the primary one, Table I's
    (:func:`torchlap.metrics.paper_primary_rule`: binary, then concept_sum for two classes; the
    learned MLP for more, as the paper's ImageNet), whose metrics stand at the top of the entry.
    """
    from torchlap.layers import lap_modules
    from torchlap.metrics import (
        LearnedConceptPredictor,
        binary_rule,
        concept_sum_rule,
        lap_predictor_metrics,
        paper_primary_rule,
        top_k_lap_predictor_metrics,
    )

    if not lap_modules(model):
        return {}
    test_summary = _concept_summaries(model, test.images, batch_size, device)
    val_summary = _concept_summaries(model, val.images, batch_size, device)
    n_classes = len(test.classes)
    mapping = concept_sets.to_mapping() if concept_sets is not None else None
    common = set()
    if concept_sets is not None:
        common = {int(c) for c in torch.nonzero(concept_sets.common).flatten().tolist()}
    results: dict[str, Any] = {}
    for name, summary in test_summary.items():
        rules: dict[str, Any] = {}
        n_concepts = summary["features"].shape[1]
        own = None
        if mapping is not None:
            own = [[c for c in mapping[k] if c not in common] for k in range(n_classes)]
        if n_classes == 2 and own is not None and own[1] and not own[0]:
            peaks = summary["peaks"][:, :, None, None]
            preds = binary_rule(peaks, 0.5, positive_concepts=own[1])
            rules["binary"] = preds
        if own is not None and all(own) and n_concepts >= n_classes:
            preds = concept_sum_rule(summary["features"][:, :, None, None], own)
            rules["concept_sum"] = preds
        if len(val) >= 2 and len(torch.unique(val.labels)) == n_classes:
            predictor = LearnedConceptPredictor(n_concepts, n_classes, seed=seed)
            predictor.fit(val_summary[name]["features"], val.labels)
            rules["learned"] = predictor.predict(summary["features"])
            top_k = predictor.predict_top_k(summary["features"], 5)  # Table I's top-5
        if not rules:
            continue
        entry: dict[str, Any] = {"rules": {}}
        for rule, preds in rules.items():
            values = lap_predictor_metrics(preds.cpu(), test.labels, test_predictions.cpu())
            if rule == "learned" and n_classes > 5:
                ranked = top_k_lap_predictor_metrics(
                    top_k.cpu(), test.labels, test_predictions.cpu()
                )
                values.update({k.replace("/", "_"): v for k, v in ranked.items()})
            entry["rules"][rule] = {key: _metric(value) for key, value in values.items()}
        primary = paper_primary_rule(n_classes, list(rules))
        entry = {"rule": primary, **entry["rules"][primary], "rules": entry["rules"]}
        results[name] = entry
    return results


# ------------------------------------------------------------------------------ explanations


def explain_all(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    method: str,
    options: dict[str, Any],
    batch_size: int,
    device: torch.device,
) -> Tensor:
    """Maps ``(N, H, W)`` of ``method`` for all ``images``, explained in batches."""
    from torchlap.evaluate.shard import active, gather_rows, shard_bounds
    from torchlap.explainers import get

    shard = active()  # sharded evaluation: this rank explains its run of whole batches
    first, stop = (0, len(images)) if shard is None else shard_bounds(
        len(images), batch_size, shard.rank, shard.world_size
    )  # fmt: skip
    chunks = []
    if stop > first:
        with get(method)(model, **options) as explainer:
            starts = range(first, stop, batch_size)
            for start in _progress(starts, len(starts), method):
                end = min(start + batch_size, stop)
                maps = explainer(images[start:end].to(device), targets[start:end].to(device))
                chunks.append(maps.detach().float().cpu())
    maps = torch.cat(chunks) if chunks else None
    if shard is not None:
        maps = gather_rows(maps, shard)  # every rank gets every map, in image order
    if maps is None:
        raise ValueError(f"{method}: no images to explain (an empty image tensor)")
    return torch.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)


FLAT_TOLERANCE = 1e-6


def flat_map_counts(maps: Tensor, tolerance: float = FLAT_TOLERANCE) -> dict[str, Any]:
    """How many of the ``(N, H, W)`` maps are flat: max - min <= ``tolerance`` times
    max(1, max |map|) (absolute for maps in [0, 1], relative for larger scales). A flat map
    ranks no pixel above another, so its localization and faithfulness numbers say nothing
    about the model (the report flags them)."""
    flat_maps = maps.flatten(1)
    spread = flat_maps.amax(dim=1) - flat_maps.amin(dim=1)
    scale = flat_maps.abs().amax(dim=1).clamp_min(1.0)
    n_flat = int((spread <= tolerance * scale).sum())
    return {"n": int(maps.shape[0]), "n_flat": n_flat, "tolerance": tolerance}


def _method_options(method: str, options: EvaluateOptions, concept_sets: Any) -> dict[str, Any]:
    """The explainer options of ``method``: the user's, plus the run's concept sets for ``lap``
    (unless the user gave them)."""
    chosen = dict(options.method_options.get(method, {}))
    if method == "lap" and concept_sets is not None:
        chosen.setdefault("concept_sets", concept_sets)
    return chosen


def protocol(options: EvaluateOptions, concept_sets: Any = None) -> dict[str, Any]:
    """The protocol choices behind the numbers (``results.json["protocol"]``), so that two
    evaluations can be compared knowingly."""
    from torchlap.explainers.lap import concept_mapping

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
                f"(seed {options.seed}) for the samples whose selection depends on them"
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
    }  # fmt: skip


def _fingerprint(parts: dict[str, Any]) -> str:
    parts = {**parts, "metrics_revision": METRICS_REVISION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _weights_stamp(run_dir: Path) -> dict[str, Any]:
    weights = run_dir / WEIGHTS_FILE
    stat = weights.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def evaluate_method(
    method: str,
    model: nn.Module,
    test: EvalData,
    val: EvalData,
    test_targets: Tensor,
    val_targets: Tensor,
    options: EvaluateOptions,
    device: torch.device,
    concept_sets: Any = None,
) -> tuple[dict[str, Any], Tensor]:
    """All localization, faithfulness and stability metrics of one method; and its maps.

    ``concept_sets``: the run's (``load_run(run).concept_sets``), given to the ``lap`` explainer
    so that each class is explained by its own concept heads. For ``lap`` the metrics that rank
    pixels read the ``options.lap_all_ranking`` "LAP All" and the others Algorithm 1's (the
    returned maps); see :class:`EvaluateOptions`.
    """
    from torchlap.metrics import (
        drop_inc_win,
        drop_increase,
        fit_global_threshold,
        keep_top_k,
        localization_metrics,
        stability,
    )

    method_options = _method_options(method, options, concept_sets)
    start = time.perf_counter()
    maps = explain_all(
        model, test.images, test_targets, method, method_options, options.batch_size, device
    )
    seconds = time.perf_counter() - start
    # the maps of the metrics that rank pixels (top-k, top-k%, maximum): for LAP the LAP All
    # of top-scored selection, the same maps for every other method
    rank_maps = maps
    if method == "lap" and method_options.get("layer", "all") == "all":
        rank_options = {**method_options, "variant": options.lap_all_ranking}
        rank_maps = explain_all(
            model, test.images, test_targets, method, rank_options, options.batch_size, device
        )
    out: dict[str, Any] = {
        "timing": {"seconds": seconds, "images_per_second": len(test) / max(seconds, 1e-9)},
        "maps": flat_map_counts(maps),
    }
    notes: list[str] = []
    # --- localization (paper 000 Table II; SISE's EBPG, mIoU, Bbox; pointing game)
    if bool(test.has_region.any()):
        if method == "lap":
            threshold, normalize = 0.5, False
        else:
            # the threshold separates pixels inside from outside the regions, fitted on the
            # validation samples (paper 000), or only on those holding a region (option)
            region = val.masks.flatten(1).any(dim=1)
            normalize = True
            threshold = None
            if not bool(region.any()):
                notes.append("no global threshold: no validation image holds a region")
            else:
                if options.threshold_fit == "all":
                    region = torch.ones_like(region)
                val_maps = explain_all(
                    model, val.images[region], val_targets[region], method, method_options,
                    options.batch_size, device,
                )  # fmt: skip
                try:
                    threshold = fit_global_threshold(
                        val_maps, val.masks[region], classifier=options.threshold_classifier,
                        seed=options.seed,
                    )  # fmt: skip
                except ValueError as error:
                    notes.append(f"no global threshold: {error}")
        results = localization_metrics(
            rank_maps, test.masks, threshold=threshold, normalize=normalize, value_maps=maps
        )
        localization = {_LOCALIZATION_KEYS[k]: _metric(v) for k, v in results.items()}
        if threshold is None:  # the key stays, undefined, so every method has the same keys
            n_region = int(test.has_region.sum())
            localization["iou_threshold"] = {
                "value": None, "higher_is_better": True, "n": 0,
                "n_excluded": n_region, "reason": notes[-1],
            }  # fmt: skip
        localization["threshold"] = threshold
        out["localization"] = localization
        out["per_sample_iou_topk"] = [
            None if math.isnan(v) else v for v in results["iou_topk"].per_sample.tolist()
        ]
    else:
        notes.append("no sample of the split has a region: localization skipped")
    # --- faithfulness
    model_fn = model
    ties = {"ties": options.ties, "tie_draws": options.tie_draws, "seed": options.seed}
    keep = keep_top_k(
        model_fn,
        test.images,
        rank_maps,
        test.labels,
        ks=options.ks,
        baseline=options.baseline,
        batch_size=options.batch_size,
        **ties,
    )
    keep_by_k: dict[str, dict[str, Any]] = {}
    for name, value in keep.items():
        k_label, metric = name.split("/", 1)
        keep_by_k.setdefault(k_label.removeprefix("keep_"), {})[metric] = _metric(value)
    sise = drop_increase(
        model_fn,
        test.images,
        rank_maps,
        test.labels,
        baseline=options.baseline,
        batch_size=options.batch_size,
        **ties,
    )
    antehoc = drop_inc_win(model_fn, test.images, maps, test.labels, batch_size=options.batch_size)
    out["faithfulness"] = {
        "keep_top_k": keep_by_k,
        "drop": _metric(sise["drop_pct"]),
        "increase": _metric(sise["increase_pct"]),
        "win": _metric(antehoc["energy/win_pct"]),
        "drop_inc_win": {name: _metric(value) for name, value in antehoc.items()},
    }
    # --- stability (paper 004): maps recomputed on noisy copies of a subset
    subset = slice(0, min(options.stability_images, len(test)))

    def explain_fn(images: Tensor, labels: Tensor) -> Tensor:
        targets = labels if options.target == "label" else _predictions(model, images, device)
        return explain_all(
            model, images, targets, method, method_options, options.batch_size, device
        )

    stable = stability(
        model_fn,
        explain_fn,
        test.images[subset],
        test.labels[subset],
        fractions=options.stability_fractions,
        maps=maps[subset],
        seed=options.seed,
        batch_size=options.batch_size,
    )
    by_fraction: dict[str, dict[str, Any]] = {}
    for name, value in stable.items():
        noise, metric = name.split("/", 1)
        key = {"change_drop_pct": "change_drop", "change_inc_pct": "change_inc"}.get(metric, metric)
        by_fraction.setdefault(noise.removeprefix("noise_"), {})[key] = _metric(value)
    out["stability"] = by_fraction
    if notes:
        out["notes"] = notes
    return out, maps


@torch.no_grad()
def _predictions(model: nn.Module, images: Tensor, device: torch.device) -> Tensor:
    return model(images.to(device)).argmax(dim=1).cpu()


def _example_indices(per_sample: Sequence[float | None]) -> dict[str, int]:
    """Best, median and worst IoU (top-scored selection) among samples with a region."""
    scored = sorted((v, i) for i, v in enumerate(per_sample) if v is not None)
    if not scored:
        return {}
    return {"best": scored[-1][1], "median": scored[len(scored) // 2][1], "worst": scored[0][1]}


# ------------------------------------------------------------------------------------- driver


def _read_cache(cache: Path, fingerprint: str, label: str) -> Any:
    """The cached results of ``cache`` when its fingerprint matches, else ``None`` (sharded:
    rank 0's reading, on every rank, so that all ranks compute the same methods)."""
    from torchlap.evaluate.shard import broadcast_from_zero, is_writer

    return broadcast_from_zero(_read_own_cache(cache, fingerprint, label) if is_writer() else None)


def _read_own_cache(cache: Path, fingerprint: str, label: str) -> Any:
    if not cache.is_file():
        return None
    try:
        cached = json.loads(cache.read_text())
        if cached.get("fingerprint") == fingerprint:
            logger.info("%s: reusing %s (pass --force to recompute)", label, cache)
            return cached["results"]
    except (json.JSONDecodeError, KeyError, AttributeError):
        logger.warning("%s is unreadable; recomputing %s", cache, label)
    return None


def lime_section(
    model: nn.Module,
    test: EvalData,
    targets: Tensor,
    options: EvaluateOptions,
    device: torch.device,
) -> dict[str, Any]:
    """Paper 002's section 4.3 on the first ``options.lime_images`` test images: Spearman
    correlation of LIME patch scores with BLA's soft explanation and with Grad-CAM (one LIME
    run shared by both), on the evaluated model itself."""
    from torchlap.models.bla import bla_lime_faithfulness

    count = min(options.lime_images, len(test))
    side = min(test.images.shape[-2:])
    patch = options.lime_patch or max(1, round(side * 32 / 224))
    started = time.perf_counter()
    metrics = bla_lime_faithfulness(
        model,
        test.images[:count].to(device),
        target=targets[:count].to(device),
        patch=patch,
        n_samples=options.lime_samples,
        seed=options.seed,
    )
    return {
        **{name: _metric(value) for name, value in metrics.items()},
        "patch": patch,
        "n_samples": options.lime_samples,
        "seconds": time.perf_counter() - started,
    }


def evaluate_run(
    run_dir: str | os.PathLike[str],
    data: str | None = None,
    out: str | os.PathLike[str] | None = None,
    options: EvaluateOptions | None = None,
    force: bool = False,
    write_report: bool = True,
    on_method: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Evaluate one run; write ``results.json`` (and tables, plots, report) into ``out``.

    ``data`` defaults to the run's own data; ``out`` to ``RUN_DIR/eval-<split>``. Methods that
    do not apply to the model (``lap`` on a model without LAP layers, ``bla`` without a BLA
    module, ``antehoc`` without an AnteHocModel) are skipped with a note.
    Returns the results dict (the content of ``results.json``).
    """
    from torchlap.layers import lap_modules
    from torchlap.train import load_run

    options = options or EvaluateOptions()
    options.validate()
    from torchlap.evaluate.shard import active

    if (shard := active()) is not None:
        logger.info(
            "sharded evaluation: rank %d of %d processes (%s)",
            shard.rank, shard.world_size, "nccl" if shard.device.type == "cuda" else "gloo",
        )  # fmt: skip
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    data = data or run.config.get("train", {}).get("data")
    if not data:
        raise ValueError(f"{run_dir}/config.json names no data: pass --data")
    out_dir = Path(out) if out is not None else run_dir / f"eval-{options.split}"
    device = torch.device(options.device)
    model = run.model.to(device).eval()

    test = load_eval_data(run, data, options.split, options.max_images, options.batch_size)
    val = load_eval_data(run, data, "val", options.max_val_images, options.batch_size)
    test_logits = _logits(model, test.images, options.batch_size, device)
    val_logits = _logits(model, val.images, options.batch_size, device)
    test_predictions = test_logits.argmax(1).cpu()
    test_targets = test.labels if options.target == "label" else test_predictions
    val_targets = val.labels if options.target == "label" else val_logits.argmax(1).cpu()

    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "run": {"name": run_dir.resolve().name, "run_dir": str(run_dir)},
        "data": {
            "name": str(data),
            "split": options.split,
            "n_images": len(test),
            "n_with_region": int(test.has_region.sum()),
            "n_val_images": len(val),
            # for the report's chance levels: 1/C, and a random map's EBPG / pointing game
            "n_classes": len(test.classes),
            "region_fraction": (
                float(test.masks[test.has_region].float().mean())
                if bool(test.has_region.any())
                else None
            ),
        },
        "options": asdict(options),
        "protocol": protocol(options, run.concept_sets),
        "model": model_metrics(test_logits.cpu(), test.labels),
        "lap_predictors": lap_predictor_results(
            model,
            test,
            val,
            test_predictions,
            run.concept_sets,
            options.batch_size,
            device,
            options.seed,
        ),
        "localization": {},
        "faithfulness": {},
        "stability": {},
        "timing": {},
        "examples": {},
        "skipped": {},
    }
    has_lap = bool(lap_modules(model))
    from torchlap.evaluate.sanity import method_fingerprint_options, run_checks
    from torchlap.models.antehoc import AnteHocModel
    from torchlap.models.bcos import find_bcos
    from torchlap.models.bla import bla_modules

    # methods that read a module of the model: skipped (with the reason) when it has none
    own_maps = {
        "lap": (has_lap, "the model has no LAP layer"),
        "bla": (bool(bla_modules(model)), "the model has no BLA/L2X-F module"),
        "antehoc": (
            any(isinstance(m, AnteHocModel) for m in model.modules()),
            "the model is not an ante-hoc model (AnteHocModel)",
        ),
        "bcos": (find_bcos(model) is not None, "the model is not a B-cos network"),
    }
    example_maps: dict[str, Tensor] = {}
    stamp = _weights_stamp(run_dir)
    from torchlap.logs import track

    for method in track(options.methods, description="evaluating", unit="methods", describe=str):
        if method in own_maps and not own_maps[method][0]:
            results["skipped"][method] = own_maps[method][1]
            continue
        cache = out_dir / "methods" / f"{method}.json"
        fingerprint = _fingerprint(
            {
                "method": method,
                "options": method_fingerprint_options(options),
                "weights": stamp,
                "data": data,
                "n": len(test),
                "concept_sets": protocol(options, run.concept_sets)["lap_concept_sets"],
            }
        )
        method_results = None if force else _read_cache(cache, fingerprint, method)
        maps = None
        if method_results is None:
            started = time.perf_counter()
            method_results, maps = evaluate_method(
                method, model, test, val, test_targets, val_targets, options, device,
                run.concept_sets,
            )  # fmt: skip
            atomic_write_json(cache, {"fingerprint": fingerprint, "results": method_results})
            if on_method is not None:
                on_method(method, time.perf_counter() - started)
        for section in ("localization", "faithfulness", "stability", "timing", "maps"):
            if section in method_results:
                results.setdefault(section, {})[method] = method_results[section]
        if method_results.get("notes"):
            results.setdefault("notes", {})[method] = method_results["notes"]
        chosen = _example_indices(method_results.get("per_sample_iou_topk", []))
        if chosen:
            results["examples"][method] = chosen
            if options.examples:
                indices = torch.tensor(sorted(set(chosen.values())))
                if maps is None:
                    maps_subset = explain_all(
                        model,
                        test.images[indices],
                        test_targets[indices],
                        method,
                        _method_options(method, options, run.concept_sets),
                        options.batch_size,
                        device,
                    )
                else:
                    maps_subset = maps[indices]
                example_maps[method] = (indices, maps_subset)
    if "bla" in options.methods and own_maps["bla"][0] and options.lime_images > 0:
        cache = out_dir / "methods" / "lime_spearman.json"
        fingerprint = _fingerprint(
            {"lime": True, "options": asdict(options) | {"methods": None}, "weights": stamp}
        )
        lime = None if force else _read_cache(cache, fingerprint, "lime_spearman")
        if lime is None:
            from torchlap.evaluate.shard import on_rank_zero

            lime = on_rank_zero(lambda: lime_section(model, test, test_targets, options, device))
            atomic_write_json(cache, {"fingerprint": fingerprint, "results": lime})
        results["lime_spearman"] = lime
    if options.sanity or options.grid_pg:  # sanity checks, grid pointing game (issue 13)
        applicable = [m for m in options.methods if m not in results["skipped"]]
        results.update(
            run_checks(
                model, test, test_targets, options, applicable,
                lambda m: _method_options(m, options, run.concept_sets), out_dir, stamp,
                str(data), force,
            )
        )  # fmt: skip
    atomic_write_json(out_dir / "results.json", results)
    from torchlap.evaluate.shard import is_writer

    if write_report and is_writer():  # sharded evaluation: rank 0 alone writes
        from torchlap.evaluate.outputs import write_run_outputs

        name = results["run"]["name"]
        write_run_outputs(out_dir, {name: results}, {name: run.config}, test, example_maps, model)
    return results
