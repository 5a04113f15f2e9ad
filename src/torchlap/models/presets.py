"""LAP layouts of the paper's experiments (paper 000, sections IV.A-B), by name.

Each preset names the modules ``lapify`` replaces in a torchvision model and the LAP layers that
result (the keys of ``torchlap.attention_maps``):

- ``resnet18``, ``resnet34``: replaces ``layer2.0``, ``layer3.0``, ``layer4.0``, ``avgpool``;
  LAP layers ``layer2.0.lap``, ``layer3.0.lap``, ``layer4.0.lap``, ``avgpool``.
- ``inception_v3``: replaces ``maxpool2``, ``Mixed_6a``, ``Mixed_7a``, ``avgpool``; LAP layers
  ``maxpool2``, ``Mixed_6a.lap``, ``Mixed_7a.lap``, ``avgpool``.
- ``resnet50-imagenet``: replaces ``layer4.0``, ``avgpool``; LAP layers ``layer4.0.lap``,
  ``avgpool``.

"Three LAP modules in blocks 2, 3 and 4 of ResNet 18 and maxpool2, Mixed6a and Mixed7a of
Inception V3. The adaptive pooling was replaced with adaptive LAP in both networks" (RSNA and
CelebA); "we only used a LAP in the fourth layer" of ResNet 50 (ImageNet), whose global pool we
replace too. A block (``layerX.0``, ``Mixed_6a``, ``Mixed_7a``) gets ONE LAP whose score map
steers all its down-sampling paths (see :mod:`torchlap.models.blocks`).

``paper_options`` are the LAP settings of the paper for that setup; ``lapify`` does not apply
them by itself (the number of concepts depends on the data set), pass them explicitly.
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
    paper_options={"n_concepts": 1, "hidden_channels": 8},
)

PRESETS: dict[str, Preset] = {
    "resnet18": _RESNET_BLOCKS,
    "resnet34": _RESNET_BLOCKS,
    "inception_v3": Preset(
        sites=("maxpool2", "Mixed_6a", "Mixed_7a", "avgpool"),
        lap_names=("maxpool2", "Mixed_6a.lap", "Mixed_7a.lap", "avgpool"),
        architectures=("inception_v3",),
        description="LAPs at maxpool2, Mixed_6a, Mixed_7a and the global pool (RSNA, CelebA)",
        paper_options={"n_concepts": 1, "hidden_channels": 8},
    ),
    "resnet50-imagenet": Preset(
        sites=("layer4.0", "avgpool"),
        lap_names=("layer4.0.lap", "avgpool"),
        architectures=("resnet50",),
        description="a LAP in the fourth layer and the global pool of a pretrained ResNet 50",
        # "a 1x1 convolution layer with 1000 heads" and "a 1x1 convolution as the aggregation"
        paper_options={"n_concepts": 1000, "hidden_channels": 0, "aggregation": "conv"},
    ),
}
