"""The adaptive LAP's window membership is computed on the map's device: equal to the list
rule of ``adaptive_bounds`` (nn.AdaptiveAvgPool2d's windows) and built from no Python list
(a host list copied to a GPU on every forward waits for the device)."""

from __future__ import annotations

import torch

from torchlap.layers.functional import (
    _adaptive_membership,
    adaptive_bounds,
    adaptive_local_attention_pool2d,
)


def test_membership_equals_the_bounds_of_adaptive_pooling() -> None:
    for size in range(1, 41):
        for out in range(1, 41):
            starts, ends = adaptive_bounds(size, out)
            expected = torch.zeros(out, size, dtype=torch.bool)
            for window, (start, end) in enumerate(zip(starts, ends, strict=True)):
                expected[window, start:end] = True
            assert torch.equal(_adaptive_membership(size, out, torch.device("cpu")), expected)


def test_an_adaptive_forward_builds_no_tensor_from_a_list(monkeypatch) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 7, generator=generator)
    score = torch.rand(2, 1, 9, 7, generator=generator)
    expected = adaptive_local_attention_pool2d(x, score, (4, 3), backend="torch")
    real = torch.tensor

    def refuse(data, *args, **kwargs):
        if isinstance(data, (list, tuple)):
            raise AssertionError(f"torch.tensor({data!r}) in an adaptive LAP forward")
        return real(data, *args, **kwargs)

    monkeypatch.setattr(torch, "tensor", refuse)
    got = adaptive_local_attention_pool2d(x, score, (4, 3), backend="torch")
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
