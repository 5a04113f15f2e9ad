"""The checks of a training configuration's LAP-layer settings (:class:`TrainConfig
<torchlap.train.config.TrainConfig>` fields ``hidden_channels``, ``aggregation``, ``alpha``,
``head_hidden``, ``ratios``, ``concordance_weight``) and of its model-selection settings, each
naming the field and what it accepts."""

from __future__ import annotations

from typing import Any

from torchlap._checks import check_choice, check_number
from torchlap.layers import HEAD_HIDDEN
from torchlap.losses.injection import COMMON_HEAD_SETS
from torchlap.models.objectives import check_head_ratios

__all__ = ["AGGREGATION_NAMES", "KEEP_EPOCHS", "SELECT_METRICS", "check_lap_settings"]

AGGREGATION_NAMES = ("max", "sum", "mean", "conv")
# model selection (paper 000, App. A: "the epoch with the best performance on validation data"):
# the best validation epoch or the last; the value ranking epochs ("loss": the total objective,
# "cross_entropy": the classification loss alone, the same quantity for every kind of model)
KEEP_EPOCHS = ("best", "last")
SELECT_METRICS = ("balanced_accuracy", "accuracy", "loss", "cross_entropy")


def check_lap_settings(config: Any) -> None:
    """Raise ``ValueError`` naming the first bad LAP or model-selection setting of ``config``
    (a TrainConfig, whose ``hidden_channels`` ``validate`` has checked): ``aggregation`` one of
    :data:`AGGREGATION_NAMES` or ``None``, ``alpha`` >= 0 or ``None``, ``head_hidden`` one of
    :data:`torchlap.layers.HEAD_HIDDEN`, ``common_head_sets`` one of
    :data:`torchlap.losses.injection.COMMON_HEAD_SETS`, ``ratios`` as
    :func:`~torchlap.models.objectives.check_head_ratios`, ``concordance_weight`` >= 0 or
    ``None``, ``keep_epoch`` and ``select_metric`` of their choices; and ``head_hidden=
    "per_head"`` where the heads have no hidden channels to split (``hidden_channels`` 0, as
    given or as the ``--lap`` preset's paper value): it would change nothing."""
    hidden = config.hidden_channels  # (an int from 0 or None: TrainConfig.validate checks it)
    if config.aggregation is not None and config.aggregation not in AGGREGATION_NAMES:
        raise ValueError(
            f"unknown aggregation {config.aggregation!r}; expected one of {AGGREGATION_NAMES}"
        )
    if config.alpha is not None:  # 0: N(V) = V + eps (paper 000, Eq. 4); its gradient is 0 there
        check_number(config.alpha, "alpha", minimum=0.0)
    check_choice(config.head_hidden, "head_hidden (--head-hidden)", HEAD_HIDDEN)
    check_choice(config.common_head_sets, "common_head_sets (--common-head-sets)", COMMON_HEAD_SETS)
    if config.ratios is not None:
        check_head_ratios(config.ratios)
    if config.concordance_weight is not None:
        check_number(config.concordance_weight, "concordance_weight", minimum=0.0)
    if config.keep_epoch not in KEEP_EPOCHS:
        raise ValueError(f"keep_epoch must be one of {KEEP_EPOCHS}, got {config.keep_epoch!r}")
    if config.select_metric not in SELECT_METRICS:
        raise ValueError(
            f"select_metric must be one of {SELECT_METRICS}, got {config.select_metric!r}"
        )
    if config.head_hidden == "per_head" and config.uses_lap:
        built = config.lap_options()[0].get("hidden_channels", 8)  # 8: the layer's default
        if built == 0:
            raise ValueError(
                "--head-hidden per_head gives each LAP head its own hidden channels, but the "
                "heads have none (hidden_channels 0: one 1x1 convolution, "
                f"{'--hidden-channels 0' if hidden == 0 else f'the --lap {config.lap} preset'}"
                "): leave --head-hidden out, or give --hidden-channels N > 0"
            )
