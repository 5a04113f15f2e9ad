"""SISE phase 1, the block-wise layer selection (paper 003, "Block-Wise Feature Explanation"),
against a reference written from the paper's text.

The paper: every CNN is "convolutional blocks connected via pooling layers"; inside a block "the
dimensions of their input and output signal are the same"; SISE visualises "the feature maps in
the last layers of all of their convolutional blocks". The reference runs the model once with
its own forward hooks on the model's layers (ResNet's stem layers and stages, a Sequential's
entries; a Sequential of plain layers, such as a SmallCNN stage conv-BN-ReLU-pool or a VGG
block, is opened into its layers), records their output shapes in execution order, and takes
each layer after which the spatial size shrinks (the next layer down-samples: a pool, a strided
convolution, a stage that starts with one, the global pool) or the feature maps end (flatten):
the last layer of each block, named by the outermost module returning its output (an opened
Sequential's last layer is the Sequential). A block is convolutional: an end with no
convolution since the previous end (a pooled output flattened or pooled again) ends none, as
"for each CNN containing B convolutional blocks, the last layer of each block is indicated as
l_b in {1, ..., B}" (Eq. 12). It is compared with ``Sise.layer_names``.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
import torchvision
from torch import nn

import torchlap
from torchlap.explainers.sise import Sise
from torchlap.layers import LapBase
from torchlap.models.wrapping import NormalizedClassifier, SmallCNN


def _is_plain_sequential(module: nn.Module) -> bool:
    """A Sequential of layers (a LAP layer is one layer: a pool)."""
    return isinstance(module, nn.Sequential) and all(
        isinstance(layer, LapBase) or not list(layer.children()) for layer in module.children()
    )


def top_level_shapes(model: nn.Module, images: torch.Tensor) -> list[tuple[str, tuple]]:
    """``(name, output shape)`` of each layer, in the order the layers ran; a child that is a
    Sequential of plain layers is opened into them, and its last layer named after it."""
    events: list[tuple[str, tuple]] = []
    handles = []
    layers = []
    for name, child in model.named_children():
        if _is_plain_sequential(child) and model is not child:
            inner = list(child.named_children())
            layers += [(f"{name}.{sub}", layer) for sub, layer in inner[:-1]]
            layers.append((name, inner[-1][1]))  # the outermost module returning its output
        else:
            layers.append((name, child))
    try:
        for name, layer in layers:
            handles.append(
                layer.register_forward_hook(
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


def convolutional_names(model: nn.Module) -> set[str]:
    """The names ``top_level_shapes`` gives, of the layers that are or hold a convolution."""
    names = set()
    for name, child in model.named_children():
        if _is_plain_sequential(child) and model is not child:
            inner = list(child.named_children())
            for index, (sub, layer) in enumerate(inner):
                if isinstance(layer, nn.Conv2d):
                    names.add(name if index == len(inner) - 1 else f"{name}.{sub}")
        elif not isinstance(child, LapBase) and any(
            isinstance(m, nn.Conv2d) for m in child.modules()
        ):
            names.add(name)
    return names


def block_ends(events: list[tuple[str, tuple]], convolutional: set[str]) -> list[str]:
    """The last layer of each convolutional block: a feature map (more than one pixel) whose
    successor has fewer pixels or is no feature map, with a convolution (a layer named in
    ``convolutional``) since the previous block's end."""
    ends = []
    convolved = False
    for (name, shape), (_, following) in pairwise(events):
        convolved = convolved or name in convolutional
        if pixels(shape) > 1 and pixels(following) < pixels(shape):
            if convolved:
                ends.append(name)
            convolved = False
    return ends


def reference_blocks(model: nn.Module, images: torch.Tensor) -> list[str]:
    return block_ends(top_level_shapes(model, images), convolutional_names(model))


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
    expected = block_ends(events, convolutional_names(model))
    shapes = dict(events)
    # the stem (before the max pool) and the four stages, each at half the previous resolution
    sides = [size // 2, size // 4, size // 8, size // 16, size // 32]
    assert [shapes[name][2:] for name in expected] == [(side, side) for side in sides]
    assert Sise(model).layer_names(images) == expected


def vgg_like() -> nn.Sequential:
    """A plain Sequential as VGG's ``features``: conv-ReLU blocks joined by max pools, then the
    classifier on the flattened last pool (no global pool)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),  # "3": end of the 16x16 block
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),  # "8": end of the 8x8 block
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),  # "11": end of the 4x4 block
        nn.MaxPool2d(2),  # "12": the last feature maps (2x2), flattened next: no block's end
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 5),
    )


def test_hand_built_cnns_match_the_papers_rule() -> None:
    images = torch.randn(2, 3, 16, 16)
    for build, count in ((flat_cnn, 3), (nested_cnn, 3), (vgg_like, 3)):
        torch.manual_seed(0)
        model = build()
        expected = reference_blocks(model, images)
        assert len(expected) == count, expected
        assert Sise(model).layer_names(images) == expected
    assert reference_blocks(flat_cnn(), images) == ["3", "6", "10"]
    assert reference_blocks(nested_cnn(), images) == ["0", "2", "4"]
    # three convolutional blocks, three layers (the pooled "12" used to be a fourth)
    assert reference_blocks(vgg_like(), images) == ["3", "8", "11"]


def test_vgg16_has_the_papers_five_blocks() -> None:
    """Paper 003 visualises VGG16 (Fig. 5: "a CNN with 5 convolutional blocks"): the ReLU
    before each of the five max pools. torchvision's ``avgpool`` (7x7 to 7x7 at 224 px, after
    the fifth max pool) holds no convolution; it used to be a sixth layer."""
    model = torchvision.models.vgg16(weights=None).eval()
    images = torch.randn(1, 3, 64, 64)
    expected = ["features.3", "features.8", "features.15", "features.22", "features.29"]
    assert Sise(model).layer_names(images) == expected


@pytest.mark.parametrize("size", [32, 64])
def test_smallcnn_blocks_match_the_papers_rule(size: int) -> None:
    """SmallCNN's stages are conv-BN-ReLU-pool: each block ends at ``layerN.relu`` (the pool
    joins it to the next block). The last pooled output, which feeds the global pool, holds no
    convolution of its own: no fourth block (it used to be one). Before that the pooled stage
    outputs ``layerN`` (the next block's input) were taken."""
    images = torch.randn(1, 3, size, size)
    for model in (SmallCNN(4), torchlap.lapify(SmallCNN(4))[0]):
        expected = reference_blocks(model, images)
        assert expected == ["layer1.relu", "layer2.relu", "layer3.relu"]
        assert Sise(model).layer_names(images) == expected


def _resnet18() -> nn.Module:
    return torchvision.models.resnet18(num_classes=2)


def _lap_resnet18() -> nn.Module:
    return torchlap.lapify(torchvision.models.resnet18(num_classes=2), where="resnet18")[0]


@pytest.mark.parametrize("build", [_resnet18, _lap_resnet18, lambda: SmallCNN(3)])
def test_a_runs_input_normalisation_is_no_block(build) -> None:
    """A run's model is ``NormalizedClassifier`` (``net(normalize(x))``): ``normalize``'s
    output is the image itself, not a feature map of a block. It used to be SISE's first
    layer (its masks were the image's colour channels)."""
    torch.manual_seed(0)
    net = build().eval()
    wrapped = NormalizedClassifier(net, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]).eval()
    images = torch.rand(1, 3, 64, 64)
    bare = Sise(net).layer_names(images)
    assert Sise(wrapped).layer_names(images) == [f"net.{name}" for name in bare]


def test_convnext_blocks_are_its_stages() -> None:
    """ConvNeXt's blocks permute to channels-last and back and run ``nn.Linear`` there: those
    tensors' last two dimensions are not a feature map's, so they are no down-sampling. The
    blocks are the four stages (the last one as ``features``, the outermost module returning
    it); before, the two linear layers of every CNBlock were taken too (40 layers)."""
    model = torchvision.models.convnext_tiny(num_classes=3).eval()
    images = torch.randn(1, 3, 64, 64)
    assert Sise(model).layer_names(images) == ["features.1", "features.3", "features.5", "features"]


def test_resnet50_blocks_hold_the_papers_3904_feature_maps() -> None:
    """Paper 003's ablation: "a total of 3904 feature maps initially extracted from the same
    ResNet-50 model" = 64 (stem) + 256 + 512 + 1024 + 2048 (the four stages)."""
    model = torchvision.models.resnet50(weights=None).eval()
    images = torch.randn(1, 3, 64, 64)
    explainer = Sise(model)
    names = explainer.layer_names(images)
    shapes = explainer.feature_probe(images).shapes
    assert names == ["relu", "layer1", "layer2", "layer3", "layer4"]
    assert sum(shapes[name][1] for name in names) == 3904
