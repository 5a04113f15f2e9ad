"""Where lapify takes each new LAP's input channels from (torchlap.models.lapify docstring).

"Input channels of each new LAP come from the module tree where unambiguous (a convolution's
``out_channels``, a block's input convolution, the BatchNorm or convolution before a pool in a
``Sequential``); otherwise from one dry forward pass": the tests count the model's forward
calls (none when the tree tells) and check the channels against the model's own layout.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from torchlap import lapify
from torchlap.layers import LapBase, lap_modules


def count_forwards(model: nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_pre_hook(lambda module, args: calls.__setitem__(0, calls[0] + 1))
    return calls


class Doubler(nn.Module):
    """Doubles the channels: the channel count after it is not in the module tree."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, -x], dim=1)


def channels_of(model: nn.Module, name: str) -> int:
    (lap,) = [m for n, m in lap_modules(model).items() if n == name]
    return lap.in_channels


@pytest.mark.parametrize(
    ("make", "where", "lap_name", "channels"),
    [
        # conv -> ReLU -> Dropout -> pool: the convolution's out_channels
        (
            lambda: nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Dropout(), nn.MaxPool2d(2)),
            "3", "3", 5,
        ),
        # conv -> BatchNorm -> pool: the BatchNorm's features
        (
            lambda: nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6), nn.AvgPool2d(2)),
            "2", "2", 6,
        ),
        # a pool of a nested Sequential: its own siblings, not the outer ones
        (
            lambda: nn.Sequential(
                nn.Sequential(nn.Conv2d(3, 7, 3), nn.Sigmoid(), nn.AvgPool2d(2)), nn.Flatten()
            ),
            "0.2", "0.2", 7,
        ),
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, stride=2)), "0", "0.lap", 4),
    ],
    ids=["conv-relu-dropout", "batchnorm", "nested", "strided-conv"],
)  # fmt: skip
def test_channels_told_by_the_module_tree_need_no_dry_pass(make, where, lap_name, channels):
    model = make().eval()
    calls = count_forwards(model)
    lapify(model, where=[where])
    assert calls[0] == 0
    assert channels_of(model, lap_name) == channels
    model(torch.randn(2, 3, 10, 10))  # and the model runs with them


def test_appended_global_pool_takes_the_last_batchnorm_without_a_dry_pass():
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=3, width_mult=0.25).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    calls = count_forwards(model)
    _, names = lapify(model, where=["features.global_pool"])
    assert names == ["features.global_pool"] and calls[0] == 0
    # the last feature layer is Conv2dNormActivation(..., 1280): the map's channels
    assert model.features[-2][1].num_features == channels_of(model, "features.global_pool") == 1280
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # the global average, exactly
        # one LAP window over the whole map (a 2x2 LAP averaged again would equal it only at
        # the uniform start)
        assert model.features(x).shape == (1, 1280, 1, 1)


def reference_average_pool(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Non-overlapping ``kernel`` x ``kernel`` window means, window by window."""
    batch, channels, height, width = x.shape
    out = torch.zeros(batch, channels, height // kernel, width // kernel)
    for i in range(height // kernel):
        for j in range(width // kernel):
            window = x[:, :, i * kernel : (i + 1) * kernel, j * kernel : (j + 1) * kernel]
            out[:, :, i, j] = window.mean(dim=(2, 3))
    return out


@pytest.mark.parametrize("after", [[], [nn.ReLU()]], ids=["direct", "behind-a-relu"])
def test_channels_the_tree_cannot_tell_come_from_one_dry_pass(after):
    conv = nn.Conv2d(3, 5, 3)
    model = nn.Sequential(conv, Doubler(), *after, nn.AvgPool2d(2)).eval()
    calls = count_forwards(model)
    pool_name = str(len(model) - 1)
    lapify(model, where=[pool_name], input_size=12)
    assert calls[0] == 1 and channels_of(model, pool_name) == 10
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        dense = torch.cat([conv(x), -conv(x)], 1)
        dense = torch.relu(dense) if after else dense
        torch.testing.assert_close(model(x), reference_average_pool(dense, 2))


class _Unbatched(nn.Module):
    """Runs its pool on one (C, H, W) sample, and has a pool it never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.pool = nn.MaxPool2d(2)
        self.unused = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x)[0])


@pytest.mark.parametrize("name", ["pool", "unused"])
def test_a_site_that_never_ran_on_a_batch_is_refused_and_the_model_kept(name):
    model = _Unbatched().eval()
    with pytest.raises(ValueError, match=rf"input channels of '{name}': .* \(B, C, H, W\)"):
        lapify(model, where=[name], input_size=8)
    assert not any(isinstance(m, LapBase) for m in model.modules())
