"""``lap``: the LAP layers' own maps, head selection, and "LAP All" (paper 000, Algorithm 1)."""

import pytest
import torch
from explainer_references import reference_lap_all
from torch import nn

import torchlap
from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d, explainers
from torchlap.explainers import LapExplainer, lap_all
from torchlap.layers import LapBase


def lap_cnn(n_concepts: int = 1, num_classes: int = 3) -> nn.Sequential:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        LocalAttentionPool2d(8, 2, n_concepts=n_concepts, aggregation="mean"),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        LocalAttentionPool2d(16, 2, n_concepts=n_concepts, aggregation="mean"),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        AdaptiveLocalAttentionPool2d(16, 1, n_concepts=n_concepts, aggregation="mean"),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )
    for module in model.modules():
        if isinstance(module, LapBase):
            for conv in module.scorer.heads:
                if isinstance(conv, nn.Conv2d):
                    nn.init.normal_(conv.weight, std=1.0)
                    nn.init.normal_(conv.bias, std=1.0)
    return model.eval()


@pytest.mark.parametrize(
    "sizes", [[(16, 16), (8, 8), (4, 4)], [(12, 10), (6, 5), (3, 3), (1, 1)], [(7, 9), (3, 4)]]
)
def test_lap_all_matches_algorithm_1(sizes):
    maps = [torch.rand(2, *size) for size in sizes]
    torch.testing.assert_close(lap_all(maps), reference_lap_all(maps))
    torch.testing.assert_close(
        lap_all(maps, decay=0.5, threshold=0.3),
        reference_lap_all(maps, decay=0.5, threshold=0.3),
    )


def test_lap_all_hand_computed():
    deep = torch.tensor([[[0.9, 0.2]]])  # (1, 1, 2)
    shallow = torch.tensor([[[0.7, 0.1, 0.6, 0.9], [0.3, 0.4, 0.8, 0.7]]])  # (1, 2, 4)
    out = lap_all([shallow, deep], decay=0.5)
    # left window: r = 0.9 active and 0.7 active -> 0.7 keeps max(0.9, 0.35) = 0.9, the
    # inactive pixels get p * 0.5; right window: r = 0.2 inactive -> all keep 0.2
    expected = torch.tensor([[[0.9, 0.05, 0.2, 0.2], [0.15, 0.2, 0.2, 0.2]]])
    torch.testing.assert_close(out, expected)
    # an active zone the shallow layer did not see keeps the credit everywhere
    quiet = torch.full((1, 2, 4), 0.1)
    torch.testing.assert_close(lap_all([quiet, deep])[0, :, :2], torch.full((2, 2), 0.9))
    torch.testing.assert_close(lap_all([deep]), deep)
    with pytest.raises(ValueError, match="at least one"):
        lap_all([])
    with pytest.raises(ValueError, match="decay"):
        lap_all([deep], decay=0.0)


def test_single_layer_maps_are_the_layers_maps_from_one_forward():
    model = lap_cnn(n_concepts=1)
    images = torch.randn(2, 3, 16, 16)
    explainer = LapExplainer(model, layer=0)
    raw = explainer.raw(images)
    assert explainer.last_stats == {"forwards_per_image": 1.0, "backwards_per_image": 0.0}
    model(images)
    maps = torchlap.attention_maps(model)
    names = list(maps)
    torch.testing.assert_close(raw, maps[names[0]].concepts[:, 0])
    torch.testing.assert_close(
        LapExplainer(model, layer=names[1]).raw(images), maps[names[1]].concepts[:, 0]
    )
    torch.testing.assert_close(
        LapExplainer(model, layer=-1).raw(images), maps[names[-1]].concepts[:, 0]
    )
    assert raw.shape == (2, 16, 16)
    all_raw = LapExplainer(model).raw(images)
    expected = lap_all([m.concepts[:, 0] for m in maps.values()])
    torch.testing.assert_close(all_raw, expected)
    assert all_raw.shape == (2, 16, 16)


def test_head_follows_target_when_one_head_per_class():
    model = lap_cnn(n_concepts=3, num_classes=3)
    images = torch.randn(4, 3, 16, 16)
    target = torch.tensor([0, 2, 1, 2])
    raw = LapExplainer(model, layer=1).raw(images, target)
    model(images)
    concepts = list(torchlap.attention_maps(model).values())[1].concepts
    for i, t in enumerate(target.tolist()):
        torch.testing.assert_close(raw[i], concepts[i, t])
    explicit = LapExplainer(model, layer=1, head=1).raw(images, target)
    torch.testing.assert_close(explicit, concepts[:, 1])


def test_other_head_counts_use_the_aggregated_score():
    model = lap_cnn(n_concepts=2, num_classes=3)
    images = torch.randn(2, 3, 16, 16)
    raw = LapExplainer(model, layer=0).raw(images, 1)
    model(images)
    maps = next(iter(torchlap.attention_maps(model).values()))
    torch.testing.assert_close(raw, maps.score[:, 0])
    torch.testing.assert_close(maps.score, maps.concepts.mean(dim=1, keepdim=True))
    torch.testing.assert_close(
        LapExplainer(model, layer=0, head="score").raw(images, 0), maps.score[:, 0]
    )


def test_concept_sets_come_only_from_the_option():
    model = lap_cnn(n_concepts=3, num_classes=3)
    sets = {"0": [0], "1": [1, 2], "7": [0]}
    images = torch.randn(3, 3, 16, 16)
    target = torch.tensor([0, 1, 2])
    raw = LapExplainer(model, layer=0, concept_sets=sets).raw(images, target)
    model(images)
    maps = next(iter(torchlap.attention_maps(model).values()))
    torch.testing.assert_close(raw[0], maps.concepts[0, 0])
    torch.testing.assert_close(raw[1], maps.concepts[1, 1:].amax(dim=0))
    torch.testing.assert_close(raw[2], maps.score[2, 0])  # class 2 has no concepts
    with pytest.raises(ValueError, match="list of concept indices"):
        LapExplainer(model, concept_sets={"0": 3})(images)
    # an attribute on the model is no hidden channel: without the option, one head per class
    model.torchlap_config = {"concept_sets": sets}
    plain = LapExplainer(model, layer=0).raw(images, target)
    torch.testing.assert_close(plain, maps.concepts[torch.arange(3), target])


def test_bad_options_and_models():
    with pytest.raises(ValueError, match="needs a model with LAP layers"):
        LapExplainer(nn.Sequential(nn.Conv2d(3, 3, 1)))
    model = lap_cnn()
    with pytest.raises(ValueError, match="is not a LAP layer"):
        LapExplainer(model, layer="0")
    with pytest.raises(ValueError, match="out of range"):
        LapExplainer(model, layer=3)
    with pytest.raises(ValueError, match="head"):
        LapExplainer(model, head="max")
    with pytest.raises(ValueError, match="head 1 does not exist"):
        LapExplainer(model, head=1)(torch.randn(1, 3, 16, 16))


def test_lap_maps_of_a_lapified_resnet():
    import torchvision

    model, _ = torchlap.lapify(torchvision.models.resnet18(num_classes=4), where="resnet18")
    images = torch.randn(2, 3, 64, 64)
    maps = explainers.explain(model.eval(), images, "lap")
    assert maps.shape == (2, 64, 64)
    # fresh LAP heads give probability 0.5 everywhere: LAP All keeps 0.5 (decayed where active)
    assert torch.isfinite(maps).all() and float(maps.max()) <= 0.5 + 1e-6
    raw = LapExplainer(model, layer="layer2.0.lap").raw(images)
    assert raw.shape == (2, 16, 16)


def test_lap_all_refuses_nan_threshold_coerced_decay_and_non_finite_maps():
    deep = torch.tensor([[[0.9, 0.2]]])
    shallow = torch.rand(1, 2, 4)
    # threshold=nan returned the deepest map upsampled: every comparison with NaN is False
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]"):
        lap_all([shallow, deep], threshold=float("nan"))
    with pytest.raises(TypeError, match=r"decay must be a number in \(0, 1\]"):
        lap_all([shallow, deep], decay="0.5")
    # a NaN pixel of a shallower map was dropped by Algorithm 1 (kept by the unclipped sum)
    shallow[0, 0, 0] = float("nan")
    for variant in ("algorithm1", "unclipped_sum"):
        with pytest.raises(ValueError, match=r"NaN or infinite values in maps \[0\]"):
            lap_all([shallow, deep], variant=variant)


@pytest.mark.parametrize(
    ("decay", "error"), [("0.5", TypeError), (True, TypeError), (0, ValueError)]
)
def test_lap_explainer_decay_is_not_coerced(decay, error):
    with pytest.raises(error, match=r"decay must be a number in \(0, 1\]"):
        LapExplainer(lap_cnn(), decay=decay)
    with pytest.raises(error, match=r"decay must be a number in \(0, 1\]"):
        torchlap.explain(lap_cnn(), torch.rand(1, 3, 16, 16), "lap", decay=decay)


@pytest.mark.parametrize(
    ("concept_sets", "match"),
    [
        ({"a": [0]}, r"concept_sets keys must be class indices .* got 'a'"),
        ({0: [True]}, "concept index True for class 0 is not an int >= 0"),
        ({0: 1}, r"concept_sets\[0\] must be a list of concept indices"),
    ],
)
def test_concept_sets_are_checked_when_given_not_at_the_first_map(concept_sets, match):
    """Before: the explainer and the export module took them and failed after a forward."""
    from torchlap.export import LapExportModule

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), AdaptiveLocalAttentionPool2d(4, 1), nn.Flatten(), nn.Linear(4, 2)
    )
    calls = []
    model.register_forward_pre_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=match):
        LapExplainer(model, concept_sets=concept_sets)
    with pytest.raises(ValueError, match=match):
        LapExportModule(model, concept_sets=concept_sets)
    assert not calls


def test_concept_sets_that_fit_no_lap_layer_are_refused():
    """Sets naming head 3 on a model whose LAP layers have 1 and 2 heads were ignored at every
    layer (each fell back to its shape's choice), so the user's sets changed nothing."""
    from torchlap.export import LapExportModule

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), LocalAttentionPool2d(4, 2, n_concepts=2),
        AdaptiveLocalAttentionPool2d(4, 1), nn.Flatten(), nn.Linear(4, 2),
    )  # fmt: skip
    sets = {0: [0, 3], 1: [1]}
    match = r"concept head 3, but no LAP layer .* \(heads per layer: 1: 2, 2: 1\)"
    with pytest.raises(ValueError, match=match):
        LapExplainer(model, concept_sets=sets)
    with pytest.raises(ValueError, match=match):
        LapExportModule(model, concept_sets=sets)
    # sets fitting the 2-head layer are used there (the 1-head layer takes its only head)
    fitting = {0: [0], 1: [1]}
    images, target = torch.rand(2, 3, 12, 12), torch.tensor([0, 1])
    LapExplainer(model, concept_sets=fitting).raw(images, target)
    LapExportModule(model, concept_sets=fitting)(images)
