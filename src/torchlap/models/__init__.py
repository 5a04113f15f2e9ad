"""Model surgery: put LAP layers into CNNs, presets of the paper, and model building."""

# the self-explaining peers (paper 002 BLA, paper 004 ante-hoc weight network)
from torchlap.models.antehoc import (
    AnteHocMaps,
    AnteHocModel,
    WeightNetwork,
    antehoc_parameter_groups,
    antehoc_pass_one_loss,
    antehoc_pass_two_loss,
    select_conv_layers,
    soft_attention_map,
)
from torchlap.models.bla import (
    BLA_VARIANTS,
    BlaMaps,
    BoundedLogitAttention,
    FeatureSelectionPool,
    L2XFeatureSelection,
    apply_blaify_config,
    bla_lime_faithfulness,
    bla_maps,
    bla_modules,
    bla_parameters,
    blaify,
    freeze_all_but_bla,
    lime_patch_scores,
    lime_spearman,
    spearman_correlation,
)
from torchlap.models.blocks import LapConv2d, LapInceptionReduction, LapResidualBlock
from torchlap.models.build import (
    adapt_input_weight,
    apply_lapify_config,
    build_model,
    model_from_config,
)
from torchlap.models.lapify import freeze_all_but_lap, lap_parameters, lapify
from torchlap.models.presets import PRESETS, Preset

__all__ = [
    "BLA_VARIANTS",
    "PRESETS",
    "AnteHocMaps",
    "AnteHocModel",
    "BlaMaps",
    "BoundedLogitAttention",
    "FeatureSelectionPool",
    "L2XFeatureSelection",
    "LapConv2d",
    "LapInceptionReduction",
    "LapResidualBlock",
    "Preset",
    "WeightNetwork",
    "adapt_input_weight",
    "antehoc_parameter_groups",
    "antehoc_pass_one_loss",
    "antehoc_pass_two_loss",
    "apply_blaify_config",
    "apply_lapify_config",
    "bla_lime_faithfulness",
    "bla_maps",
    "bla_modules",
    "bla_parameters",
    "blaify",
    "build_model",
    "freeze_all_but_bla",
    "freeze_all_but_lap",
    "lap_parameters",
    "lapify",
    "lime_patch_scores",
    "lime_spearman",
    "model_from_config",
    "select_conv_layers",
    "soft_attention_map",
    "spearman_correlation",
]
