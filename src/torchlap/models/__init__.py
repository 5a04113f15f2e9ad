"""Model surgery: put LAP layers into CNNs, presets of the paper, model building, and the
model families (:mod:`torchlap.models.recipes`: one recipe per family builds, records and
rebuilds its model, gives its training objective and names its explainer)."""

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
    bla_maps,
    bla_modules,
    bla_parameters,
    blaify,
    freeze_all_but_bla,
)
from torchlap.models.blocks import LapConv2d, LapInceptionReduction, LapResidualBlock
from torchlap.models.build import (
    adapt_input_weight,
    apply_lapify_config,
    build_model,
    model_from_config,
)
from torchlap.models.folding import folded_batch_norms
from torchlap.models.lapify import freeze_all_but_lap, lap_parameters, lapify
from torchlap.models.presets import PRESETS, Preset
from torchlap.models.recipes import RECIPES, Recipe, model_choices, rebuild_model
from torchlap.models.wrapping import Normalize, NormalizedClassifier, SmallCNN

__all__ = [
    "BLA_VARIANTS",
    "PRESETS",
    "RECIPES",
    "AnteHocMaps",
    "AnteHocModel",
    "BlaMaps",
    "BoundedLogitAttention",
    "FeatureSelectionPool",
    "L2XFeatureSelection",
    "LapConv2d",
    "LapInceptionReduction",
    "LapResidualBlock",
    "Normalize",
    "NormalizedClassifier",
    "Preset",
    "Recipe",
    "SmallCNN",
    "WeightNetwork",
    "adapt_input_weight",
    "antehoc_parameter_groups",
    "antehoc_pass_one_loss",
    "antehoc_pass_two_loss",
    "apply_blaify_config",
    "apply_lapify_config",
    "bla_maps",
    "bla_modules",
    "bla_parameters",
    "blaify",
    "build_model",
    "folded_batch_norms",
    "freeze_all_but_bla",
    "freeze_all_but_lap",
    "lap_parameters",
    "lapify",
    "model_choices",
    "model_from_config",
    "rebuild_model",
    "select_conv_layers",
    "soft_attention_map",
]
