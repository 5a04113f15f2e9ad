"""SISE phase 1, the block-wise layer selection (paper 003, "Block-Wise Feature Explanation"),
against a reference written from the paper's text.

The paper: every CNN is "convolutional blocks connected via pooling layers"; inside a block "the
dimensions of their input and output signal are the same"; SISE visualises "the feature maps in
the last layers of all of their convolutional blocks". The reference runs the model once with
its own forward hooks on the model's top-level layers (ResNet's stem layers and stages, a
Sequential's entries), records their output shapes in execution order, and takes each layer
after which the spatial size shrinks (the next layer down-samples: a pool, a strided
convolution, a stage that starts with one, the global pool) or the feature maps end (flatten):
the last layer of each block. It is compared with ``Sise.layer_names``.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
import torchvision
from torch import nn

from torchlap.explainers.sise import Sise


def top_level_shapes(model: nn.Module, images: torch.Tensor) -> list[tuple[str, tuple]]:
    """``(name, output shape)`` of each top-level layer, in the order the layers ran."""
    events: list[tuple[str, tuple]] = []
    handles = []
    try:
        for name, child in model.named_children():
            handles.append(
                child.register_forward_hook(
                    lambda _m, _a, out, name=name: events.append((name, tuple(out.shape)))
                )
            )
        with torch.no_grad():
            model.eval()(images)
    finally:
        for handle in handles:
            handle.remove()
    return events


def pixels(shape: tuple) -> int:
    """Spatial size of a feature map's shape (B, C, h, w); 0 for anything else."""
    return shape[2] * shape[3] if len(shape) == 4 else 0


def block_ends(events: list[tuple[str, tuple]]) -> list[str]:
    """The last layer of each convolutional block: a feature map (more than one pixel) whose
    successor has fewer pixels or is no feature map."""
    ends = []
    for (name, shape), (_, following) in pairwise(events):
        if pixels(shape) > 1 and pixels(following) < pixels(shape):
            ends.append(name)
    return ends


def flat_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),  # "3": end of the 16x16 block (a max pool follows)
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),  # "6": end of the 8x8 block (a strided convolution follows)
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),  # "10": end of the 4x4 block (the global pool follows)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )


def nested_cnn() -> nn.Sequential:
    """VGG-like: blocks as containers, max pools between them, no global pool."""
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1)),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(inplace=True)),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 3),
    )


@pytest.mark.parametrize("size", [64, 224])  # 224: the paper's ImageNet-size inputs
def test_resnet18_blocks_match_the_papers_rule(size: int) -> None:
    model = torchvision.models.resnet18(weights=None)
    images = torch.randn(1, 3, size, size)
    events = top_level_shapes(model, images)
    assert [name for name, _ in events] == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc",
    ]  # fmt: skip
    expected = block_ends(events)
    shapes = dict(events)
    # the stem (before the max pool) and the four stages, each at half the previous resolution
    sides = [size // 2, size // 4, size // 8, size // 16, size // 32]
    assert [shapes[name][2:] for name in expected] == [(side, side) for side in sides]
    assert Sise(model).layer_names(images) == expected


def test_hand_built_cnns_match_the_papers_rule() -> None:
    images = torch.randn(2, 3, 16, 16)
    for build, count in ((flat_cnn, 3), (nested_cnn, 3)):
        torch.manual_seed(0)
        model = build()
        expected = block_ends(top_level_shapes(model, images))
        assert len(expected) == count, expected
        assert Sise(model).layer_names(images) == expected
    assert block_ends(top_level_shapes(flat_cnn(), images)) == ["3", "6", "10"]
    assert block_ends(top_level_shapes(nested_cnn(), images)) == ["0", "2", "4"]
