"""The public pooling functions' argument checks at their boundaries: the last value accepted
and the first refused, on each axis of a pair, and the message naming what was wrong.

The accepted calls are checked against an independent oracle: with a constant score, Eq. 4
gives every real pixel of a window the same weight, so Eq. 1 is the plain average of the
window's real pixels, ``avg_pool2d(count_include_pad=False)`` (paper 000, Eq. 1 and 4; the
functions' docstring says the same).
"""

import pytest
import torch
import torch.nn.functional as F

from torchlap._ext import lap_kernels
from torchlap.layers.functional import adaptive_local_attention_pool2d, local_attention_pool2d

# a non-square map whose batch (2) differs from its channels (3): a swapped axis shows
X = torch.rand(2, 3, 5, 7, dtype=torch.float64)
FLAT = torch.full((2, 1, 5, 7), 0.7, dtype=torch.float64)


def average(kernel, stride=None, padding=0, ceil_mode=False):
    """Eq. 1 with a constant score: avg_pool2d without the padding in the count."""
    return F.avg_pool2d(X, kernel, stride, padding, ceil_mode, count_include_pad=False)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [
        ((2, 3), 1, 0),  # a non-square kernel keeps its two sizes
        ([3, 2], [1, 2], [0, 1]),  # lists are pairs too
        (1, 1, 0),  # the smallest kernel and stride
        (2, None, 0),  # stride None: the kernel size
        ((3, 1), None, 0),  # ... per axis
        (2, 2, 1),  # padding exactly half the kernel
        ((1, 2), 1, (0, 1)),  # ... on the second axis only
        ((2, 4), 2, (1, 2)),  # ... on both
        ((4, 2), (3, 1), (2, 1)),
    ],
)
def test_accepted_windows_pool_as_the_average_of_their_real_pixels(kernel, stride, padding):
    got = local_attention_pool2d(X, FLAT, kernel, stride, padding, 1.3, 1e-6)
    want = average(tuple(kernel) if isinstance(kernel, list) else kernel, stride, padding)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kernel_size": "22"}, TypeError, "kernel_size must be an int or a pair of ints"),
        ({"kernel_size": (2, 2, 2)}, TypeError, r"kernel_size .* got \(2, 2, 2\)"),
        ({"kernel_size": (2, True)}, TypeError, "kernel_size .*never a bool"),
        ({"kernel_size": (2.0, 2)}, TypeError, "kernel_size"),
        ({"kernel_size": 2, "stride": (1, True)}, TypeError, "stride .*never a bool"),
        ({"kernel_size": 2, "padding": (0, True)}, TypeError, "padding .*never a bool"),
        ({"kernel_size": 0}, ValueError, "kernel_size must be >= 1, got 0"),
        ({"kernel_size": (0, 2)}, ValueError, r"kernel_size must be >= 1, got \(0, 2\)"),
        ({"kernel_size": (2, 0)}, ValueError, r"kernel_size must be >= 1, got \(2, 0\)"),
        ({"kernel_size": 2, "stride": (1, 0)}, ValueError, r"stride must be >= 1, got \(1, 0\)"),
        ({"kernel_size": 2, "stride": (0, 1)}, ValueError, r"stride must be >= 1, got \(0, 1\)"),
        ({"kernel_size": 2, "padding": -1}, ValueError, "padding must be >= 0, got -1"),
        ({"kernel_size": 2, "padding": (0, -1)}, ValueError, r"padding must be >= 0, got \(0, -1"),
        ({"kernel_size": 2, "padding": (-1, 0)}, ValueError, r"padding must be >= 0, got \(-1, 0"),
        ({"kernel_size": 3, "padding": 2}, ValueError, r"padding \(2, 2\) must be at most half"),
        ({"kernel_size": (1, 3), "padding": (1, 0)}, ValueError, "at most half"),
        ({"kernel_size": (3, 1), "padding": (0, 1)}, ValueError, "at most half"),
        ({"kernel_size": (2, 5), "padding": (1, 3)}, ValueError, "at most half"),
        ({"kernel_size": (5, 2), "padding": (3, 1)}, ValueError, "at most half"),
    ],
)
def test_windows_outside_the_rules_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        local_attention_pool2d(X, FLAT, **kwargs)


@pytest.mark.parametrize("eps", [1.2e-38, 1e29])
def test_eps_at_both_ends_of_its_range_is_accepted(eps):
    got = local_attention_pool2d(X, FLAT, 2, eps=eps)
    torch.testing.assert_close(got, average(2))
    pooled = adaptive_local_attention_pool2d(X, FLAT, 1, eps=eps)
    torch.testing.assert_close(pooled, X.mean(dim=(2, 3), keepdim=True))


@pytest.mark.parametrize("eps", [1.1e-38, 1.01e29])
def test_eps_just_outside_its_range_is_refused(eps):
    with pytest.raises(ValueError, match=r"eps must be a finite float > 0, from 1\.2e-38"):
        local_attention_pool2d(X, FLAT, 2, eps=eps)


@pytest.mark.parametrize("backend", ["auto", "torch", "kernel"])
def test_every_backend_is_accepted(backend):
    if backend == "kernel" and lap_kernels() is None:
        pytest.skip("no C compiler: kernel not built")
    x, score = X.float(), FLAT.float()
    got = local_attention_pool2d(x, score, 2, backend=backend)
    torch.testing.assert_close(got, average(2).float())
    pooled = adaptive_local_attention_pool2d(x, score, (2, 3), backend=backend)
    torch.testing.assert_close(pooled, F.adaptive_avg_pool2d(x, (2, 3)))


@pytest.mark.parametrize("backend", ["cuda", "Torch", None])
def test_an_unknown_backend_is_refused(backend):
    with pytest.raises(ValueError, match=r"unknown backend .*expected one of \('auto', 'torch'"):
        local_attention_pool2d(X, FLAT, 2, backend=backend)
    with pytest.raises(ValueError, match="unknown backend"):
        adaptive_local_attention_pool2d(X, FLAT, 1, backend=backend)


@pytest.mark.parametrize("alpha", [torch.tensor(1.5), torch.ones(1, 1, dtype=torch.float64)])
def test_a_one_element_float_tensor_alpha_is_accepted(alpha):
    torch.testing.assert_close(local_attention_pool2d(X, FLAT, 2, alpha=alpha), average(2))


@pytest.mark.parametrize(
    "alpha", [torch.tensor(1), torch.tensor([True]), torch.zeros(0), torch.ones(2, 1)]
)
def test_an_integer_or_multi_element_tensor_alpha_is_refused(alpha):
    match = "alpha must be a finite float or a one-element floating-point tensor, got a"
    with pytest.raises(ValueError, match=match):
        local_attention_pool2d(X, FLAT, 2, alpha=alpha)


@pytest.mark.parametrize(
    ("x", "got"),
    [([[1.0]], "list"), (X[0], r"\(3, 5, 7\)"), (X[None], r"\(1, 2, 3, 5, 7\)")],
)
def test_x_must_be_a_four_dimensional_tensor(x, got):
    with pytest.raises(ValueError, match=rf"x must be a \(B, C, H, W\) tensor, got {got}"):
        local_attention_pool2d(x, FLAT, 2)


@pytest.mark.parametrize(
    ("score", "got"),
    [
        (FLAT.numpy(), "ndarray"),
        (FLAT[:, :, :, :5], r"\(2, 1, 5, 5\)"),  # a square score for a 5x7 map
        (FLAT.transpose(2, 3), r"\(2, 1, 7, 5\)"),  # the map's height and width swapped
        (FLAT[:1], r"\(1, 1, 5, 7\)"),
        (FLAT.expand(2, 3, 5, 7), r"\(2, 3, 5, 7\)"),
    ],
)
def test_score_must_have_the_maps_batch_height_and_width(score, got):
    match = rf"score must have shape \(B, 1, H, W\) = \(2, 1, 5, 7\) for x, got {got}"
    with pytest.raises(ValueError, match=match):
        local_attention_pool2d(X, score, 2)


@pytest.mark.parametrize(
    ("output_size", "shape"),
    [(1, (1, 1)), ((1, 1), (1, 1)), ((2, None), (2, 7)), ((None, 3), (5, 3)), ([3, 2], (3, 2))],
)
def test_accepted_output_sizes_pool_as_adaptive_average(output_size, shape):
    got = adaptive_local_attention_pool2d(X, FLAT, output_size)
    torch.testing.assert_close(got, F.adaptive_avg_pool2d(X, shape))


@pytest.mark.parametrize(
    ("output_size", "error", "match"),
    [
        ((2, 0), ValueError, r"output_size entries must be ints >= 1 or None, got \(2, 0\)"),
        ((None, 0), ValueError, r"output_size entries must be ints >= 1 or None, got \(None, 0"),
        (0, ValueError, r"got \(0, 0\)"),
        ((2, 2.0), TypeError, "never a bool or a float"),
        ((2, True), TypeError, "never a bool or a float"),
        ((2, 2, 2), TypeError, "output_size must be an int >= 1 or a pair"),
        (None, TypeError, "output_size must be an int >= 1 or a pair"),
    ],
)
def test_output_sizes_outside_the_rules_are_refused(output_size, error, match):
    with pytest.raises(error, match=match):
        adaptive_local_attention_pool2d(X, FLAT, output_size)


def test_the_adaptive_pool_takes_a_one_pixel_map():
    x, score = X[..., :1, :1], FLAT[..., :1, :1]
    torch.testing.assert_close(adaptive_local_attention_pool2d(x, score, 1), x)


@pytest.mark.parametrize(("height", "width"), [(0, 7), (5, 0), (0, 0)])
def test_the_adaptive_pool_refuses_an_empty_map_whichever_side_is_empty(height, width):
    x, score = X[..., :height, :width], FLAT[..., :height, :width]
    with pytest.raises(ValueError, match="adaptive LAP needs a feature map of at least 1x1"):
        adaptive_local_attention_pool2d(x, score, 1)
