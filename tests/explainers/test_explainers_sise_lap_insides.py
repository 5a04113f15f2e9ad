"""SISE refuses, when it is built, a layer inside a LAP layer (its concept scorer): the feature
probe that puts SISE's layers in forward order leaves such modules out, so before, a scorer
layer ranked as the shallowest layer, and SISE refused a right order with wrong advice or
accepted a wrong one."""

from __future__ import annotations

import pytest
import torch
from test_explainers_sise import cnn

from torchlap.explainers import Sise


@pytest.mark.parametrize(
    "layers", [["0", "2.scorer.heads.2"], ["2.scorer.heads.2", "3"], ["5.scorer"]]
)
def test_a_layer_inside_a_lap_layer_is_refused_when_built(layers: list[str]) -> None:
    lap = "2" if layers != ["5.scorer"] else "5"
    inside = next(n for n in layers if n.startswith(f"{lap}."))
    with pytest.raises(
        ValueError,
        match=rf"layers lists '{inside}', a module inside the LAP layer '{lap}': its concept "
        rf"scorer is no feature layer.*the LAP layer '{lap}' itself is one",
    ):
        Sise(cnn(True), layers=layers)


def test_the_lap_layer_itself_and_layers_around_it_are_accepted() -> None:
    model = cnn(True)
    maps = Sise(model, layers=["0", "2", "3"], mask_batch_size=8)(
        torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)),
        target=torch.tensor([0, 1]),
    )
    assert maps.shape == (2, 16, 16) and bool(torch.isfinite(maps).all())
