"""The LAP explainer and the export module check the user's concept sets once, when they are
built, and keep a copy: editing the user's dict afterwards (another head, an entry that is no
list) changes neither their maps nor raises at a later batch. Before, both kept the user's dict
itself, so a later edit changed which heads they read, and a bad edit raised at the first map."""

from __future__ import annotations

import torch
from test_explainers_lap import lap_cnn

import torchlap
from torchlap.explainers import LapExplainer
from torchlap.export import LapExportModule


def edit(sets: dict) -> None:
    """Edits after construction: another head for class 0, one more for class 1, and an
    entry that is no list for class 2 (the checks would refuse it)."""
    sets[0] = [1]
    sets[1].append(0)
    sets[2] = "x"


def own_head(model: torch.nn.Module, layer: str, target: torch.Tensor) -> torch.Tensor:
    """With sets {c: [c, 3]} (head 3 common to every class, left out), image i's map is head
    target[i] of the layer: read from the layer's captured maps, image by image."""
    concepts = torchlap.attention_maps(model)[layer].concepts
    return torch.stack([concepts[i, int(c)] for i, c in enumerate(target)])


def test_the_explainer_keeps_the_sets_it_was_given() -> None:
    model = lap_cnn(n_concepts=4, num_classes=3)
    sets = {0: [0, 3], 1: [1, 3], 2: [2, 3]}
    explainer = LapExplainer(model, layer=0, concept_sets=sets)
    edit(sets)
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 2])
    got = explainer.raw(images, target)
    model(images)  # the explainer leaves the model's last maps as they were: capture its pass
    first = next(iter(torchlap.attention_maps(model)))
    torch.testing.assert_close(got, own_head(model, first, target), rtol=0, atol=0)
    assert explainer.concept_sets == {0: [0, 3], 1: [1, 3], 2: [2, 3]}


def test_the_export_module_keeps_the_sets_it_was_given() -> None:
    model = lap_cnn(n_concepts=4, num_classes=3)
    sets = {0: [0, 3], 1: [1, 3], 2: [2, 3]}
    module = LapExportModule(model, concept_sets=sets)
    edit(sets)
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    logits, *maps, _ = module(images)
    model(images)  # the module leaves the model's last maps as they were: capture this pass's
    predicted = logits.argmax(dim=1)
    for layer, got in zip(torchlap.attention_maps(model), maps, strict=True):
        torch.testing.assert_close(got, own_head(model, layer, predicted), rtol=0, atol=0)
