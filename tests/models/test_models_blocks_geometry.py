"""The lapified blocks' geometry and refusals (paper 000, III.C; torchlap.models.blocks).

- ``conv_center_offset`` against its definition: output pixel ``u`` of a stride-1 convolution is
  centred on input pixel ``u + offset``, found here from the input pixels that reach ``u``
  (autograd of one output pixel), never from the formula;
- every argument ``LapConv2d`` and the block wrappers refuse, at the boundary of what they
  accept, before anything is built.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn
from torchvision.models.inception import InceptionB
from torchvision.models.resnet import BasicBlock, Bottleneck

from torchlap.models import LapConv2d, LapInceptionReduction, LapResidualBlock
from torchlap.models.blocks import SharedScoreBlock, conv_center_offset, pool_with_shared_score


def reach_centre(conv: nn.Conv2d, size: int = 15, pixel: int = 6) -> tuple[int, int]:
    """Centre of the input pixels output pixel ``(pixel, pixel)`` reads, minus ``pixel``.

    The centre of the first and last input row (column) with a non-zero gradient, floored: the
    pixel a stride-1 convolution's output is centred on (left of the middle for even spans).
    """
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.ones(1, conv.in_channels, size, size, requires_grad=True)
    conv(x)[0, 0, pixel, pixel].backward()
    reached = x.grad[0].abs().sum(0) > 0
    rows = [r for r in range(size) if bool(reached[r].any())]
    cols = [c for c in range(size) if bool(reached[:, c].any())]
    return ((rows[0] + rows[-1]) // 2 - pixel, (cols[0] + cols[-1]) // 2 - pixel)


@pytest.mark.parametrize(
    "case",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=3, padding=0),
        dict(kernel_size=3, padding="valid"),
        dict(kernel_size=3, padding="same"),
        dict(kernel_size=4, padding="same"),
        dict(kernel_size=1, padding=0),
        dict(kernel_size=5, padding=1, dilation=2),
        dict(kernel_size=2, padding=0, dilation=2),
        dict(kernel_size=4, padding=0),
        dict(kernel_size=(3, 5), padding=(0, 1)),
        dict(kernel_size=(1, 3), padding="valid"),
    ],
    ids=str,
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_conv_center_offset_is_where_the_output_pixel_reads(case):
    conv = nn.Conv2d(2, 1, bias=False, **case)
    assert conv_center_offset(conv) == reach_centre(conv)


def test_conv_center_offset_refuses_a_grid_that_leaves_the_input():
    assert conv_center_offset(nn.Conv2d(1, 1, 5, padding=2)) == (0, 0)  # the boundary: accepted
    with pytest.raises(ValueError, match="pads more than half its kernel"):
        conv_center_offset(nn.Conv2d(1, 1, 3, padding=(0, 2)))


def test_shared_score_pooling_refuses_a_score_map_that_does_not_cover_the_features():
    lap = LapConv2d(2, 2, 1, 2).lap
    features = torch.randn(1, 2, 6, 6)
    covering = torch.rand(1, 1, 7, 7)
    assert pool_with_shared_score(features, covering, (2, 2), (1, 1), lap).shape == (1, 2, 3, 3)
    message = r"score map \(7, 7\) does not cover the convolution output \(6, 6\) at offset "
    message += r"\(1, 2\)"
    with pytest.raises(RuntimeError, match=message):
        pool_with_shared_score(features, covering, (2, 2), (1, 2), lap)


def reference_shared_pool(features, score, stride, offset, alpha, eps):
    """Eq. 1 and 4 of paper 000 window by window: windows ``kernel = stride`` (ceil mode, cut at
    the border), each feature pixel weighted by the score at ``pixel + offset``."""
    batch, channels, height, width = features.shape
    rows, cols = -(-height // stride[0]), -(-width // stride[1])
    out = torch.zeros(batch, channels, rows, cols, dtype=features.dtype)
    for b in range(batch):
        for i in range(rows):
            for j in range(cols):
                pixels, scores = [], []
                for r in range(i * stride[0], min((i + 1) * stride[0], height)):
                    for c in range(j * stride[1], min((j + 1) * stride[1], width)):
                        pixels.append(features[b, :, r, c])
                        scores.append(score[b, 0, r + offset[0], c + offset[1]])
                values, v = torch.stack(pixels, 1), torch.stack(scores)
                weights = torch.exp(-(alpha**2) * (v.max() - v) ** 2) * v + eps
                out[b, :, i, j] = (values * weights).sum(1) / weights.sum()
    return out


@pytest.mark.parametrize(
    ("stride", "offset"), [((2, 2), (2, 0)), ((2, 3), (0, 1)), ((3, 2), (1, 2))]
)
def test_shared_score_pooling_reads_the_score_at_the_offset(stride, offset):
    lap = LapConv2d(2, 2, 1, 2, dtype=torch.float64).lap
    with torch.no_grad():
        lap.alpha.fill_(1.7)
    features = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    score = torch.rand(2, 1, 5 + offset[0] + 1, 7 + offset[1] + 2, dtype=torch.float64)
    got = pool_with_shared_score(features, score, stride, offset, lap)
    expected = reference_shared_pool(features, score, stride, offset, 1.7, lap.eps)
    torch.testing.assert_close(got, expected)


def reference_score(lap: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3 of a one-concept LAP pixel by pixel: sigmoid(w2 . relu(W1 x + b1) + b2)."""
    first, last = lap.scorer.heads[0], lap.scorer.heads[-1]
    w1, b1, w2, b2 = first.weight[:, :, 0, 0], first.bias, last.weight[0, :, 0, 0], last.bias[0]
    score = torch.zeros(x.shape[0], 1, *x.shape[-2:], dtype=x.dtype)
    for b in range(x.shape[0]):
        for r in range(x.shape[-2]):
            for c in range(x.shape[-1]):
                score[b, 0, r, c] = torch.sigmoid(w2 @ torch.relu(w1 @ x[b, :, r, c] + b1) + b2)
    return score


@pytest.mark.parametrize(
    ("stride", "size", "channels"),
    [
        ((3, 2), (4, 1), 3),
        ((2, 3), (1, 4), 3),
        ((3, 2), (2, 5), 3),
        ((2, 2), (1, 1), 3),
        ((2, 2), (6, 5), 1),  # fewer channels than the window is wide: never read as a size
    ],
)
def test_lapconv_pools_the_part_of_a_window_that_exists(stride, size, channels):
    """A stride-1 output smaller than one window along an axis: the windows cut at the border,
    as the strided convolution (which still gives one output there) and ceil-mode pools do."""
    conv = nn.Conv2d(2, channels, 1, stride=stride).double()
    lap_conv = LapConv2d.from_conv(conv)
    with torch.no_grad():
        lap_conv.lap.scorer.heads[-1].weight.normal_(0.0, 2.0)
        lap_conv.lap.alpha.fill_(1.7)
    x = torch.randn(2, 2, *size, dtype=torch.float64)
    with torch.no_grad():
        dense = torch.nn.functional.conv2d(x, conv.weight, conv.bias)  # at stride 1
        score = reference_score(lap_conv.lap, dense)
        expected = reference_shared_pool(dense, score, stride, (0, 0), 1.7, lap_conv.lap.eps)
        assert expected.shape == conv(x).shape
        torch.testing.assert_close(lap_conv(x), expected)


def test_lapconv_accepts_the_smallest_values():
    conv = LapConv2d(1, 1, kernel_size=1, stride=1, padding=0, dilation=1, groups=1)
    assert tuple(conv.lap.kernel_size) == (1, 1)
    x = torch.randn(1, 1, 3, 4)
    torch.testing.assert_close(conv(x), conv.weight[0, 0, 0, 0] * x + conv.bias[0])
    # "valid" and "same" are paddings nn.Conv2d takes (at the stride 1 LapConv2d runs at)
    assert LapConv2d(1, 1, 3, 2, padding="same")(torch.randn(1, 1, 5, 5)).shape[-2:] == (3, 3)
    assert LapConv2d(1, 1, 3, 2, padding="valid")(torch.randn(1, 1, 5, 5)).shape[-2:] == (2, 2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(in_channels=0), ValueError, r"in_channels must be .*, got 0"),
        (dict(out_channels=True), TypeError, r"out_channels must be .*, got True"),
        (dict(groups=0), ValueError, r"groups must be .*, got 0"),
        (dict(kernel_size=0), ValueError, "kernel_size must be >= 1"),
        (dict(kernel_size=(3, 0)), ValueError, "kernel_size must be >= 1"),
        (dict(dilation=(1, 0)), ValueError, "dilation must be >= 1"),
        (dict(padding=-1), ValueError, "padding must be >= 0"),
        (dict(padding=(0, -1)), ValueError, "padding must be >= 0"),
        (dict(bias="yes"), TypeError, r"bias must be True or False"),
        (dict(padding_mode="mirror"), ValueError, r"padding_mode must be one of .*, got 'mirror'"),
        (dict(stride=0), ValueError, "stride must be >= 1"),
        (dict(stride=(2, 0)), ValueError, "stride must be >= 1"),
        (dict(lap_options=["hidden_channels"]), TypeError, "lap_options"),
    ],
    ids=lambda value: str(value) if isinstance(value, dict) else "",
)
def test_lapconv_refuses_bad_arguments(kwargs, error, match):
    arguments = dict(in_channels=2, out_channels=3, kernel_size=3, stride=2)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        LapConv2d(**arguments)


def test_from_conv_refuses_what_is_not_a_convolution():
    with pytest.raises(TypeError, match=r"expected an nn\.Conv2d, got Linear"):
        LapConv2d.from_conv(nn.Linear(2, 2))


def _shortcut(conv: nn.Conv2d) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: nn.Sequential(nn.Conv2d(2, 2, 3)), "is not a torchvision ResNet block"),
        (lambda: BasicBlock(4, 4), "exactly one strided convolution, found none"),
        (lambda: BasicBlock(4, 6, stride=2), "shortcut must be"),
        (
            lambda: BasicBlock(4, 6, stride=2, downsample=nn.Sequential()),
            "shortcut must be",
        ),
        (
            lambda: BasicBlock(4, 6, 2, downsample=nn.Sequential(nn.BatchNorm2d(4))),
            "shortcut must be",
        ),
        (
            lambda: BasicBlock(4, 6, 2, downsample=_shortcut(nn.Conv2d(4, 6, 3, 2, 1))),
            "shortcut must be",
        ),
        (
            lambda: BasicBlock(4, 6, 2, downsample=_shortcut(nn.Conv2d(4, 6, 1, 1))),
            "shortcut must be",
        ),
        (
            lambda: BasicBlock(4, 6, 2, downsample=_shortcut(nn.Conv2d(4, 6, 1, 2, 1))),
            "shortcut must be",
        ),
    ],
    ids=["no-convs", "no-stride", "no-shortcut", "empty", "no-conv", "3x3", "stride", "padded"],
)
def test_resnet_block_refusals(make, match):
    with pytest.raises(ValueError, match=match):
        LapResidualBlock(make())


def test_resnet_block_refuses_two_strided_convolutions_and_a_non_conv():
    block = Bottleneck(4, 2, stride=2, downsample=_shortcut(nn.Conv2d(4, 8, 1, 2)))
    block.conv3.stride = (2, 2)
    with pytest.raises(ValueError, match=r"exactly one strided convolution, found \['conv2'"):
        LapResidualBlock(block)
    block = BasicBlock(4, 6, stride=2, downsample=_shortcut(nn.Conv2d(4, 6, 1, 2)))
    block.conv2 = nn.Identity()
    with pytest.raises(ValueError, match="is not a torchvision ResNet block"):
        LapResidualBlock(block)
    # a padding-free "valid" shortcut is accepted
    block = BasicBlock(4, 6, stride=2, downsample=_shortcut(nn.Conv2d(4, 6, 1, 2, "valid")))
    assert LapResidualBlock(block)(torch.randn(1, 4, 6, 6)).shape == (1, 6, 3, 3)


def test_inception_reduction_refusals():
    with pytest.raises(ValueError, match=r"not a torchvision Inception reduction block"):
        LapInceptionReduction(BasicBlock(4, 4))
    block = InceptionB(4)
    block.branch3x3dbl_2 = nn.Conv2d(64, 96, 3, padding=1)
    with pytest.raises(ValueError, match="branch unit 'branch3x3dbl_2' must be a BasicConv2d"):
        LapInceptionReduction(block)
    block = InceptionB(4)
    del block.branch3x3.bn
    with pytest.raises(ValueError, match="branch unit 'branch3x3' must be a BasicConv2d"):
        LapInceptionReduction(block)


def test_lapconv_defaults_are_nn_conv2ds():
    """A LapConv2d built by hand is the strided nn.Conv2d with the same arguments, made LAP."""
    ours = inspect.signature(LapConv2d).parameters
    theirs = inspect.signature(nn.Conv2d).parameters
    shared = ("padding", "dilation", "groups", "bias", "padding_mode", "device", "dtype")
    assert {n: ours[n].default for n in shared} == {n: theirs[n].default for n in shared}
    conv = nn.Conv2d(2, 3, 3, 2)
    lap_conv = LapConv2d(2, 3, 3, 2)
    assert (lap_conv.padding, lap_conv.dilation, lap_conv.groups) == (
        conv.padding,
        conv.dilation,
        conv.groups,
    )
    assert lap_conv.bias is not None and lap_conv.padding_mode == conv.padding_mode


@pytest.mark.parametrize("frozen", ["weight", "bias"])
def test_from_conv_keeps_which_parameters_are_frozen_and_the_mode(frozen):
    """A frozen (pretrained) convolution stays frozen once made LAP; its LAP trains."""
    conv = nn.Conv2d(2, 3, 3, stride=2).eval()
    getattr(conv, frozen).requires_grad_(False)
    lap_conv = LapConv2d.from_conv(conv)
    assert {n: p.requires_grad for n, p in lap_conv.named_parameters() if "." not in n} == {
        "weight": frozen != "weight",
        "bias": frozen != "bias",
    }
    assert all(p.requires_grad for p in lap_conv.lap.parameters())
    assert not lap_conv.training and not lap_conv.lap.training
    assert LapConv2d.from_conv(conv.train()).training


def test_the_shared_score_base_names_no_pools_of_its_own():
    with pytest.raises(NotImplementedError):
        SharedScoreBlock().shared_pools()
