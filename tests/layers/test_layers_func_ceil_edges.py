"""Ceil-mode windows that run past the padded map, under torch.func, against the slow reference.

In ceil mode the last window may start in the map (or its left padding) and end beyond the right
padding: PyTorch's pooling keeps it, reading only the pixels inside. Under ``vmap`` and ``grad``
LAP's pooling sums the windows out of place (``torchlap.layers._plain.window_sum``), which pads
the map enough to slice every window; these geometries need more than the layer's own padding,
on the rows only, the columns only, or both, with a padding of one and of two pixels. The values
and the gradients are held to the loop over windows of paper 000's Eq. 1 and 4.
"""

from __future__ import annotations

import pytest
import torch
from test_layers_func_reference import EPS, check_against_reference
from test_layers_lap_kernel import slow_lap

from torchlap.layers.functional import local_attention_pool2d

GEOMETRIES = [
    # (height, width, kernel, stride, padding), each in ceil mode: the last window of a side of
    # 6 (kernel 3, stride 2, padding 1) starts at the right padding's only row and ends past it
    (6, 6, (3, 3), (2, 2), (1, 1)),
    (6, 5, (3, 3), (2, 2), (1, 1)),  # the rows only
    (5, 6, (3, 3), (2, 2), (1, 1)),  # the columns only
    (5, 8, (4, 4), (3, 3), (2, 2)),  # two pixels of padding, one past them
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_ceil_mode_windows_past_the_padding_under_torch_func(geometry):
    height, width, kernel, stride, padding = geometry
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, height, width, generator=generator, dtype=torch.float64)
    score = torch.rand(2, 1, height, width, generator=generator, dtype=torch.float64)
    alpha = torch.tensor(1.4, dtype=torch.float64)

    def pool(x, score, alpha):
        return local_attention_pool2d(x, score, kernel, stride, padding, alpha, EPS, True)

    def reference(x, score, alpha):
        return slow_lap(x, score, kernel, stride, padding, alpha, EPS, ceil_mode=True)

    check_against_reference(pool, reference, x, score, alpha)
