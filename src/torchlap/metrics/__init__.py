"""Metrics for models and explanation maps, batched torch, each with its direction as data.

- model performance: :func:`binary_classification_metrics`,
  :func:`multiclass_classification_metrics` (torchmetrics);
- LAP as a standalone predictor (paper 000, section IV): :func:`binary_rule`,
  :func:`concept_sum_rule`, :class:`LearnedConceptPredictor`, :func:`predictivity`,
  :func:`faithfulness`;
- localization against regions: :func:`iou_threshold`, :func:`fit_global_threshold`,
  :func:`iou_topk`, :func:`ebpg`, :func:`miou_top20`, :func:`bbox_accuracy`,
  :func:`pointing_game`, :func:`localization_metrics`;
- faithfulness by perturbation: :func:`keep_top_k`, :func:`drop_increase`,
  :func:`drop_inc_win`, :func:`stability`; :func:`binarize_map`, the one definition of paper
  004's binarized energy map (used by the metric, the ante-hoc model and its explainer);
- how sure a mean is: :func:`bootstrap_interval` (one method's per-image scores) and
  :func:`paired_difference` (two methods on the same images).

Every metric returns a :class:`MetricResult` (or a dict of them); :data:`METRIC_DIRECTIONS`
records whether higher or lower is better for each metric name.
"""

from torchlap.metrics._common import (
    BINARIZE_NORMALIZATIONS,
    METRIC_DIRECTIONS,
    MetricResult,
    binarize_map,
    count_for_fraction,
    higher_is_better,
    normalize_by_max,
    top_k_mask,
)
from torchlap.metrics.classification import (
    binary_classification_metrics,
    multiclass_classification_metrics,
)
from torchlap.metrics.lap_predictors import (
    LearnedConceptPredictor,
    binary_rule,
    concept_size_features,
    concept_sum_rule,
    faithfulness,
    lap_predictor_metrics,
    paper_primary_rule,
    predictivity,
    top_k_lap_predictor_metrics,
)
from torchlap.metrics.localization import (
    bbox_accuracy,
    ebpg,
    fit_global_threshold,
    iou_threshold,
    iou_topk,
    localization_metrics,
    miou_top20,
    pointing_game,
)
from torchlap.metrics.noise_stability import salt_and_pepper, stability
from torchlap.metrics.perturbation import (
    BASELINES,
    baseline_images,
    drop_inc_win,
    drop_increase,
    keep_top_k,
)
from torchlap.metrics.uncertainty import bootstrap_interval, paired_difference

__all__ = [
    "BASELINES",
    "BINARIZE_NORMALIZATIONS",
    "METRIC_DIRECTIONS",
    "LearnedConceptPredictor",
    "MetricResult",
    "baseline_images",
    "bbox_accuracy",
    "binarize_map",
    "binary_classification_metrics",
    "binary_rule",
    "bootstrap_interval",
    "concept_size_features",
    "concept_sum_rule",
    "count_for_fraction",
    "drop_inc_win",
    "drop_increase",
    "ebpg",
    "faithfulness",
    "fit_global_threshold",
    "higher_is_better",
    "iou_threshold",
    "iou_topk",
    "keep_top_k",
    "lap_predictor_metrics",
    "localization_metrics",
    "miou_top20",
    "multiclass_classification_metrics",
    "normalize_by_max",
    "paired_difference",
    "paper_primary_rule",
    "pointing_game",
    "predictivity",
    "salt_and_pepper",
    "stability",
    "top_k_lap_predictor_metrics",
    "top_k_mask",
]
