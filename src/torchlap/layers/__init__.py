"""LAP layers: ``LocalAttentionPool2d``, its adaptive variant, the concept scorer and the maps."""

from torchlap.layers.functional import adaptive_local_attention_pool2d, local_attention_pool2d
from torchlap.layers.lap import (
    AGGREGATIONS,
    HEAD_HIDDEN,
    AdaptiveLocalAttentionPool2d,
    ConceptScorer,
    LapBase,
    LapMaps,
    LocalAttentionPool2d,
    attention_maps,
    clear_attention_maps,
    lap_modules,
)

__all__ = [
    "AGGREGATIONS",
    "HEAD_HIDDEN",
    "AdaptiveLocalAttentionPool2d",
    "ConceptScorer",
    "LapBase",
    "LapMaps",
    "LocalAttentionPool2d",
    "adaptive_local_attention_pool2d",
    "attention_maps",
    "clear_attention_maps",
    "lap_modules",
    "local_attention_pool2d",
]
