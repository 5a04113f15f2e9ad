"""``LocalAttentionPool2d.output_size`` and the check it makes before any work, on each side.

The layer is a drop-in for ``nn.MaxPool2d`` (README): its output has ``nn.MaxPool2d``'s size for
the same kernel, stride, padding and ceil mode. With a different kernel, stride and padding on
each side, each side must use its own; the forward checks the map's height and width (not its
channel count) against the window before any work.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.layers.lap import LocalAttentionPool2d

SIDES = [
    # (kernel, stride, padding, ceil_mode): different on the two sides
    ((3, 2), (2, 1), (1, 0), False),
    ((3, 2), (2, 1), (1, 0), True),
    ((2, 4), (3, 2), (0, 2), True),
    ((1, 3), (1, 3), (0, 1), False),
]


@pytest.mark.parametrize("geometry", SIDES)
@pytest.mark.parametrize("size", [(7, 9), (9, 5), (4, 6)])
def test_output_size_is_max_pool_s_side_by_side(geometry, size):
    kernel, stride, padding, ceil_mode = geometry
    layer = LocalAttentionPool2d(2, kernel, stride, padding, ceil_mode=ceil_mode)
    x = torch.randn(1, 2, *size)
    want = nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)(x).shape[-2:]
    assert layer.output_size(*size) == tuple(want)
    assert layer(x).shape[-2:] == want


def test_the_check_before_any_work_reads_the_map_not_the_channels():
    """One channel, a 3x3 window: the map (6x7) holds windows; the channel count (1) would not."""
    layer = LocalAttentionPool2d(1, 3)
    x = torch.randn(2, 1, 6, 7)
    assert layer(x).shape == nn.MaxPool2d(3)(x).shape


def test_the_check_before_any_work_reads_each_side_with_its_own_window():
    """A 1x4 window on a 2x6 map: the height holds one-row windows, the width four-column ones
    (the width's window on the height, or the height's on the width, would not fit)."""
    layer = LocalAttentionPool2d(2, (1, 4))
    x = torch.randn(1, 2, 2, 6)
    assert layer(x).shape == nn.MaxPool2d((1, 4))(x).shape == (1, 2, 2, 1)
