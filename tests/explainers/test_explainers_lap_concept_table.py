"""The LAP explainer builds its concept sets' membership table once per (classes, heads,
device), not on every batch and layer (a Python loop over the classes and a copy to the
device each time); the maps are those of ``select_lap_map`` with the same sets."""

from __future__ import annotations

import torch
from test_explainers_lap import lap_cnn

import torchlap
from torchlap.explainers import LapExplainer, lap_all, select_lap_map
from torchlap.explainers import lap as lap_module


def test_the_membership_table_is_built_once_and_gives_select_lap_maps_maps(monkeypatch):
    model = lap_cnn(n_concepts=4, num_classes=3)
    sets = {0: [0, 3], 1: [1, 3], 2: [2, 3]}  # head 3 common to every class
    built = []
    real = lap_module._concept_members

    def counting(*args):
        built.append(args[1:])
        return real(*args)

    monkeypatch.setattr(lap_module, "_concept_members", counting)
    explainer = LapExplainer(model, concept_sets=sets)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        images = torch.randn(4, 3, 16, 16, generator=generator)
        target = torch.tensor([0, 1, 2, 1])
        got = explainer.raw(images, target)
        model(images)
        monkeypatch.setattr(lap_module, "_concept_members", real)
        selected = [
            select_lap_map(maps, target, 3, None, sets)
            for maps in torchlap.attention_maps(model).values()
        ]
        monkeypatch.setattr(lap_module, "_concept_members", counting)
        torch.testing.assert_close(got, lap_all(selected), rtol=0, atol=0)
    assert built == [(3, 4)]  # three batches, three layers of four heads: one table
