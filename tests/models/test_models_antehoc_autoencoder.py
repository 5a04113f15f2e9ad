"""The weight network of paper 004 against the autoencoder the module docstring describes.

Paper 004 (section 2) says only "an autoencoder followed by a pixel-wise softmax"; torchlap's
choice (module docstring of torchlap.models.antehoc, "Autoencoder"): ``len(channels)`` stride-2
3x3 convolutions with ReLU down, the same number of (bilinear x2 upsampling, 3x3 convolution)
steps up, ReLU between them but none on the last (the scores), resized to H x W when H or W is
no multiple of ``2 ** depth``; the last convolution starts at zero. The reference below redoes
each convolution one output pixel at a time (zero padding 1) with the module's own learned
weights, the upsampling with the loop bilinear resize, and the softmax across ``eta`` per pixel.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from loop_resize import bilinear
from torchlap.models.antehoc import AnteHocModel, WeightNetwork


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int) -> torch.Tensor:
    """A 3x3 convolution with zero padding 1, one output pixel at a time (x: (C, h, w))."""
    channels, height, width = x.shape
    padded = torch.zeros(channels, height + 2, width + 2, dtype=x.dtype)
    padded[:, 1:-1, 1:-1] = x
    out_h = (height + 2 - 3) // stride + 1
    out_w = (width + 2 - 3) // stride + 1
    out = torch.zeros(weight.shape[0], out_h, out_w, dtype=x.dtype)
    for o in range(weight.shape[0]):
        for i in range(out_h):
            for j in range(out_w):
                window = padded[:, i * stride : i * stride + 3, j * stride : j * stride + 3]
                out[o, i, j] = (weight[o] * window).sum() + bias[o]
    return out


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Each channel of ``x`` (C, h, w) resized bilinearly (``align_corners=False``) by loops."""
    return torch.tensor([bilinear(channel.tolist(), height, width) for channel in x], dtype=x.dtype)


def reference_weight_maps(network: WeightNetwork, sams: torch.Tensor) -> torch.Tensor:
    """The docstring's autoencoder and the pixel-wise softmax, sample by sample."""
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    depth = len(network.channels)
    assert len(convs) == 2 * depth
    out = []
    for sample in sams.double():
        h = sample
        for conv in convs[:depth]:  # down: stride 2, then ReLU
            h = conv3x3(h, conv.weight.double(), conv.bias.double(), 2).clamp(min=0)
        for step, conv in enumerate(convs[depth:]):  # up: x2 bilinear, conv, ReLU but the last
            h = resize(h, 2 * h.shape[1], 2 * h.shape[2])
            h = conv3x3(h, conv.weight.double(), conv.bias.double(), 1)
            if step < depth - 1:
                h = h.clamp(min=0)
        if h.shape[1:] != sample.shape[1:]:
            h = resize(h, sample.shape[1], sample.shape[2])
        eta, height, width = h.shape
        maps = torch.zeros_like(h)
        for i in range(height):
            for j in range(width):
                exps = [math.exp(float(h[n, i, j])) for n in range(eta)]
                for n in range(eta):
                    maps[n, i, j] = exps[n] / sum(exps)
        out.append(maps)
    return torch.stack(out)


@pytest.mark.parametrize(("size", "channels"), [((8, 8), (4, 5)), ((13, 9), (4, 5, 3))])
def test_weight_maps_match_the_documented_autoencoder(size, channels) -> None:
    torch.manual_seed(0)
    network = WeightNetwork(eta=3, channels=channels, dtype=torch.float64)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.normal_(0, 0.5)  # away from the zero start of the last convolution
        sams = torch.rand(2, 3, *size, dtype=torch.float64)
        maps = network(sams)
        expected = reference_weight_maps(network, sams)
    torch.testing.assert_close(maps, expected)
    assert float(expected.std(dim=1).mean()) > 0.05  # weights differ across eta: no flat case


def test_the_layers_are_the_documented_ones() -> None:
    network = WeightNetwork(eta=3, channels=(4, 5))
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 4), (4, 5), (5, 4), (4, 3)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [c.stride for c in convs] == [(2, 2), (2, 2), (1, 1), (1, 1)]
    # the last convolution starts at zero (uniform weight maps), the others do not
    assert float(convs[-1].weight.detach().abs().sum() + convs[-1].bias.detach().abs().sum()) == 0
    assert all(float(c.weight.detach().abs().sum()) > 0 for c in convs[:-1])


def test_default_autoencoder_is_the_signatures() -> None:
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))
    model = AnteHocModel(backbone, eta=2)
    assert model.weight_network.channels == (16, 32)
    assert model.torchlap_config["antehoc"]["autoencoder_channels"] == [16, 32]
    assert WeightNetwork(2).channels == (16, 32)  # the class's own default, the same
