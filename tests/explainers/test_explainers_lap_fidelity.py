"""LAP All for top-scored selection (paper 000's supplement: "the scores have been added
without being clipped to keep the order of scores below 0.5") and concept sets reaching the
LAP maps (one head per class plus a common head, the paper's CelebA layout). References are
explicit loops over samples, layers and pixels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d
from torchlap.explainers import LapExplainer, lap_all
from torchlap.layers import LapBase, attention_maps, clear_attention_maps
from torchlap.losses import ConceptSets


def covering(y, x, fine, coarse):
    """The coarse pixel over fine pixel (y, x): the k x k block of a stride-k LAP."""
    return y * coarse[0] // fine[0], x * coarse[1] // fine[1]


def reference_unclipped_sum(maps, decay=0.8):
    """Each pixel of the shallowest map adds every layer's score at the pixel covering it,
    decayed by decay^(L - l), with no 0.5 test and no max."""
    depth = len(maps)
    batch, height, width = maps[0].shape
    out = torch.zeros(batch, height, width, dtype=maps[0].dtype)
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                total, yy, xx = 0.0, y, x
                for level in range(depth):
                    size = maps[level].shape[-2:]
                    if level > 0:
                        yy, xx = covering(yy, xx, maps[level - 1].shape[-2:], size)
                    total += float(maps[level][b, yy, xx]) * decay ** (depth - 1 - level)
                out[b, y, x] = total
    return out


@pytest.mark.parametrize("sizes", [[(8, 8), (4, 4), (2, 2)], [(6, 5), (3, 3), (1, 1)]])
def test_unclipped_sum_matches_the_loop_reference(sizes):
    maps = [torch.rand(2, *size, dtype=torch.float64) for size in sizes]
    torch.testing.assert_close(
        lap_all(maps, variant="unclipped_sum"), reference_unclipped_sum(maps)
    )
    torch.testing.assert_close(
        lap_all(maps, decay=0.5, variant="unclipped_sum"), reference_unclipped_sum(maps, 0.5)
    )
    with pytest.raises(ValueError, match="variant must be one of"):
        lap_all(maps, variant="sum")


def test_the_order_below_one_half_survives_only_in_the_unclipped_sum():
    """The deep layer finds nothing active: Algorithm 1 copies its value into every window (a
    plateau, top-k can only break the tie arbitrarily); the sum ranks by the shallow layer."""
    deep = torch.tensor([[[0.3]]])
    shallow = torch.tensor([[[0.1, 0.4], [0.2, 0.45]]])
    clipped = lap_all([shallow, deep])
    assert torch.equal(clipped, torch.full((1, 2, 2), 0.3))
    summed = lap_all([shallow, deep], variant="unclipped_sum")
    torch.testing.assert_close(summed, 0.3 + 0.8 * shallow)
    order = summed.flatten().argsort(descending=True).tolist()
    assert order == [3, 1, 2, 0]


def lap_cnn(n_concepts, num_classes):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        LocalAttentionPool2d(8, 2, n_concepts=n_concepts, aggregation="mean"),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        AdaptiveLocalAttentionPool2d(8, 1, n_concepts=n_concepts, aggregation="mean"),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )
    for module in model.modules():
        if isinstance(module, LapBase):
            for conv in module.scorer.heads:
                if isinstance(conv, nn.Conv2d):
                    nn.init.normal_(conv.weight, std=1.0)
                    nn.init.normal_(conv.bias, std=1.0)
    return model.eval()


def layer_concepts(model, images):
    with torch.no_grad():
        model(images)
    try:
        return [m.concepts.clone() for m in attention_maps(model).values()]
    finally:
        clear_attention_maps(model)


@pytest.mark.parametrize("form", ["object", "dict", "mapping"])
def test_one_head_per_class_plus_a_common_head_explains_the_class_head(form):
    num_classes = 3
    model = lap_cnn(n_concepts=num_classes + 1, num_classes=num_classes)
    sets = ConceptSets.default(num_classes, num_classes + 1)  # class c: head c and the common head
    given = {"object": sets, "dict": sets.to_dict(), "mapping": sets.to_mapping()}[form]
    images = torch.rand(4, 3, 8, 8)
    target = torch.tensor([0, 2, 1, 2])
    concepts = layer_concepts(model, images)
    for index, layer in enumerate(concepts):
        got = LapExplainer(model, layer=index, concept_sets=given).raw(images, target)
        expected = torch.empty(layer.shape[0], *layer.shape[-2:])
        for s in range(layer.shape[0]):
            for y in range(layer.shape[-2]):
                for x in range(layer.shape[-1]):
                    expected[s, y, x] = layer[s, int(target[s]), y, x]  # the class's own head
        torch.testing.assert_close(got, expected)
        with_common = LapExplainer(model, layer=index, concept_sets=given, include_common=True).raw(
            images, target
        )
        for s in range(layer.shape[0]):
            for y in range(layer.shape[-2]):
                for x in range(layer.shape[-1]):
                    own, common = layer[s, int(target[s]), y, x], layer[s, num_classes, y, x]
                    assert float(with_common[s, y, x]) == pytest.approx(max(own, common))
    # without the concept sets this layout falls back to the aggregated score S
    fallback = LapExplainer(model, layer=0).raw(images, target)
    assert not torch.allclose(
        fallback, LapExplainer(model, layer=0, concept_sets=given).raw(images, target)
    )


def test_lap_all_of_the_class_heads():
    model = lap_cnn(n_concepts=4, num_classes=3)
    sets = ConceptSets.default(3, 4)
    images = torch.rand(3, 3, 8, 8)
    target = torch.tensor([1, 0, 2])
    shallow, deep = layer_concepts(model, images)
    picked = [
        torch.stack([layer[s, int(target[s])] for s in range(3)]) for layer in (shallow, deep)
    ]
    got = LapExplainer(model, concept_sets=sets, variant="unclipped_sum").raw(images, target)
    torch.testing.assert_close(got, reference_unclipped_sum(picked))
    with pytest.raises(ValueError, match="variant must be one of"):
        LapExplainer(model, variant="clipped")
    with pytest.raises(TypeError, match="concept_sets must be None"):
        LapExplainer(model, concept_sets=[0, 1])
