"""lapify puts each new LAP "on the device and dtype of the module it replaces": for a module
without tensors of its own (a pool), those of the nearest enclosing module that has some, else
the model's, else torch's defaults."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap import lap_parameters, lapify
from torchlap.layers import lap_modules


class ToDouble(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()


def dtypes_of(model: nn.Module) -> set[torch.dtype]:
    return {parameter.dtype for parameter in lap_parameters(model)}


@pytest.mark.parametrize(
    ("make", "where", "dtype"),
    [
        # the pool's own block holds float64, the model's first parameter is float32
        (
            lambda: nn.Sequential(
                nn.Conv2d(3, 4, 1), nn.Sequential(nn.Conv2d(4, 4, 1).double(), nn.MaxPool2d(2))
            ),
            "1.1", torch.float64,
        ),
        # two levels up: the pool's block has no tensors, the block around it has (the pool's
        # channels come from the dry pass, which the cast to float64 lets run)
        (
            lambda: nn.Sequential(
                nn.Conv2d(3, 4, 1),
                ToDouble(),
                nn.Sequential(
                    nn.Conv2d(4, 4, 1).double(), nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
                ),
            ),
            "2.1.1", torch.float64,
        ),
        # the nearest of several enclosing blocks with tensors
        (
            lambda: nn.Sequential(
                nn.Conv2d(3, 4, 1),
                nn.Sequential(
                    nn.Conv2d(4, 4, 1),
                    nn.Sequential(nn.Conv2d(4, 4, 1).double(), nn.MaxPool2d(2)),
                ),
            ),
            "1.1.1", torch.float64,
        ),
        # the other way round: a float32 block inside a float64 model
        (
            lambda: nn.Sequential(
                nn.Conv2d(3, 4, 1).double(), nn.Sequential(nn.Conv2d(4, 4, 1), nn.AvgPool2d(2))
            ),
            "1.1", torch.float32,
        ),
        # a pool at the top: the model's tensors
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 1).double(), nn.MaxPool2d(2)), "1", torch.float64),
        # a module with tensors of its own: its own
        (
            lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, 2).double()),
            "1", torch.float64,
        ),
    ],
    ids=["parent", "grandparent", "nearest", "float32-block", "top-level", "own"],
)  # fmt: skip
def test_a_lap_takes_the_dtype_of_its_nearest_owner(make, where, dtype):
    model = make()
    lapify(model, where=[where])
    assert dtypes_of(model) == {dtype}
    (lap,) = lap_modules(model).values()
    assert lap.in_channels == 4


def test_a_model_without_tensors_gets_torchs_default_dtype():
    model = nn.Sequential(nn.MaxPool2d(2))
    lapify(model, where=["0"], input_size=8)
    assert dtypes_of(model) == {torch.get_default_dtype()}
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 3, 4, 4)
