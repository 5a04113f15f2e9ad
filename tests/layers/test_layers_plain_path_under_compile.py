"""Under ``torch.compile`` LAP's pooling traces in one graph and leaves the torch.func path alone.

``torchlap.layers._plain`` holds the out-of-place sums that only torch.func transforms (and a
double backward) take: "They are slower and use more memory than the kernels: they are taken only
in those cases". Its ``functorch_wrapped`` test must not run while dynamo traces (dynamo cannot
trace ``is_functorch_wrapped_tensor``: a graph break, an error with ``fullgraph=True``), and a
compiled graph is not a torch.func transform. Here the pooling functions are compiled with
``fullgraph=True`` while the two ``_plain`` sums are replaced by functions that fail, and the
values are held to the loop-over-windows references of paper 000's Eq. 1 and 4.
"""

from __future__ import annotations

import pytest
import torch
from test_layers_lap_kernel import slow_lap
from test_layers_lap_reference import reference_adaptive

from torchlap.layers import _plain
from torchlap.layers.functional import adaptive_local_attention_pool2d, local_attention_pool2d

EPS = 1e-3


@pytest.fixture
def no_plain_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch.func sums replaced by functions that fail if a compiled pool reaches them."""

    def refuse(*args: object) -> None:
        raise AssertionError("the torch.func path of _plain ran under torch.compile")

    monkeypatch.setattr(_plain, "window_sum", refuse)
    monkeypatch.setattr(_plain, "matrix_sum", refuse)


def _inputs(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, height, width, generator=generator, dtype=torch.float64)
    score = torch.rand(2, 1, height, width, generator=generator, dtype=torch.float64)
    return x, score


@pytest.mark.usefixtures("no_plain_sums")
def test_compiled_window_pool_is_one_graph_and_matches_the_slow_reference() -> None:
    x, score = _inputs(7, 6)

    def pool(x: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        return local_attention_pool2d(x, score, 3, 2, 1, alpha=1.3, eps=EPS, ceil_mode=True)

    got = torch.compile(pool, backend="eager", fullgraph=True)(x, score)
    want = slow_lap(x, score, (3, 3), (2, 2), (1, 1), 1.3, EPS, ceil_mode=True)
    torch.testing.assert_close(got, want)


@pytest.mark.usefixtures("no_plain_sums")
@pytest.mark.parametrize("output_size", [(1, 1), (2, 3)], ids=["global", "cells"])
def test_compiled_adaptive_pool_is_one_graph_and_matches_the_slow_reference(output_size) -> None:
    x, score = _inputs(5, 7)

    def pool(x: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        return adaptive_local_attention_pool2d(x, score, output_size, alpha=0.9, eps=EPS)

    got = torch.compile(pool, backend="eager", fullgraph=True)(x, score)
    want = reference_adaptive(x, score, output_size, 0.9, EPS)
    torch.testing.assert_close(got, want)
