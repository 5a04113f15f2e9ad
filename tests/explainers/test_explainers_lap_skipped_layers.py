"""The ``lap`` explainer on a model whose LAP layers do not all run in a forward pass: the maps
are this pass's only (an earlier forward's maps of a layer that did not run now are not
returned), none running is said, and an index counts the layers that ran, from both ends."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import torchlap
from torchlap import LocalAttentionPool2d
from torchlap.explainers import LapExplainer


class Optional(nn.Module):
    """Three LAP layers, each run only while its flag in ``runs`` is True."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.a = LocalAttentionPool2d(4, 2)
        self.b = LocalAttentionPool2d(4, 2)
        self.c = LocalAttentionPool2d(4, 2)
        self.fc = nn.Linear(4, 2)
        self.runs = {"a": True, "b": True, "c": True}

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.conv(x))
        for name in ("a", "b", "c"):
            if self.runs[name]:
                x = getattr(self, name)(x)
        return self.fc(x.mean(dim=(2, 3)))


def images() -> Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_a_layer_that_did_not_run_gives_no_earlier_map() -> None:
    model = Optional().eval()
    model(images())  # every layer keeps a map of this forward
    model.runs["b"] = False
    with pytest.raises(ValueError, match="LAP layer 'b' did not run in the forward pass"):
        LapExplainer(model, layer="b").raw(images(), torch.tensor([0, 1]))


def test_no_lap_layer_running_is_said() -> None:
    model = Optional().eval()
    model(images())
    model.runs = {"a": False, "b": False, "c": False}
    with pytest.raises(ValueError, match="no LAP layer ran in the forward pass"):
        LapExplainer(model).raw(images(), torch.tensor([0, 1]))


@pytest.mark.parametrize(("layer", "name"), [(-2, "a"), (-1, "c"), (0, "a"), (1, "c")])
def test_an_index_counts_the_layers_that_ran(layer: int, name: str) -> None:
    model = Optional().eval()
    model.runs["b"] = False
    got = LapExplainer(model, layer=layer).raw(images(), torch.tensor([0, 1]))
    model(images())
    torch.testing.assert_close(got, torchlap.attention_maps(model)[name].concepts[:, 0])


@pytest.mark.parametrize("layer", [2, -3])
def test_an_index_past_the_layers_that_ran_names_the_skipped(layer: int) -> None:
    model = Optional().eval()
    model.runs["b"] = False
    with pytest.raises(
        ValueError, match=r"2 of the model's 3 LAP layers ran .*\(a, c; skipped: b\)"
    ):
        LapExplainer(model, layer=layer).raw(images(), torch.tensor([0, 1]))
