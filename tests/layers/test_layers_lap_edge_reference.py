"""LAP, paper 000 Eq. 1, 2 and 4, in the cases the other references leave out: one window that
holds the whole map (through the windowed pool, not the adaptive one), 1x1 maps, a batch of
one, scores tied at the window's maximum, windows whose scores are all zero (Eq. 4 leaves only
epsilon: the plain mean of the window), both backends, float32 and float64, and the gradients.

The reference is written from the equations, one sample, window and pixel at a time, with
torch scalar operations so that its gradient can be compared as well:
``V`` = the scores under the window (Eq. 2), ``N(V) = exp(-alpha^2 (max V - V)^2) V + eps``
(Eq. 4), ``O = sum(N(V) X) / sum N(V)`` (Eq. 1). Padded positions are no pixels of the window
(the README's "Padded windows" row); the number of windows is ``nn.MaxPool2d``'s.
"""

from __future__ import annotations

import math

import pytest
import torch

import torchlap._ext as ext
from torchlap.layers.functional import adaptive_local_attention_pool2d, local_attention_pool2d

EPS = 1e-6
KERNEL_BUILT = ext.lap_kernels() is not None


def windows_along(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    span = size + 2 * padding - kernel
    count = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (count - 1) * stride >= size + padding:
        count -= 1  # a last window starting in the right padding is dropped
    return count


def pool_window(x, score, sample, pixels, alpha):
    """Eq. 1 with Eq. 4's weights over the listed pixels of one sample: (C,)."""
    v = [score[sample, 0, r, q] for r, q in pixels]  # Eq. 2: V = S(X) under the window
    peak = torch.stack(v).max()  # max V is part of Eq. 4: its gradient too
    weights = [torch.exp(-(alpha**2) * (peak - value) ** 2) * value + EPS for value in v]
    total = sum(weights)
    return sum(w * x[sample, :, r, q] for w, (r, q) in zip(weights, pixels, strict=True)) / total


def reference_pool(x, score, kernel, stride, padding, alpha, ceil_mode=False):
    batch, channels, height, width = x.shape
    out_h = windows_along(height, kernel[0], stride[0], padding[0], ceil_mode)
    out_w = windows_along(width, kernel[1], stride[1], padding[1], ceil_mode)
    rows = []
    for sample in range(batch):
        cells = []
        for i in range(out_h):
            for j in range(out_w):
                top, left = i * stride[0] - padding[0], j * stride[1] - padding[1]
                pixels = [
                    (r, q)
                    for r in range(top, top + kernel[0])
                    for q in range(left, left + kernel[1])
                    if 0 <= r < height and 0 <= q < width
                ]
                cells.append(pool_window(x, score, sample, pixels, alpha))
        rows.append(torch.stack(cells, dim=1).reshape(channels, out_h, out_w))
    return torch.stack(rows)


# (height, width, kernel, stride, padding, ceil_mode)
GEOMETRIES = [
    (5, 4, (5, 4), (1, 1), (0, 0), False),  # one window, the whole map
    (3, 3, (3, 3), (3, 3), (1, 1), True),  # ceil mode: one window over a padded map
    (1, 1, (1, 1), (1, 1), (0, 0), False),  # a 1x1 map
    (1, 7, (1, 7), (1, 7), (0, 0), False),  # a single row, one window
    (4, 6, (2, 3), (2, 3), (0, 0), False),  # tiled windows
    (4, 5, (3, 3), (1, 2), (1, 1), False),  # overlapping windows with padding
]


def tied_scores(batch: int, height: int, width: int, dtype: torch.dtype, seed: int):
    """Scores in {0, 0.5, 1}: maxima tied inside the windows; the first sample's first row and,
    with two samples, the whole second sample are zero."""
    generator = torch.Generator().manual_seed(seed)
    score = torch.randint(0, 3, (batch, 1, height, width), generator=generator).to(dtype) / 2
    score[0, 0, 0, :] = 0.0
    if batch > 1:
        score[1] = 0.0
    return score


BACKENDS = ["torch", "auto"] if KERNEL_BUILT else ["torch"]


@pytest.mark.parametrize(("height", "width", "kernel", "stride", "padding", "ceil"), GEOMETRIES)
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("backend", BACKENDS)
def test_windowed_pool_matches_eq1_and_eq4(
    height, width, kernel, stride, padding, ceil, batch, dtype, backend
) -> None:
    generator = torch.Generator().manual_seed(height * 10 + width)
    x = torch.randn(batch, 3, height, width, generator=generator, dtype=dtype)
    score = tied_scores(batch, height, width, dtype, seed=width)
    for alpha in (0.0, 2.0, 30.0):
        got = local_attention_pool2d(
            x, score, kernel, stride, padding, alpha=alpha, eps=EPS, ceil_mode=ceil,
            backend=backend,
        )  # fmt: skip
        expected = reference_pool(x.double(), score.double(), kernel, stride, padding, alpha, ceil)
        assert got.dtype == dtype
        torch.testing.assert_close(got, expected.to(dtype))


def test_an_all_zero_window_is_the_plain_mean_and_ties_share_the_weight() -> None:
    """Zero scores: every weight is eps, the output the window's mean. Two pixels tied at the
    maximum with the rest at 0 and a huge alpha: the output is the mean of the two (eps aside)."""
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    zero = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    mean = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(local_attention_pool2d(x, zero, 3, alpha=5.0, eps=EPS), mean)
    tied = zero.clone()
    tied[0, 0, 0, 1] = tied[0, 0, 2, 2] = 0.9
    two = (x[:, :, 0, 1] + x[:, :, 2, 2]).view(1, 2, 1, 1) / 2
    got = local_attention_pool2d(x, tied, 3, alpha=1e3, eps=EPS)
    torch.testing.assert_close(got, reference_pool(x, tied, (3, 3), (1, 1), (0, 0), 1e3))
    torch.testing.assert_close(got, two, rtol=0, atol=1e-5)


@pytest.mark.parametrize("output_size", [(1, 1), (4, 3), (2, 3)])
@pytest.mark.parametrize("batch", [1, 2])
def test_adaptive_pool_one_window_and_one_pixel_windows(output_size, batch) -> None:
    """(1, 1): one window, the whole map; the input's own size: every window one pixel, where
    Eq. 1 gives the pixel back whatever its score; (2, 3) on 4x3: windows of two pixels."""
    x = torch.randn(batch, 3, 4, 3, dtype=torch.float64)
    score = tied_scores(batch, 4, 3, torch.float64, seed=3)
    for alpha in (0.0, 4.0):
        got = adaptive_local_attention_pool2d(x, score, output_size, alpha=alpha, eps=EPS)
        if output_size == (4, 3):
            torch.testing.assert_close(got, x)
        kernel = (4 // output_size[0], 3 // output_size[1])  # exact divisions in these cases
        expected = reference_pool(x, score, kernel, kernel, (0, 0), alpha)
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_of_a_single_window_match_the_reference(backend) -> None:
    """Gradients with respect to features and scores through the whole-map window, the path
    through Eq. 4's ``max V`` included (untied scores: the maximum's gradient is unique)."""
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(1, 2, 3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    score = (0.2 + torch.rand(1, 1, 3, 4, generator=generator, dtype=torch.float64)).detach()
    score.requires_grad_(True)
    alpha = 1.5
    got = local_attention_pool2d(x, score, (3, 4), alpha=alpha, eps=EPS, backend=backend)
    expected = reference_pool(x, score, (3, 4), (1, 1), (0, 0), alpha)
    upstream = torch.randn(got.shape, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad((got * upstream).sum(), (x, score))
    expected_grads = torch.autograd.grad((expected * upstream).sum(), (x, score))
    torch.testing.assert_close(got, expected)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize("output_size", [(1, 1), (2, 3)])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("backend", BACKENDS)
def test_adaptive_gradients_reach_alpha_as_the_reference_does(output_size, batch, backend) -> None:
    """Eq. 4's alpha is trainable ("adjustable by the trainable parameter alpha"): its gradient
    through the adaptive pool ((1, 1): the global pool of every lapified classifier) equals
    the reference's, with the features' and the scores'."""
    generator = torch.Generator().manual_seed(5 + batch)
    x = torch.randn(batch, 3, 4, 6, generator=generator, dtype=torch.float64)
    score = torch.rand(batch, 1, 4, 6, generator=generator, dtype=torch.float64)
    alpha = torch.tensor(1.7, dtype=torch.float64)
    leaves = [t.clone().requires_grad_(True) for t in (x, score, alpha)]
    got = adaptive_local_attention_pool2d(*leaves[:2], output_size, leaves[2], EPS, backend)
    kernel = (4 // output_size[0], 6 // output_size[1])
    reference_leaves = [t.clone().requires_grad_(True) for t in (x, score, alpha)]
    expected = reference_pool(*reference_leaves[:2], kernel, kernel, (0, 0), reference_leaves[2])
    torch.testing.assert_close(got, expected)
    upstream = torch.randn(got.shape, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad((got * upstream).sum(), leaves)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), reference_leaves)
    assert float(expected_grads[2].abs()) > 1e-6  # alpha matters in this case
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad)
