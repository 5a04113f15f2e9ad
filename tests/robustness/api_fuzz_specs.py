"""Valid arguments of the public callables the API fuzzer (``api_fuzz``) sweeps, one
:class:`~api_fuzz.Spec` each: tiny tensors (batch 3, 8x8 maps), so every case runs in
milliseconds; the calls that run a model are marked ``slow``."""

from __future__ import annotations

import torch
from api_fuzz import Spec

from torchlap import explainers, layers, losses, metrics


def _g(*shape: int) -> torch.Tensor:
    """A seeded random tensor (uniform in [0, 1))."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))


def _maps() -> torch.Tensor:
    return _g(3, 8, 8)


def _masks() -> torch.Tensor:
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[:, 2:5, 3:6] = True
    return masks


def _labels() -> torch.Tensor:
    return torch.tensor([0, 1, 2])


_MAPS_MASKS = ("maps", "masks")
_ANY_CLASS = "no class count to compare with: any index >= 0 names a class (1000 in ImageNet)"
_EXCLUDED = "nan marks an image the metric excluded (documented)"
_NO_RATIO = "None drops that term of Eq. 5 (documented)"
_REGION_DTYPES = {
    "int64": "0/1 masks of any real dtype: their values are checked to lie in [0, 1]",
    "bool": "a bool mask is a 0/1 mask (documented: any real dtype in [0, 1])",
}
_NOT_READ = "values not read (no device sync on the explainers' hot path): NaN stays NaN"
_FORWARD = "a LAP pass reads no value (no device sync per forward): NaN propagates"

METRICS = [
    Spec(
        "bbox_accuracy",
        metrics.bbox_accuracy,
        lambda: {"maps": _maps(), "masks": _masks()},
        batch=_MAPS_MASKS,
    ),
    Spec(
        "ebpg",
        metrics.ebpg,
        lambda: {"maps": _maps(), "masks": _masks(), "zero_map": "share"},
        batch=_MAPS_MASKS,
        choices=("zero_map",),
    ),
    Spec(
        "pointing_game",
        metrics.pointing_game,
        lambda: {"maps": _maps(), "masks": _masks()},
        batch=_MAPS_MASKS,
    ),
    Spec(
        "iou_topk",
        metrics.iou_topk,
        lambda: {"maps": _maps(), "masks": _masks()},
        batch=_MAPS_MASKS,
    ),
    Spec(
        "iou_threshold",
        metrics.iou_threshold,
        lambda: {"maps": _maps(), "masks": _masks(), "threshold": 0.5, "normalize": False},
        batch=_MAPS_MASKS,
    ),
    Spec(
        "miou_top20",
        metrics.miou_top20,
        lambda: {"maps": _maps(), "masks": _masks(), "fraction": 0.2},
        batch=_MAPS_MASKS,
        positives=("fraction",),
    ),
    Spec(
        "localization_metrics",
        metrics.localization_metrics,
        lambda: {
            "maps": _maps(),
            "masks": _masks(),
            "threshold": 0.5,
            "normalize": False,
            "value_maps": _maps(),
        },
        batch=("maps", "masks", "value_maps"),
    ),
    Spec(
        "binarize_map",
        metrics.binarize_map,
        lambda: {"maps": _maps(), "threshold": 0.8, "normalization": "min_max"},
        batch=("maps",),
        choices=("normalization",),
    ),
    Spec("normalize_by_max", metrics.normalize_by_max, lambda: {"maps": _maps()}, batch=("maps",)),
    Spec(
        "baseline_images",
        metrics.baseline_images,
        lambda: {"images": _g(3, 3, 8, 8), "baseline": "blur", "blur_sigma": 1.0},
        batch=("images",),
        choices=("baseline",),
        positives=("blur_sigma",),
    ),
    Spec(
        "binary_classification_metrics",
        metrics.binary_classification_metrics,
        lambda: {"scores": _g(4, 2), "labels": torch.tensor([0, 1, 1, 0]), "threshold": 0.5},
        batch=("scores", "labels"),
    ),
    Spec(
        "multiclass_classification_metrics",
        metrics.multiclass_classification_metrics,
        lambda: {"logits": _g(3, 4), "labels": _labels()},
        batch=("logits", "labels"),
    ),
    Spec(
        "predictivity",
        metrics.predictivity,
        lambda: {"predictions": torch.tensor([0, 1, 1]), "labels": _labels()},
        batch=("predictions", "labels"),
        allow={"predictions": {"huge": _ANY_CLASS}, "labels": {"huge": _ANY_CLASS}},
    ),
    Spec(
        "faithfulness",
        metrics.faithfulness,
        lambda: {"predictions": torch.tensor([0, 1, 1]), "model_predictions": _labels()},
        batch=("predictions", "model_predictions"),
        allow={"predictions": {"huge": _ANY_CLASS}, "model_predictions": {"huge": _ANY_CLASS}},
    ),
    Spec(
        "lap_predictor_metrics",
        metrics.lap_predictor_metrics,
        lambda: {
            "predictions": torch.tensor([0, 1, 1]),
            "labels": _labels(),
            "model_predictions": torch.tensor([0, 1, 0]),
        },
        batch=("predictions", "labels", "model_predictions"),
        allow={
            "predictions": {"huge": _ANY_CLASS},
            "labels": {"huge": _ANY_CLASS},
            "model_predictions": {"huge": _ANY_CLASS},
        },
    ),
    Spec(
        "top_k_lap_predictor_metrics",
        metrics.top_k_lap_predictor_metrics,
        lambda: {
            "top_k": torch.tensor([[0, 1], [1, 2], [2, 0]]),
            "labels": _labels(),
            "model_predictions": torch.tensor([0, 1, 0]),
        },
        batch=("top_k", "labels", "model_predictions"),
        allow={
            "top_k": {"huge": _ANY_CLASS},
            "labels": {"huge": _ANY_CLASS},
            "model_predictions": {"huge": _ANY_CLASS},
        },
    ),
    Spec(
        "concept_sum_rule",
        metrics.concept_sum_rule,
        lambda: {"concepts": _g(3, 2, 8, 8), "class_to_concepts": [[0], [1]]},
        batch=("concepts",),
    ),
    Spec(
        "binary_rule",
        metrics.binary_rule,
        lambda: {"concepts": _g(3, 2, 8, 8), "threshold": 0.5, "positive_concepts": [0, 1]},
        batch=("concepts",),
    ),
    Spec(
        "concept_size_features",
        metrics.concept_size_features,
        lambda: {"concepts": _g(3, 2, 8, 8)},
        batch=("concepts",),
    ),
    Spec(
        "count_for_fraction",
        metrics.count_for_fraction,
        lambda: {"fraction": 0.5, "n_pixels": 64},
        positives=("n_pixels",),
    ),
    Spec(
        "bootstrap_interval",
        metrics.bootstrap_interval,
        lambda: {"values": _g(6), "level": 0.95, "resamples": 50, "seed": 0},
        batch=("values",),
        positives=("level", "resamples"),
        allow={"values": {"nan": _EXCLUDED, "batch0": "no image scored: None (documented)"}},
    ),
    Spec(
        "paired_difference",
        metrics.paired_difference,
        lambda: {
            "reference": _g(6),
            "other": _g(3, 2).flatten(),
            "level": 0.95,
            "resamples": 50,
            "seed": 0,
        },
        batch=("reference", "other"),
        positives=("level", "resamples"),
        allow={"reference": {"nan": _EXCLUDED}, "other": {"nan": _EXCLUDED}},
    ),
    Spec(
        "fit_global_threshold",
        metrics.fit_global_threshold,
        lambda: {
            "val_maps": _maps(),
            "val_masks": _masks(),
            "max_pixels": 100,
            "seed": 0,
            "classifier": "ridge",
        },
        batch=("val_maps", "val_masks"),
        positives=("max_pixels",),
        choices=("classifier",),
    ),
    Spec("higher_is_better", metrics.higher_is_better, lambda: {"name": "ebpg"}, choices=("name",)),
    Spec(
        "paper_primary_rule",
        metrics.paper_primary_rule,
        lambda: {"num_classes": 2, "available": ["binary", "concept_sum"]},
        positives=("num_classes",),
    ),
    Spec(
        "top_k_mask",
        metrics.top_k_mask,
        lambda: {
            "maps": _maps(),
            "k": 5,
            "tie_break": "random",
            "generator": torch.Generator().manual_seed(0),
        },
        batch=("maps",),
        choices=("tie_break",),
    ),
    Spec(
        "salt_and_pepper",
        metrics.salt_and_pepper,
        lambda: {
            "images": _g(3, 3, 8, 8),
            "fraction": 0.25,
            "generator": torch.Generator().manual_seed(0),
            "low": 0.0,
            "high": 1.0,
        },
        batch=("images",),
    ),
    Spec(
        "LearnedConceptPredictor",
        metrics.LearnedConceptPredictor,
        lambda: {
            "n_concepts": 2,
            "num_classes": 3,
            "hidden_features": 4,
            "epochs": 1,
            "lr": 0.01,
            "batch_size": 2,
            "seed": 0,
        },
        positives=("n_concepts", "num_classes", "hidden_features", "epochs", "lr", "batch_size"),
    ),
]


def _probs() -> torch.Tensor:
    return _g(3, 2, 8, 8)


def _present() -> torch.Tensor:
    return torch.tensor([[True, False], [False, True], [True, True]])


LOSSES = [
    Spec(
        "concept_discrimination_loss",
        losses.concept_discrimination_loss,
        lambda: {
            "probs": _probs(),
            "present": _present(),
            "min_ar": 0.1,
            "max_ar": 0.5,
            "iar": 0.1,
            "selector": _probs(),
            "eps": 1e-6,
        },
        batch=("probs", "present", "selector"),
        positives=("min_ar", "max_ar", "iar", "eps"),
        allow={
            "min_ar": {"none": _NO_RATIO},
            "max_ar": {"none": _NO_RATIO},
            "iar": {"none": _NO_RATIO},
            "selector": {"bool": "a bool selector ranks as 0/1 (documented)"},
        },
    ),
    Spec(
        "discriminative_scorer_loss",
        losses.discriminative_scorer_loss,
        lambda: {"disc_probs": _probs(), "present": _present(), "eps": 1e-6},
        batch=("disc_probs", "present"),
        positives=("eps",),
    ),
    Spec(
        "expert_supervision_loss",
        losses.expert_supervision_loss,
        lambda: {
            "probs": _probs(),
            "region_masks": _masks().float(),
            "present": _present(),
            "has_region": torch.tensor([True, False, True]),
            "iar": 0.1,
            "positive_fraction": 0.5,
            "negative_pixels": "iar",
        },
        batch=("probs", "region_masks", "present", "has_region"),
        positives=("iar", "positive_fraction"),
        choices=("negative_pixels",),
        allow={"iar": {"none": _NO_RATIO}, "region_masks": _REGION_DTYPES},
    ),
    Spec(
        "concordance_loss",
        losses.concordance_loss,
        lambda: {
            "maps_per_layer": [_probs(), _g(3, 2, 4, 4)],
            "threshold": 0.1,
            "mode": "both",
            "pool": "max",
            "eps": 1e-6,
        },
        choices=("mode", "pool"),
        positives=("eps",),
    ),
    Spec(
        "resize_region_masks",
        losses.resize_region_masks,
        lambda: {"region_masks": _masks().float(), "size": (4, 4), "mode": "any"},
        batch=("region_masks",),
        choices=("mode",),
        allow={"region_masks": _REGION_DTYPES},
    ),
    Spec(
        "annotated_samples",
        losses.annotated_samples,
        lambda: {"region_masks": _masks().float(), "has_region": torch.tensor([True, False, True])},
        batch=("region_masks", "has_region"),
        allow={"region_masks": _REGION_DTYPES},
    ),
    Spec("ratio_count", losses.ratio_count, lambda: {"ratio": 0.5, "n_pixels": 64}),
    Spec(
        "suggest_ratios",
        losses.suggest_ratios,
        lambda: {"area_fractions": torch.tensor([0.1, 0.2, 0.3])},
        batch=("area_fractions",),
        allow={"area_fractions": {"list": "a list of numbers (documented)"}},
    ),
    Spec(
        "default_weights",
        losses.default_weights,
        lambda: {"supervision": "weak"},
        choices=("supervision",),
    ),
    Spec(
        "ConceptSets",
        losses.ConceptSets,
        lambda: {"table": torch.tensor([[True, False], [False, True], [True, True]])},
    ),
]

EXPLAINER_HELPERS = [
    Spec(
        "upsample",
        explainers.upsample,
        lambda: {"maps": _maps(), "size": (16, 16)},
        batch=("maps",),
        allow={"maps": {"nan": _NOT_READ, "inf": _NOT_READ}},
    ),
    Spec(
        "minmax_normalize",
        explainers.minmax_normalize,
        lambda: {"maps": _maps()},
        batch=("maps",),
        allow={
            "maps": {
                "nan": _NOT_READ,
                "inf": _NOT_READ,
                "rank-1": "any rank: the maps' dims are an argument",
                "rank+1": "any rank: the maps' dims are an argument",
            }
        },
    ),
    Spec(
        "otsu_threshold",
        explainers.otsu_threshold,
        lambda: {"maps": _maps(), "bins": 16},
        batch=("maps",),
        positives=("bins",),
    ),
    Spec(
        "sise_fusion",
        explainers.sise_fusion,
        lambda: {"maps": _g(2, 3, 8, 8), "normalization": "none"},
        choices=("normalization",),
    ),
    Spec(
        "reduce_channels",
        explainers.reduce_channels,
        lambda: {"attributions": _g(3, 3, 8, 8) - 0.5, "sign": "absolute"},
        batch=("attributions",),
        choices=("sign",),
        allow={"attributions": {"nan": _NOT_READ, "inf": _NOT_READ}},
    ),
    Spec(
        "lap_all",
        explainers.lap_all,
        lambda: {
            "maps": [_g(3, 8, 8), _g(3, 4, 4)],
            "decay": 0.8,
            "threshold": 0.5,
            "variant": "algorithm1",
        },
        choices=("variant",),
        positives=("decay",),
    ),
    Spec(
        "class_scores",
        explainers.class_scores,
        lambda: {"logits": _g(3, 4), "target": _labels(), "kind": "softmax"},
        batch=("logits", "target"),
        choices=("kind",),
    ),
    Spec(
        "rise_masks",
        explainers.rise_masks,
        lambda: {"n_masks": 4, "size": (8, 8), "grid_size": 2, "p": 0.5, "seed": 0},
        positives=("n_masks", "grid_size", "p"),
    ),
    Spec(
        "RiseMasks",
        explainers.RiseMasks,
        lambda: {"n_masks": 4, "size": (8, 8), "grid_size": 2, "p": 0.5, "seed": 0},
        positives=("n_masks", "grid_size", "p"),
    ),
    Spec(
        "display_name",
        explainers.display_name,
        lambda: {"name": "gradcam"},
        choices=("name",),
        names={"name": "explainer"},
    ),
    Spec(
        "own_scale",
        explainers.own_scale,
        lambda: {"name": "lap"},
        choices=("name",),
        names={"name": "explainer"},
    ),
    Spec(
        "get",
        explainers.get,
        lambda: {"name": "gradcam"},
        choices=("name",),
        names={"name": "explainer"},
    ),
    Spec(
        "method_facts",
        explainers.method_facts,
        lambda: {"names": ["gradcam", "lap"]},
        allow={"names": {"none": "None: every registered method, as table_order"}},
    ),
    Spec("table_order", explainers.table_order, lambda: {"names": ["gradcam", "lap"]}),
]


_FORWARD_NAN = {
    "x": {"nan": _FORWARD, "inf": _FORWARD},
    "score": {"nan": _FORWARD, "inf": _FORWARD},
}


def _x() -> torch.Tensor:
    return _g(3, 4, 8, 8)


def _score() -> torch.Tensor:
    return _g(3, 1, 8, 8)


LAYERS = [
    Spec(
        "local_attention_pool2d",
        layers.local_attention_pool2d,
        lambda: {
            "x": _x(),
            "score": _score(),
            "kernel_size": 2,
            "stride": 2,
            "padding": 0,
            "alpha": 1.0,
            "eps": 1e-6,
            "ceil_mode": False,
            "backend": "torch",
        },
        batch=("x", "score"),
        positives=("kernel_size", "stride", "eps"),
        choices=("backend",),
        allow=_FORWARD_NAN,
    ),
    Spec(
        "adaptive_local_attention_pool2d",
        layers.adaptive_local_attention_pool2d,
        lambda: {
            "x": _x(),
            "score": _score(),
            "output_size": 2,
            "alpha": 1.0,
            "eps": 1e-6,
            "backend": "torch",
        },
        batch=("x", "score"),
        positives=("output_size", "eps"),
        choices=("backend",),
        allow=_FORWARD_NAN,
    ),
    Spec(
        "LocalAttentionPool2d",
        layers.LocalAttentionPool2d,
        lambda: {
            "in_channels": 4,
            "kernel_size": 2,
            "stride": 2,
            "padding": 0,
            "n_concepts": 2,
            "hidden_channels": 4,
            "aggregation": "max",
            "alpha": 1.0,
            "eps": 1e-6,
            "ceil_mode": False,
        },
        positives=("in_channels", "kernel_size", "stride", "n_concepts", "eps"),
        choices=("aggregation",),
    ),
    Spec(
        "AdaptiveLocalAttentionPool2d",
        layers.AdaptiveLocalAttentionPool2d,
        lambda: {
            "in_channels": 4,
            "output_size": 2,
            "n_concepts": 2,
            "hidden_channels": 4,
            "aggregation": "max",
            "alpha": 1.0,
            "eps": 1e-6,
        },
        positives=("in_channels", "output_size", "n_concepts", "eps"),
        choices=("aggregation",),
    ),
    Spec(
        "ConceptScorer",
        layers.ConceptScorer,
        lambda: {
            "in_channels": 4,
            "n_concepts": 2,
            "hidden_channels": 4,
            "aggregation": "max",
            "head_hidden": "shared",
        },
        positives=("in_channels", "n_concepts"),
        choices=("aggregation", "head_hidden"),
    ),
]

SPECS = [*METRICS, *LOSSES, *EXPLAINER_HELPERS, *LAYERS]
