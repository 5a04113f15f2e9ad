"""torchlap: Local Attention Pooling that makes CNNs explain themselves."""

from torchlap.layers import (
    AdaptiveLocalAttentionPool2d,
    LapMaps,
    LocalAttentionPool2d,
    attention_maps,
    clear_attention_maps,
)

__version__ = "0.1.0"

__all__ = [
    "AdaptiveLocalAttentionPool2d",
    "LapMaps",
    "LocalAttentionPool2d",
    "__version__",
    "attention_maps",
    "clear_attention_maps",
]
