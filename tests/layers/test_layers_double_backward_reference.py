"""The first backward of LAP's global pool under ``create_graph=True``, against a slow reference.

With grad mode on in the backward (a double backward), the compiled global pool's backward runs
``torchlap.layers._plain.global_sum_backward`` (PyTorch's differentiable operations) instead of
the kernel. ``gradgradcheck`` cannot see a wrong first backward there: it only checks that the
second derivatives match finite differences *of that same first backward*. Here the gradients
given with ``create_graph=True`` are themselves held to the autograd of a loop over pixels
written from paper 000's Eq. 1 and 4 (the global pool: one window, the whole map), when only the
features, only the score map, or both need a gradient, and so are the second derivatives.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchlap._ext import lap_kernels
from torchlap.layers.functional import adaptive_local_attention_pool2d

needs_kernel = pytest.mark.skipif(lap_kernels() is None, reason="no C compiler: kernel not built")
ALPHA, EPS = 0.8, 1e-3


def slow_global(x: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Eq. 1 with Eq. 4's weights over every pixel of the map, one sample and channel at a time
    (``exp(-alpha^2 (max - s)^2) * s + eps``, normalised over the map)."""
    batch, channels, height, width = x.shape
    rows = []
    for b in range(batch):
        values = [score[b, 0, r, q] for r in range(height) for q in range(width)]
        peak = torch.stack(values).max()  # Eq. 4's max over the window, differentiable
        weights = [torch.exp(-(ALPHA**2) * (peak - v) ** 2) * v + EPS for v in values]
        total = sum(weights)
        outs = []
        for c in range(channels):
            feats = [x[b, c, r, q] for r in range(height) for q in range(width)]
            outs.append(sum(w * f for w, f in zip(weights, feats, strict=True)) / total)
        rows.append(torch.stack(outs))
    return torch.stack(rows).reshape(batch, channels, 1, 1)


def _leaves(needs: tuple[bool, bool]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 4, 5, generator=generator, dtype=torch.float64)
    # distinct scores away from zero: one peak per sample, no ties
    score = torch.rand(2, 1, 4, 5, generator=generator, dtype=torch.float64) + 0.1
    return x.requires_grad_(needs[0]), score.requires_grad_(needs[1])


NEEDS = [(True, False), (False, True), (True, True)]


@pytest.mark.parametrize("backend", [pytest.param("auto", marks=needs_kernel), "torch"])
@pytest.mark.parametrize("needs", NEEDS, ids=["x", "score", "both"])
def test_global_pool_first_backward_with_create_graph_matches_the_reference(backend, needs):
    x, score = _leaves(needs)
    wanted = [t for t in (x, score) if t.requires_grad]
    probe = torch.linspace(-1.0, 2.0, 6, dtype=torch.float64).reshape(2, 3, 1, 1)
    pooled = adaptive_local_attention_pool2d(x, score, 1, ALPHA, EPS, backend=backend)
    torch.testing.assert_close(pooled, slow_global(x, score))
    got = torch.autograd.grad((pooled * probe).sum(), wanted, create_graph=True)
    want = torch.autograd.grad((slow_global(x, score) * probe).sum(), wanted, create_graph=True)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
        assert g.requires_grad == w.requires_grad  # where the reference's can go on, so can it


@pytest.mark.parametrize("backend", [pytest.param("auto", marks=needs_kernel), "torch"])
@pytest.mark.parametrize("needs", NEEDS, ids=["x", "score", "both"])
def test_global_pool_second_derivatives_match_the_reference(backend, needs):
    x, score = _leaves(needs)
    wanted = [t for t in (x, score) if t.requires_grad]
    probe = torch.linspace(-1.0, 2.0, 6, dtype=torch.float64).reshape(2, 3, 1, 1)
    probe.requires_grad_(True)  # the first backward is linear in it: a second derivative
    directions = [torch.cos(torch.arange(t.numel(), dtype=torch.float64) * math.e) for t in wanted]

    def second(pool) -> tuple[torch.Tensor, ...]:
        firsts = torch.autograd.grad((pool(x, score) * probe).sum(), wanted, create_graph=True)
        inner = sum((g.reshape(-1) * d).sum() for g, d in zip(firsts, directions, strict=True))
        return torch.autograd.grad(inner, [probe, *wanted], allow_unused=True)

    got = second(lambda a, s: adaptive_local_attention_pool2d(a, s, 1, ALPHA, EPS, backend=backend))
    want = second(slow_global)
    for g, w in zip(got, want, strict=True):
        if w is None:  # the reference does not depend on it (x enters Eq. 1 linearly)
            assert g is None or torch.count_nonzero(g) == 0
        else:
            torch.testing.assert_close(g, w)
