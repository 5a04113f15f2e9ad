"""LAP's pooling under torch.func transforms against the slow references of paper 000, Eq. 1 and 4.

Inside ``vmap`` and ``grad`` the pooling functions take their own path (``torchlap.layers._plain``:
PyTorch's differentiable operations, out of place), which the other tests reach for one window
only. Here it meets the loop-over-windows references on every geometry of the kernel tests
(padding, ceil mode, pixels in no window, kernels below the stride) and on adaptive cells:
values under ``vmap`` over the samples, gradients with respect to the features, the score map and
``alpha`` under ``torch.func.grad``.
"""

from __future__ import annotations

import pytest
import torch
from test_layers_lap_kernel import GEOMETRIES, _tiny_geometries, slow_lap
from test_layers_lap_reference import reference_adaptive
from torch.func import grad, vmap

from torchlap.layers.functional import adaptive_local_attention_pool2d, local_attention_pool2d

EPS = 1e-3


def check_against_reference(pool, reference, x, score, alpha):
    """``pool(x, score, alpha)`` under vmap (values) and grad (gradients) against ``reference``."""
    values = vmap(lambda xs, ss: pool(xs[None], ss[None], alpha)[0])(x, score)
    want = reference(x, score, alpha)
    torch.testing.assert_close(values, want)
    probe = torch.randn(want.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    got = grad(lambda *a: (pool(*a) * probe).sum(), argnums=(0, 1, 2))(x, score, alpha)
    leaves = [t.clone().requires_grad_(True) for t in (x, score, alpha)]
    wants = torch.autograd.grad((reference(*leaves) * probe).sum(), leaves)
    for name, g, w in zip(("x", "score", "alpha"), got, wants, strict=True):
        torch.testing.assert_close(g, w, msg=lambda m, name=name: f"grad {name}: {m}")


# ceil-mode windows that start in the map (or its left padding) and end past the right padding:
# the out-of-place window sum under vmap and grad (torchlap.layers._plain.window_sum) must pad
# the map further than the layer's own padding, on the rows only, the columns only, or both
CEIL_PAST_PADDING = [
    (6, 6, (3, 3), (2, 2), (1, 1), True),
    (6, 5, (3, 3), (2, 2), (1, 1), True),  # the rows only
    (5, 6, (3, 3), (2, 2), (1, 1), True),  # the columns only
    (5, 8, (4, 4), (3, 3), (2, 2), True),  # two pixels of padding, one past them
]


@pytest.mark.parametrize(
    "geometry", GEOMETRIES[:10] + _tiny_geometries(15, seed=5) + CEIL_PAST_PADDING
)
def test_windowed_pool_under_torch_func_matches_the_slow_reference(geometry):
    height, width, kernel, stride, padding, ceil_mode = geometry
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, height, width, generator=generator, dtype=torch.float64)
    score = torch.rand(2, 1, height, width, generator=generator, dtype=torch.float64)
    alpha = torch.tensor(1.7, dtype=torch.float64)

    def pool(x, score, alpha):
        return local_attention_pool2d(x, score, kernel, stride, padding, alpha, EPS, ceil_mode)

    def reference(x, score, alpha):
        return slow_lap(x, score, kernel, stride, padding, alpha, EPS, ceil_mode)

    check_against_reference(pool, reference, x, score, alpha)


@pytest.mark.parametrize("output_size", [(1, 1), (2, 3), (3, None)])
def test_adaptive_pool_under_torch_func_matches_the_slow_reference(output_size):
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 5, 7, generator=generator, dtype=torch.float64)
    score = torch.rand(2, 1, 5, 7, generator=generator, dtype=torch.float64)
    alpha = torch.tensor(0.9, dtype=torch.float64)

    def pool(x, score, alpha):
        return adaptive_local_attention_pool2d(x, score, output_size, alpha, EPS)

    def reference(x, score, alpha):
        return reference_adaptive(x, score, output_size, alpha, EPS)

    check_against_reference(pool, reference, x, score, alpha)
