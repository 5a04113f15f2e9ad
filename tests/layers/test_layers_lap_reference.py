"""LAP Eq. 1-4 against a slow reference that loops over windows, straight from the paper."""

import math

import pytest
import torch
import torch.nn.functional as F

from torchlap.layers.functional import adaptive_local_attention_pool2d, local_attention_pool2d


def pooled_length(size, kernel, stride, padding, ceil_mode):
    """Windows along one axis, the rule of ``nn.MaxPool2d``'s documentation: floor (or ceil)
    of ``(size + 2 padding - kernel) / stride`` plus one; in ceil mode a last window that would
    start in the right padding is dropped."""
    span = size + 2 * padding - kernel
    count = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (count - 1) * stride >= size + padding:
        count -= 1
    return count


def adaptive_cells(size, out):
    """Cell ``i`` of ``nn.AdaptiveAvgPool2d``: rows ``floor(i size / out)`` up to (not
    including) ``ceil((i + 1) size / out)``."""
    return [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]


def reference_lap(x, score, kernel, stride, padding, alpha, eps, ceil_mode=False):
    """Eq. 1 and Eq. 4, one window at a time; padded pixels are simply not in the window."""
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    batch, channels, height, width = x.shape
    out_h = pooled_length(height, kh, sh, ph, ceil_mode)
    out_w = pooled_length(width, kw, sw, pw, ceil_mode)
    out = torch.zeros(batch, channels, out_h, out_w, dtype=x.dtype)
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                pixels = []
                for a in range(kh):
                    for c in range(kw):
                        r, q = i * sh - ph + a, j * sw - pw + c
                        if 0 <= r < height and 0 <= q < width:
                            pixels.append((r, q))
                v = torch.stack([score[b, 0, r, q] for r, q in pixels])
                weights = torch.exp(-(alpha**2) * (v.max() - v) ** 2) * v + eps  # Eq. 4
                feats = torch.stack([x[b, :, r, q] for r, q in pixels], dim=1)  # (C, n)
                out[b, :, i, j] = (feats * weights).sum(1) / weights.sum()  # Eq. 1
    return out


def reference_adaptive(x, score, output_size, alpha, eps):
    """Eq. 1 and 4 on each cell of ``nn.AdaptiveAvgPool2d(output_size)`` (None keeps a side)."""
    batch, channels, height, width = x.shape
    out_h = height if output_size[0] is None else output_size[0]
    out_w = width if output_size[1] is None else output_size[1]
    rows, cols = adaptive_cells(height, out_h), adaptive_cells(width, out_w)
    out = torch.zeros(batch, channels, out_h, out_w, dtype=x.dtype)
    for b in range(batch):
        for i, (r0, r1) in enumerate(rows):
            for j, (c0, c1) in enumerate(cols):
                v = score[b, 0, r0:r1, c0:c1].reshape(-1)
                feats = x[b, :, r0:r1, c0:c1].reshape(channels, -1)
                weights = torch.exp(-(alpha**2) * (v.max() - v) ** 2) * v + eps
                out[b, :, i, j] = (feats * weights).sum(1) / weights.sum()
    return out


CASES = [
    # (height, width, kernel, stride, padding, ceil_mode)
    (8, 8, (2, 2), (2, 2), (0, 0), False),
    (9, 7, (2, 2), (2, 2), (0, 0), False),
    (9, 9, (3, 3), (2, 2), (1, 1), False),
    (7, 10, (3, 3), (1, 1), (1, 1), False),
    (10, 10, (3, 2), (2, 3), (1, 0), False),
    (9, 9, (3, 3), (2, 2), (0, 0), True),
    (8, 11, (2, 2), (2, 2), (1, 1), True),
    (6, 6, (4, 4), (3, 3), (2, 2), True),
    (5, 5, (5, 5), (1, 1), (2, 2), False),
    (1, 6, (1, 3), (1, 2), (0, 1), False),
]


@pytest.mark.parametrize(("height", "width", "kernel", "stride", "padding", "ceil_mode"), CASES)
@pytest.mark.parametrize("alpha", [0.0, 1.7, 6.0])
def test_forward_matches_reference(height, width, kernel, stride, padding, ceil_mode, alpha):
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    score = torch.rand(2, 1, height, width, dtype=torch.float64)
    fast = local_attention_pool2d(x, score, kernel, stride, padding, alpha, 1e-6, ceil_mode)
    slow = reference_lap(x, score, kernel, stride, padding, alpha, 1e-6, ceil_mode)
    torch.testing.assert_close(fast, slow)


@pytest.mark.parametrize(("height", "width", "kernel", "stride", "padding", "ceil_mode"), CASES)
def test_gradients_match_reference(height, width, kernel, stride, padding, ceil_mode):
    x = torch.randn(2, 3, height, width, dtype=torch.float64, requires_grad=True)
    score = torch.rand(2, 1, height, width, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(
        2,
        3,
        *local_attention_pool2d(x, score, kernel, stride, padding, 1.0, 1e-6, ceil_mode).shape[-2:],
        dtype=torch.float64,
    )
    fast = local_attention_pool2d(x, score, kernel, stride, padding, alpha, 1e-6, ceil_mode)
    grads_fast = torch.autograd.grad((fast * upstream).sum(), (x, score, alpha))
    slow = reference_lap(x, score, kernel, stride, padding, alpha, 1e-6, ceil_mode)
    grads_slow = torch.autograd.grad((slow * upstream).sum(), (x, score, alpha))
    for fast_grad, slow_grad in zip(grads_fast, grads_slow, strict=True):
        torch.testing.assert_close(fast_grad, slow_grad)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "ceil_mode"),
    [(2, 2, 0, False), (3, 2, 1, False), (3, 2, 1, True), (2, 1, 1, False)],
)
def test_gradcheck(kernel, stride, padding, ceil_mode):
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    score = torch.rand(1, 1, 6, 5, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)

    def fn(x, score, alpha):
        return local_attention_pool2d(x, score, kernel, stride, padding, alpha, 1e-3, ceil_mode)

    assert torch.autograd.gradcheck(fn, (x, score, alpha))


@pytest.mark.parametrize(
    ("size", "output"), [((7, 7), (1, 1)), ((7, 7), (7, 7)), ((5, 9), (2, 3)), ((2, 2), (7, 7))]
)
def test_adaptive_matches_reference(size, output):
    x = torch.randn(2, 4, *size, dtype=torch.float64, requires_grad=True)
    score = torch.rand(2, 1, *size, dtype=torch.float64, requires_grad=True)
    fast = adaptive_local_attention_pool2d(x, score, output, 2.0, 1e-6)
    slow = reference_adaptive(x, score, output, 2.0, 1e-6)
    torch.testing.assert_close(fast, slow)
    upstream = torch.randn_like(fast)
    grads_fast = torch.autograd.grad((fast * upstream).sum(), (x, score))
    grads_slow = torch.autograd.grad((slow * upstream).sum(), (x, score))
    for fast_grad, slow_grad in zip(grads_fast, grads_slow, strict=True):
        torch.testing.assert_close(fast_grad, slow_grad)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "ceil_mode"),
    [(2, 2, 0, False), (3, 2, 1, False), (3, 2, 0, True), (3, 1, 1, False)],
)
def test_uniform_scores_equal_average_pooling(kernel, stride, padding, ceil_mode):
    x = torch.randn(3, 5, 11, 9, dtype=torch.float64)
    score = torch.full((3, 1, 11, 9), 0.37, dtype=torch.float64)
    lap = local_attention_pool2d(x, score, kernel, stride, padding, 3.0, 1e-6, ceil_mode)
    avg = F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad=False)
    torch.testing.assert_close(lap, avg)
    adaptive = adaptive_local_attention_pool2d(x, score, (3, 4), 3.0, 1e-6)
    torch.testing.assert_close(adaptive, F.adaptive_avg_pool2d(x, (3, 4)))


def test_large_alpha_selects_highest_scored_pixel():
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    # distinct scores, well separated, so each window has one clear winner
    score = (torch.randperm(128, dtype=torch.float64).reshape(2, 1, 8, 8) + 10) / 140
    pooled = local_attention_pool2d(x, score, 2, 2, 0, alpha=3000.0, eps=1e-12)
    _, index = F.max_pool2d(score, 2, 2, return_indices=True)
    winner = torch.gather(x.flatten(2), 2, index.flatten(2).expand(-1, 4, -1)).reshape(2, 4, 4, 4)
    torch.testing.assert_close(pooled, winner)
    # and the error shrinks as alpha grows
    errors = [
        (local_attention_pool2d(x, score, 2, 2, 0, alpha=a, eps=1e-12) - winner).abs().max()
        for a in (10.0, 100.0, 1000.0)
    ]
    assert errors[0] > errors[1] > errors[2]


def test_alpha_zero_is_score_weighted_average():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    score = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    pooled = local_attention_pool2d(x, score, 2, 2, 0, alpha=0.0, eps=0.0 + 1e-9)
    weights = score + 1e-9
    expected = F.avg_pool2d(x * weights, 2) / F.avg_pool2d(weights, 2)
    torch.testing.assert_close(pooled, expected)


def test_padded_pixels_never_carry_weight():
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    score = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    pooled = local_attention_pool2d(x, score, 3, 2, 1)
    # the corner window sees only the 2x2 real pixels in its bottom-right
    v = score[0, 0, :2, :2].reshape(-1)
    w = torch.exp(-((v.max() - v) ** 2)) * v + 1e-6
    expected = (x[0, 0, :2, :2].reshape(-1) * w).sum() / w.sum()
    torch.testing.assert_close(pooled[0, 0, 0, 0], expected)
    assert math.isfinite(pooled.abs().max().item())


# ---- the public functions check their arguments as the modules do --------------------------

X, S = torch.rand(1, 2, 4, 4), torch.rand(1, 1, 4, 4)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: local_attention_pool2d(X, S, 3, 2, ceil_mode="no"), TypeError, "ceil_mode"),
        (lambda: local_attention_pool2d(X, S, (True, 2)), TypeError, "kernel_size .*never a bool"),
        (lambda: local_attention_pool2d(X, S, 2, (True, 1)), TypeError, "stride .*never a bool"),
        (lambda: local_attention_pool2d(X, S, 2, 0), ValueError, "stride must be >= 1"),
        (lambda: local_attention_pool2d(X, S, 2, padding=2), ValueError, "at most half"),
        (lambda: local_attention_pool2d(X, S, 2, alpha=math.nan), ValueError, "alpha .* finite"),
        (lambda: local_attention_pool2d(X, S, 2, alpha="1"), TypeError, "alpha"),
        (lambda: local_attention_pool2d(X, S, 2, alpha=torch.ones(2)), ValueError, "one-element"),
        (lambda: local_attention_pool2d(X, S, 2, eps=-1.0), ValueError, r"eps .* > 0"),
        (lambda: local_attention_pool2d(X, S, 2, eps=0.0), ValueError, r"eps .* > 0"),
        (lambda: local_attention_pool2d(X.long(), S, 2), TypeError, "x must be a floating-point"),
        (lambda: local_attention_pool2d(X, S > 0.5, 2), TypeError, "score must be a floating"),
        (lambda: local_attention_pool2d(X, S[..., :3], 2), ValueError, r"score must have shape"),
        (lambda: local_attention_pool2d(X[0], S, 2), ValueError, r"\(B, C, H, W\)"),
        (lambda: local_attention_pool2d(X, S.to("meta"), 2), ValueError, "one device"),
        (lambda: adaptive_local_attention_pool2d(X, S, 2.5), TypeError, "output_size"),
        (lambda: adaptive_local_attention_pool2d(X, S, (2.7, None)), TypeError, "never a bool or"),
        (lambda: adaptive_local_attention_pool2d(X, S, (True, 2)), TypeError, "output_size"),
        (lambda: adaptive_local_attention_pool2d(X, S, (0, 2)), ValueError, "ints >= 1 or None"),
        (lambda: adaptive_local_attention_pool2d(X, S, "22"), TypeError, "output_size"),
        (lambda: adaptive_local_attention_pool2d(X, S, 1, alpha=math.inf), ValueError, "alpha"),
        (lambda: adaptive_local_attention_pool2d(X, S, 1, eps=-1.0), ValueError, "eps"),
        (lambda: adaptive_local_attention_pool2d(X.long(), S, 1), TypeError, "floating-point"),
        (
            lambda: adaptive_local_attention_pool2d(X[..., :0], S[..., :0], 1),
            ValueError,
            "at least 1x1 pixels",
        ),
    ],
)
def test_functional_refuses_what_the_modules_refuse(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_functional_takes_a_tensor_alpha_and_score_of_another_float_dtype():
    alpha = torch.tensor(1.5, requires_grad=True)
    pooled = local_attention_pool2d(X, S.double(), 3, 1, 1, alpha, 1e-6, True)
    assert pooled.dtype == X.dtype and pooled.shape == (1, 2, 4, 4)
    pooled.sum().backward()
    assert alpha.grad is not None
    assert adaptive_local_attention_pool2d(X, S, (None, 2)).shape == (1, 2, 4, 2)
