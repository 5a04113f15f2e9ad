"""LapConv2d and the one-LAP blocks against slow loop references of paper 000, Eq. 1 and 4.

The references follow the paper's rule literally: "a convolution with the stride of one,
proceeding with a LAP with the same kernel size and stride as the convolution's stride",
each window pooled by ``O = sum(F(X) X) / sum(F(X))`` with ``F = exp(-a^2 (max V - V)^2) V + eps``.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import InceptionB, InceptionD
from torchvision.models.resnet import BasicBlock, Bottleneck

from torchlap.models import LapConv2d, LapInceptionReduction, LapResidualBlock


def reference_window(values: torch.Tensor, scores: torch.Tensor, alpha, eps: float):
    """Eq. 1 with Eq. 4 on one window: values (C, K), scores (K,) (differentiable)."""
    weights = torch.exp(-(alpha**2) * (scores.max() - scores) ** 2) * scores + eps
    return (values * weights).sum(dim=1) / weights.sum()


def reference_score(lap: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3 of a one-concept LAP pixel by pixel: sigmoid(w2 . relu(W1 x + b1) + b2)."""
    first, last = lap.scorer.heads[0], lap.scorer.heads[-1]
    w1, b1 = first.weight[:, :, 0, 0], first.bias
    w2, b2 = last.weight[0, :, 0, 0], last.bias[0]
    batch, _, height, width = x.shape
    rows = []
    for b in range(batch):
        for r in range(height):
            for c in range(width):
                rows.append(torch.sigmoid(w2 @ torch.relu(w1 @ x[b, :, r, c] + b1) + b2))
    return torch.stack(rows).reshape(batch, 1, height, width)


def reference_pool(x, score, kernel, stride, out_size, alpha, eps, offset=(0, 0)):
    """Loop over samples and windows; windows cut at the map's border (padding has no weight).

    ``score`` is read at ``offset`` (a score map of a larger grid) for each feature pixel.
    """
    batch, channels, height, width = x.shape
    out = torch.zeros(batch, channels, *out_size, dtype=x.dtype)
    for b in range(batch):
        for i in range(out_size[0]):
            for j in range(out_size[1]):
                pixels, scores = [], []
                for r in range(i * stride[0], i * stride[0] + kernel[0]):
                    for c in range(j * stride[1], j * stride[1] + kernel[1]):
                        if r < height and c < width:
                            pixels.append(x[b, :, r, c])
                            scores.append(score[b, 0, r + offset[0], c + offset[1]])
                out[b, :, i, j] = reference_window(
                    torch.stack(pixels, dim=1), torch.stack(scores), alpha, eps
                )
    return out


def make_scores_nonuniform(lap: nn.Module) -> None:
    """Random last scorer conv (it starts at zero) and alpha, so that windows are unequal."""
    with torch.no_grad():
        last = lap.scorer.heads[-1]
        last.weight.normal_(0.0, 2.0)
        last.bias.normal_(0.0, 1.0)
        lap.alpha.fill_(1.7)


def randomize_bn(module: nn.Module) -> None:
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.normal_(0.0, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.normal_(1.0, 0.2)
                bn.bias.normal_(0.0, 0.2)


CONV_CASES = [
    dict(kernel_size=3, stride=2, padding=1),  # ResNet / MobileNet
    dict(kernel_size=1, stride=2, padding=0),  # ResNet shortcut
    dict(kernel_size=2, stride=2, padding=0),  # ConvNeXt down-sampling
    dict(kernel_size=3, stride=2, padding=0),  # Inception reductions
    dict(kernel_size=4, stride=4, padding=0),  # ConvNeXt stem
    dict(kernel_size=3, stride=(3, 2), padding=1, dilation=2),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_lapconv_output_size_matches_strided_conv(case):
    conv = nn.Conv2d(2, 3, **case)
    lap_conv = LapConv2d.from_conv(conv)
    for height in range(1, 10):  # odd and even sizes, and maps smaller than one window
        x = torch.randn(1, 2, height, height + 1)
        try:
            expected = conv(x).shape
        except RuntimeError:
            continue  # the input is smaller than the strided convolution accepts
        assert lap_conv(x).shape == expected, (case, height)


@pytest.mark.parametrize("case", CONV_CASES[:4] + CONV_CASES[5:])
def test_lapconv_matches_loop_reference(case):
    conv = nn.Conv2d(3, 4, **case).double()
    lap_conv = LapConv2d.from_conv(conv)
    make_scores_nonuniform(lap_conv.lap)
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    stride = lap_conv.lap.stride
    with torch.no_grad():
        dense = F.conv2d(
            x, conv.weight, conv.bias, 1, conv.padding, conv.dilation, conv.groups
        )  # the paper's "convolution with the stride of one"
        score = reference_score(lap_conv.lap, dense)
        expected = reference_pool(
            dense, score, stride, stride, conv(x).shape[-2:], 1.7, lap_conv.lap.eps
        )
        torch.testing.assert_close(lap_conv(x), expected)


def test_lapconv_copies_weights_and_leaves_the_original():
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    conv.bias.requires_grad_(False)
    lap_conv = LapConv2d.from_conv(conv)
    assert tuple(conv.stride) == (2, 2) and tuple(lap_conv.stride) == (1, 1)
    torch.testing.assert_close(lap_conv.weight, conv.weight)
    assert lap_conv.weight is not conv.weight
    assert not lap_conv.bias.requires_grad
    # the parameter names of the convolution are kept: its checkpoint loads
    result = lap_conv.load_state_dict(conv.state_dict(), strict=False)
    assert all(key.startswith("lap.") for key in result.missing_keys)
    assert not result.unexpected_keys
    # with the initial uniform scores: the window average of the stride-1 output
    x = torch.randn(2, 3, 11, 8)
    with torch.no_grad():
        dense = F.conv2d(x, conv.weight, conv.bias, 1, 1)
        torch.testing.assert_close(lap_conv(x), F.avg_pool2d(dense, 2, 2, ceil_mode=True))


def _downsample(inplanes: int, outplanes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, 1, stride=2, bias=False), nn.BatchNorm2d(outplanes)
    )


def reference_resnet_block(block: nn.Module, lap: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The original block at stride 1 with each strided conv followed by the shared LAP."""
    score = reference_score(lap, x)
    alpha, eps = lap.alpha, lap.eps
    convs = [n for n in ("conv1", "conv2", "conv3") if hasattr(block, n)]
    out = x
    for index, name in enumerate(convs):
        conv = getattr(block, name)
        out = F.conv2d(out, conv.weight, None, 1, conv.padding, conv.dilation, conv.groups)
        if tuple(conv.stride) != (1, 1):
            size = ((out.shape[-2] + 1) // 2, (out.shape[-1] + 1) // 2)
            out = reference_pool(out, score, (2, 2), (2, 2), size, alpha, eps)
        out = getattr(block, f"bn{index + 1}")(out)
        if index < len(convs) - 1:
            out = F.relu(out)
    shortcut_conv = block.downsample[0]
    shortcut = F.conv2d(x, shortcut_conv.weight, None, 1)
    size = ((x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2)
    shortcut = reference_pool(shortcut, score, (2, 2), (2, 2), size, alpha, eps)
    shortcut = block.downsample[1](shortcut)
    return F.relu(out + shortcut)


@pytest.mark.parametrize(
    "block",
    [
        lambda: BasicBlock(4, 6, stride=2, downsample=_downsample(4, 6)),
        lambda: Bottleneck(4, 3, stride=2, downsample=_downsample(4, 12)),
    ],
    ids=["basic", "bottleneck"],
)
def test_resnet_block_matches_reference(block):
    original = block().double().eval()
    randomize_bn(original)
    wrapped = LapResidualBlock(original, dtype=torch.float64).eval()
    make_scores_nonuniform(wrapped.lap)
    # the original block is untouched (the wrapper works on a copy)
    assert any(tuple(c.stride) == (2, 2) for c in original.modules() if isinstance(c, nn.Conv2d))
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    out = wrapped(x)
    with torch.no_grad():
        assert out.shape == original(x).shape
    assert wrapped.lap.maps.score.shape == (2, 1, 7, 6)  # the map is at the block input
    expected = reference_resnet_block(original, wrapped.lap, x)
    torch.testing.assert_close(out, expected)
    assert_same_lap_gradients(wrapped.lap, out, expected)


def assert_same_lap_gradients(lap: nn.Module, out: torch.Tensor, expected: torch.Tensor) -> None:
    """The gradients of a random probe of the block output reach the block's LAP (scorer and
    alpha, through every path its score map pools) as they reach it in the reference."""
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    params = list(lap.parameters())
    got = torch.autograd.grad((out * probe).sum(), params)
    want = torch.autograd.grad((expected * probe).sum(), params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_resnet_block_lap_learns_from_both_paths():
    block = BasicBlock(4, 6, stride=2, downsample=_downsample(4, 6))
    wrapped = LapResidualBlock(block)
    make_scores_nonuniform(wrapped.lap)
    x = torch.randn(2, 4, 8, 8)
    wrapped(x).square().sum().backward()
    for parameter in wrapped.lap.parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    # keys of the original block are kept: its checkpoint loads into the wrapper
    result = wrapped.load_state_dict(block.state_dict(), strict=False)
    assert all(k.startswith("lap.") for k in result.missing_keys) and not result.unexpected_keys


def reference_inception(block: nn.Module, lap: nn.Module, x: torch.Tensor, layout) -> torch.Tensor:
    score = reference_score(lap, x)
    alpha, eps = lap.alpha, lap.eps
    outputs = []
    for branch in layout:
        out = x
        for name in branch:
            unit = getattr(block, name)
            conv = unit.conv
            out = F.conv2d(out, conv.weight, None, 1, conv.padding)
            if tuple(conv.stride) != (1, 1):
                size = ((out.shape[-2] + 1) // 2, (out.shape[-1] + 1) // 2)
                # a 3x3 unpadded conv's output pixel u is centred on input pixel u + 1
                out = reference_pool(out, score, (2, 2), (2, 2), size, alpha, eps, (1, 1))
            out = F.relu(unit.bn(out))
        outputs.append(out)
    size = ((x.shape[-2] - 3) // 2 + 1, (x.shape[-1] - 3) // 2 + 1)
    outputs.append(reference_pool(x, score, (3, 3), (2, 2), size, alpha, eps))
    return torch.cat(outputs, 1)


@pytest.mark.parametrize(
    ("make", "layout"),
    [
        (lambda: InceptionB(4), (("branch3x3",), ("branch3x3dbl_1", "branch3x3dbl_2",
                                                   "branch3x3dbl_3"))),
        (lambda: InceptionD(4), (("branch3x3_1", "branch3x3_2"),
                                 ("branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3",
                                  "branch7x7x3_4"))),
    ],
    ids=["Mixed_6a", "Mixed_7a"],
)  # fmt: skip
def test_inception_reduction_matches_reference(make, layout):
    original = make().double().eval()
    randomize_bn(original)
    wrapped = LapInceptionReduction(original, dtype=torch.float64).eval()
    make_scores_nonuniform(wrapped.lap)
    for size in ((9, 8), (3, 3)):  # (3, 3): the smallest map a reduction block accepts
        x = torch.randn(1, 4, *size, dtype=torch.float64)
        out = wrapped(x)
        with torch.no_grad():
            assert out.shape == original(x).shape
        expected = reference_inception(copy.deepcopy(original), wrapped.lap, x, layout)
        torch.testing.assert_close(out, expected)
        assert_same_lap_gradients(wrapped.lap, out, expected)
