"""LAP layouts of the paper's experiments (paper 000, sections IV.A-B), by name.

Each preset names the modules ``lapify`` replaces in a torchvision model and the LAP layers that
result (the keys of ``torchlap.attention_maps``):

- ``resnet18``, ``resnet34``: replaces ``layer2.0``, ``layer3.0``, ``layer4.0``, ``avgpool``;
  LAP layers ``layer2.0.lap``, ``layer3.0.lap``, ``layer4.0.lap``, ``avgpool``.
- ``inception_v3``: replaces ``maxpool2``, ``Mixed_6a``, ``Mixed_7a``, ``avgpool``; LAP layers
  ``maxpool2``, ``Mixed_6a.lap``, ``Mixed_7a.lap``, ``avgpool``.
- ``resnet50-imagenet``: replaces ``layer4.0``; LAP layer ``layer4.0.lap`` (the global pool
  stays an average pool).
- ``resnet50-imagenet-global``: torchlap's earlier layout, ``layer4.0`` and ``avgpool``; LAP
  layers ``layer4.0.lap``, ``avgpool`` (a second, global LAP the paper does not have).

"Three LAP modules in blocks 2, 3 and 4 of ResNet 18 and maxpool2, Mixed6a and Mixed7a of
Inception V3. The adaptive pooling was replaced with adaptive LAP in both networks" (RSNA and
CelebA); "we only used a LAP in the fourth layer" of ResNet 50 (ImageNet): one LAP, the global pool
kept. A block (``layerX.0``, ``Mixed_6a``, ``Mixed_7a``) gets ONE LAP whose score map
steers all its down-sampling paths (see :mod:`torchlap.models.blocks`).

``paper_options`` are the paper's settings for that setup, which ``torchlap train`` applies
unless the user gives their own (``TrainConfig.lap_options``/``head_ratios``); ``lapify`` does
not apply them by itself, pass them explicitly. Keys: ``hidden_channels``, ``aggregation``
(LAP heads), ``ratios`` (``{head or "*": [MinAR, MaxAR, IAR]}``), ``concept_weight`` (the
concept loss weight per LAP). The number of heads follows the data (one for a binary task as
RSNA, one per class as ImageNet; CelebA's three heads need ``--n-concepts 3`` and concept sets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PRESETS", "Preset"]


@dataclass(frozen=True)
class Preset:
    """A named LAP layout: the modules to replace and the resulting LAP layer names."""

    sites: tuple[str, ...]
    lap_names: tuple[str, ...]
    architectures: tuple[str, ...]
    description: str
    paper_options: dict[str, Any] = field(default_factory=dict)


_RESNET_BLOCKS = Preset(
    sites=("layer2.0", "layer3.0", "layer4.0", "avgpool"),
    lap_names=("layer2.0.lap", "layer3.0.lap", "layer4.0.lap", "avgpool"),
    architectures=("resnet18", "resnet34"),
    description="one LAP in each of blocks 2, 3 and 4 and the global pool (RSNA, CelebA)",
    # "two 1x1 convolution layers with eight hidden channels"; CelebA: "the sum of the three
    # heads' scores was used as the aggregation" (one head, as RSNA, needs no aggregation)
    paper_options={"hidden_channels": 8, "aggregation": "sum"},
)

# Appendix C (ImageNet): "MinAR and IAR of 0.01, without MaxAR" "with a factor of 0.125"
_IMAGENET_OPTIONS = {
    "hidden_channels": 0,
    "aggregation": "conv",
    "ratios": {"*": [0.01, None, 0.01]},
    "concept_weight": 0.125,
}

PRESETS: dict[str, Preset] = {
    "resnet18": _RESNET_BLOCKS,
    "resnet34": _RESNET_BLOCKS,
    "inception_v3": Preset(
        sites=("maxpool2", "Mixed_6a", "Mixed_7a", "avgpool"),
        lap_names=("maxpool2", "Mixed_6a.lap", "Mixed_7a.lap", "avgpool"),
        architectures=("inception_v3",),
        description="LAPs at maxpool2, Mixed_6a, Mixed_7a and the global pool (RSNA, CelebA)",
        paper_options={"hidden_channels": 8, "aggregation": "sum"},
    ),
    "resnet50-imagenet": Preset(
        sites=("layer4.0",),
        lap_names=("layer4.0.lap",),
        architectures=("resnet50",),
        description="one LAP in the fourth layer of a pretrained ResNet 50 (ImageNet)",
        # "a 1x1 convolution layer with 1000 heads" and "a 1x1 convolution as the aggregation"
        paper_options=_IMAGENET_OPTIONS,
    ),
    "resnet50-imagenet-global": Preset(
        sites=("layer4.0", "avgpool"),
        lap_names=("layer4.0.lap", "avgpool"),
        architectures=("resnet50",),
        description="resnet50-imagenet plus a global LAP (not in the paper: a second map, 1x1 "
        "at the end, and a concordance pair)",
        paper_options=_IMAGENET_OPTIONS,
    ),
}
