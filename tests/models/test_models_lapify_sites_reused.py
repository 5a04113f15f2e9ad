"""lapify(where="auto") on models that run a pool module twice, or on unbatched samples.

Each run of a down-sampling module shrinks the map, so each counts towards the output stride of
the steps after it (paper 000, III.C: LAPs where the output stride is 8 or more). A module is
one set of weights for all its runs: when one of its runs is at output stride 8 or more, lapify
refuses it as a shared module (one LAP would pool at every run) and says how to split it. A pool
run on (C, H, W) samples one by one counts too, but is left as it is (LAP layers take
(B, C, H, W)), with a warning. The output strides below are worked out by hand from the
forward methods.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from torchlap import lapify
from torchlap.layers import LocalAttentionPool2d


class Reused(nn.Module):
    """``conv``, then the pools in ``order`` (names of ``p``, ``q``, ``r``), then the head."""

    def __init__(self, order: str) -> None:
        super().__init__()
        self.order = order
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.p, self.q, self.r = nn.MaxPool2d(2), nn.MaxPool2d(2), nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        for name in self.order:
            x = getattr(self, name)(x)
        return self.fc(self.gap(x).flatten(1))


def sites(order: str, caplog: pytest.LogCaptureFixture) -> tuple[Reused, list[str]]:
    model = Reused(order)
    with caplog.at_level(logging.WARNING, logger="torchlap.models.lapify"):
        _, names = lapify(model, input_size=64)
    return model, names


def test_a_step_after_a_pool_run_twice_counts_both_runs(caplog):
    # p: 2 and 4 (both below 8: left); q: 8 -> LAP
    model, names = sites("ppq", caplog)
    assert names == ["q", "gap"]
    assert type(model.p) is nn.MaxPool2d and isinstance(model.q, LocalAttentionPool2d)


@pytest.mark.parametrize(
    ("order", "shapes"),
    [
        # p: 2, q: 4, r: 8, p again: 16
        ("pqrp", "(1, 4, 64, 64), (1, 4, 8, 8)"),
        # q: 2, r: 4, p: 8 and 16
        ("qrpp", "(1, 4, 16, 16), (1, 4, 8, 8)"),
    ],
)
def test_a_pool_run_twice_and_once_at_output_stride_8_is_refused_as_shared(order, shapes, caplog):
    model = Reused(order)
    with pytest.raises(ValueError, match="'p' is one module with several uses") as refusal:
        lapify(model, input_size=64)
    assert f"called 2 times in one forward pass, on {shapes}" in str(refusal.value)
    assert "copy.deepcopy" in str(refusal.value)
    assert all(type(getattr(model, n)) is nn.MaxPool2d for n in "pqr")  # nothing replaced


class Unbatched(Reused):
    """As :class:`Reused`, but ``p`` pools each sample on its own, as a (C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        for name in self.order:
            pool = getattr(self, name)
            x = torch.stack([pool(sample) for sample in x]) if name == "p" else pool(x)
        return self.fc(self.gap(x).flatten(1))


def test_a_step_run_on_unbatched_samples_counts_but_is_left_with_a_warning(caplog):
    # q: 2, r: 4, p (unbatched): 8 -> left; LAP layers take (B, C, H, W) only
    model = Unbatched("qrp")
    with caplog.at_level(logging.WARNING, logger="torchlap.models.lapify"):
        _, names = lapify(model, input_size=64)
    assert names == ["gap"]
    assert "left ['p'] as they are: they ran on unbatched (C, H, W) tensors" in caplog.text
    assert type(model.p) is nn.MaxPool2d


def test_an_unbatched_step_shrinks_the_output_stride_of_the_steps_after_it(caplog):
    # p (unbatched): 2, q: 4, r: 8 -> LAP
    model = Unbatched("pqr")
    with caplog.at_level(logging.WARNING, logger="torchlap.models.lapify"):
        _, names = lapify(model, input_size=64)
    assert names == ["r", "gap"] and isinstance(model.r, LocalAttentionPool2d)
    assert "unbatched" not in caplog.text
