"""InjectionLoss end to end on a tiny hand-built CNN with two LAP layers."""

import pytest
import torch
from torch import nn

from torchlap import LocalAttentionPool2d, attention_maps
from torchlap.layers import LapMaps
from torchlap.losses import (
    DEFAULT_WEIGHTS,
    ConceptSets,
    InjectionLoss,
    concept_discrimination_loss,
    concordance_loss,
    discriminative_scorer_loss,
    enable_discriminative_scorers,
    expert_supervision_loss,
)
from torchlap.models.recipes import paper_loss_weights


def tiny_model(n_concepts=2, n_classes=2, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        LocalAttentionPool2d(4, 2, n_concepts=n_concepts),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        LocalAttentionPool2d(4, 2, n_concepts=n_concepts),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, n_classes),
    )
    for layer in (model[2], model[5]):  # leave the all-0.5 start: non-trivial maps
        nn.init.normal_(layer.scorer.heads[-1].weight)
    return model


def _batch():
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 8, 8, generator=gen)
    labels = torch.tensor([0, 1, 1, 0])
    masks = torch.zeros(4, 8, 8)
    masks[0, 4:8, 1:4] = 1
    masks[1, 2:5, 3:7] = 1
    masks[2, 0:3, 0:3] = 1
    masks[3, 5:7, 5:8] = 1
    return images, labels, masks


def test_weak_loss_is_the_weighted_sum_of_the_functional_terms():
    model = tiny_model()
    assert enable_discriminative_scorers(model) == ["2", "5"]
    images, labels, _ = _batch()
    logits = model(images)
    maps = attention_maps(model, detach=False)
    weights = {"discrimination": 0.5, "discriminative": 0.3, "concordance": 0.7}
    loss = InjectionLoss(ConceptSets.default(2, 2), 0.1, 0.5, 0.2, weights=weights)
    out = loss(maps, labels, logits=logits)
    assert set(out) == {*DEFAULT_WEIGHTS, "injection", "cross_entropy", "total"}

    present = torch.eye(2, dtype=torch.bool)[labels]
    layers = list(maps.values())
    disc = [
        concept_discrimination_loss(m.concepts, present, 0.1, 0.5, 0.2, m.discriminative)
        for m in layers
    ]
    scorer = [discriminative_scorer_loss(m.discriminative, present) for m in layers]
    conc = concordance_loss([m.concepts for m in layers], 0.1, "both")  # mean over 1 pair
    # the default layer_reduction="sum": the paper's weights are per LAP and per LAP pair
    torch.testing.assert_close(out["discrimination"], disc[0] + disc[1])
    torch.testing.assert_close(out["discriminative"], scorer[0] + scorer[1])
    torch.testing.assert_close(out["concordance"], conc)
    assert out["expert"].item() == 0.0
    injection = 0.5 * out["discrimination"] + 0.3 * out["discriminative"] + 0.7 * conc
    torch.testing.assert_close(out["injection"], injection)
    ce = nn.functional.cross_entropy(logits, labels)
    torch.testing.assert_close(out["total"], ce + injection)
    assert all(torch.isfinite(v) for v in out.values())

    out["total"].backward()
    for layer in (model[2], model[5]):
        assert layer.scorer.heads[-1].weight.grad.abs().sum() > 0
        assert layer.discriminative_scorer.heads[-1].weight.grad.abs().sum() > 0
    assert model[0].weight.grad.abs().sum() > 0


def test_injection_gradient_does_not_reach_the_discriminative_scorer_through_the_selector():
    model = tiny_model()
    enable_discriminative_scorers(model)
    images, labels, _ = _batch()
    model(images)
    weights = {"discriminative": 0.0, "concordance": 0.0}
    out = InjectionLoss(ConceptSets.default(2, 2), weights=weights)(
        attention_maps(model, detach=False), labels
    )
    out["injection"].backward()
    for layer in (model[2], model[5]):
        grads = [p.grad for p in layer.discriminative_scorer.parameters()]
        assert all(g is None or g.abs().sum() == 0 for g in grads)
        assert layer.scorer.heads[-1].weight.grad.abs().sum() > 0


def test_expert_mode_splits_samples_and_keeps_common_heads_weak():
    model = tiny_model(n_concepts=3)
    enable_discriminative_scorers(model)
    images, labels, masks = _batch()
    model(images)
    maps = attention_maps(model, detach=False)
    has_region = torch.tensor([True, True, False, False])
    sets = ConceptSets.default(2, 3)  # head 2 is common
    loss = InjectionLoss(sets, supervision="expert")  # the paper's half by default
    assert loss.expert_positive_fraction == 0.5
    out = loss(maps, labels, region_masks=masks, has_region=has_region)

    present = sets.presence(labels)
    # Eq. 5 for the common head and for the present concepts of samples without a region,
    # over N_c of all the head's positives (boxed or not); the negatives of the other heads
    # get term 3 inside the expert loss
    weak = (present & ~has_region[:, None]) | torch.tensor([False, False, True])[None, :]
    expected_disc, expected_expert = [], []
    for m in maps.values():
        expected_disc.append(
            concept_discrimination_loss(
                m.concepts, present, 0.1, 0.5, 0.1, m.discriminative, include=weak,
                counted=weak | present,
            )
        )  # fmt: skip
        expected_expert.append(
            expert_supervision_loss(
                m.concepts,
                masks,
                present,
                has_region,
                iar=0.1,
                heads=torch.tensor([True, True, False]),
                positive_fraction=0.5,
                selector=m.discriminative,
            )
        )
    torch.testing.assert_close(out["discrimination"], torch.stack(expected_disc).sum())
    torch.testing.assert_close(out["expert"], torch.stack(expected_expert).sum())
    assert out["expert"].item() > 0
    # no concordance term in expert mode unless asked for (Appendix A names none)
    assert out["concordance"].item() > 0 and loss.weights["concordance"] == 0.0
    expected = 0.25 * (out["discrimination"] + out["discriminative"] + out["expert"])
    torch.testing.assert_close(out["injection"], expected)
    with_concordance = InjectionLoss(sets, supervision="expert", weights={"concordance": 0.25})
    out2 = with_concordance(maps, labels, region_masks=masks, has_region=has_region)
    torch.testing.assert_close(out2["injection"], expected + 0.25 * out["concordance"])
    out["injection"].backward()


def test_expert_mode_without_has_region_uses_every_mask():
    model = tiny_model()
    images, labels, masks = _batch()
    model(images)
    maps = attention_maps(model, detach=False)
    loss = InjectionLoss(ConceptSets.default(2, 2), supervision="expert", use_discriminative=False)
    out = loss(maps, labels, region_masks=masks)
    assert out["discrimination"].item() == 0.0  # every sample supervised by its mask
    with pytest.raises(ValueError, match="region_masks"):
        loss(maps, labels)


def test_a_positive_flagged_has_region_with_an_empty_mask_gets_eq5_and_is_said_once(caplog):
    """Before: its empty region trained "this concept nowhere" on an image that contains it."""
    model = tiny_model()
    images, labels, masks = _batch()
    masks[0] = 0  # sample 0 (class 0, concept 0 present): flagged, no region pixel
    model(images)
    maps = attention_maps(model, detach=False)
    sets = ConceptSets.default(2, 2)
    loss = InjectionLoss(sets, supervision="expert", use_discriminative=False)
    with caplog.at_level("WARNING", logger="torchlap.losses.injection"):
        out = loss(maps, labels, region_masks=masks, has_region=torch.ones(4, dtype=torch.bool))
        loss(maps, labels, region_masks=masks, has_region=torch.ones(4, dtype=torch.bool))
    unflagged = torch.tensor([False, True, True, True])
    same = InjectionLoss(sets, supervision="expert", use_discriminative=False)
    expected = same(maps, labels, region_masks=masks, has_region=unflagged)
    for key in ("discrimination", "expert", "injection"):
        torch.testing.assert_close(out[key], expected[key])
    assert out["discrimination"].item() > 0  # Eq. 5 for sample 0's concept
    said = [r for r in caplog.records if "empty mask" in r.getMessage()]
    assert len(said) == 1 and "1 sample(s)" in said[0].getMessage()


def test_supervision_none_is_cross_entropy_only_unless_concordance_is_weighted():
    model = tiny_model()
    images, labels, _ = _batch()
    model(images)
    maps = attention_maps(model, detach=False)
    out = InjectionLoss(ConceptSets.default(2, 2), supervision="none")(maps, labels)
    for name in ("discrimination", "discriminative", "expert"):
        assert out[name].item() == 0.0
    assert out["concordance"].item() > 0  # logged
    assert out["injection"].item() == 0.0  # the paper's "No L" ablation
    only = InjectionLoss(ConceptSets.default(2, 2), supervision="none", weights={"concordance": 1})
    torch.testing.assert_close(only(maps, labels)["injection"], out["concordance"])


def test_missing_discriminative_scorer_gives_a_clear_error():
    model = tiny_model()
    images, labels, _ = _batch()
    model(images)
    with pytest.raises(ValueError, match="enable_discriminative_scorers"):
        InjectionLoss(ConceptSets.default(2, 2))(attention_maps(model, detach=False), labels)


def test_single_layer_binary_task():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        LocalAttentionPool2d(4, 2, n_concepts=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 1),
    )
    enable_discriminative_scorers(model)
    images, labels, _ = _batch()
    logits = model(images)
    out = InjectionLoss(ConceptSets.default(2, 1))(
        attention_maps(model, detach=False), labels, logits=logits
    )
    assert out["concordance"].item() == 0.0
    bce = nn.functional.binary_cross_entropy_with_logits(logits.flatten(), labels.float())
    torch.testing.assert_close(out["cross_entropy"], bce)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"min_ar": 0.6, "max_ar": 0.4}, ValueError, "must not exceed"),
        ({"iar": 0.0}, ValueError, r"\(0, 1\]"),
        ({"max_ar": 1.2}, ValueError, r"\(0, 1\]"),
        ({"supervision": "strong"}, ValueError, "supervision"),
        ({"concordance_mode": "low_high"}, ValueError, "concordance_mode"),
        ({"concordance_threshold": 1.0}, ValueError, "concordance_threshold"),
        ({"weights": {"discrimnation": 1.0}}, ValueError, "unknown loss weights"),
        ({"weights": {"expert": -1.0}}, ValueError, ">= 0"),
        ({"mask_resize": "nearest"}, ValueError, "mask_resize"),
        ({"expert_positive_fraction": 0.0}, ValueError, "expert_positive_fraction"),
        ({"expert_negative_pixels": "half"}, ValueError, "expert_negative_pixels"),
        ({"weights": {"concordance": float("nan")}}, ValueError, "finite number >= 0"),
        ({"weights": {"cross_entropy": float("inf")}}, ValueError, "finite number >= 0"),
        ({"weights": {"expert": "0.25"}}, TypeError, "weights\\['expert'\\]"),
        ({"use_discriminative": "no"}, TypeError, "use_discriminative must be True or False"),
        ({"eps": 5}, ValueError, r"eps must be a number in \(0, 0.5\)"),
        ({"eps": "x"}, TypeError, r"eps must be a number in \(0, 0.5\)"),
        ({"expert_positive_fraction": True}, TypeError, "expert_positive_fraction"),
        ({"layer_reduction": "median"}, ValueError, "layer_reduction must be one of"),
        ({"expert_positive_ranking": "x"}, ValueError, "expert_positive_ranking"),
        (
            {"expert_positive_ranking": "discriminative", "use_discriminative": False},
            ValueError,
            "use_discriminative",
        ),
    ],
)
def test_constructor_validates(kwargs, error, match):
    with pytest.raises(error, match=match):
        InjectionLoss(ConceptSets.default(2, 2), **kwargs)
    with pytest.raises(TypeError, match="ConceptSets"):
        InjectionLoss({0: [0], 1: [1]})


def test_forward_validates():
    model = tiny_model()
    images, labels, masks = _batch()
    logits = model(images)
    maps = attention_maps(model, detach=False)
    loss = InjectionLoss(ConceptSets.default(2, 2), use_discriminative=False)
    with pytest.raises(ValueError, match="concept sets have 3"):
        InjectionLoss(ConceptSets.default(3, 3), use_discriminative=False)(maps, labels)
    with pytest.raises(ValueError, match="batch"):
        loss(maps, labels[:2])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        loss(maps, labels + 1)
    with pytest.raises(ValueError, match="non-empty dict"):
        loss({}, labels)
    with pytest.raises(ValueError, match="logits"):
        loss(maps, labels, logits=logits[:, :1].repeat(1, 3))
    expert = InjectionLoss(
        ConceptSets.default(2, 2), supervision="expert", use_discriminative=False
    )
    with pytest.raises(ValueError, match="has_region"):
        expert(maps, labels, region_masks=masks, has_region=torch.ones(3, dtype=torch.bool))


def three_lap_model(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        LocalAttentionPool2d(4, 2, n_concepts=2),
        nn.Conv2d(4, 4, 3, padding=1),
        LocalAttentionPool2d(4, 2, n_concepts=2),
        nn.Conv2d(4, 4, 3, padding=1),
        LocalAttentionPool2d(4, 2, n_concepts=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    for layer in (model[1], model[3], model[5]):
        nn.init.normal_(layer.scorer.heads[-1].weight)
    return model


def test_default_weighs_each_lap_and_each_pair_as_the_paper_and_training_matches_it():
    # Appendix A: "weights of 1, 0.25 per LAP, and 0.25 per LAP pair": three LAP layers, two
    # pairs; the weighted terms are added, not averaged
    model = three_lap_model()
    enable_discriminative_scorers(model)
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 1, 0])
    logits = model(images)
    maps = attention_maps(model, detach=False)
    sets = ConceptSets.default(2, 2)
    out = InjectionLoss(sets)(maps, labels, logits=logits)
    present = sets.presence(labels)
    layers = list(maps.values())
    concepts = [m.concepts for m in layers]
    disc = [
        concept_discrimination_loss(m.concepts, present, selector=m.discriminative) for m in layers
    ]
    scorer = [discriminative_scorer_loss(m.discriminative, present) for m in layers]
    pairs = [concordance_loss(concepts[i : i + 2]) for i in range(2)]
    expected = 0.25 * (sum(disc) + sum(scorer) + sum(pairs))
    torch.testing.assert_close(out["injection"], expected)
    torch.testing.assert_close(out["concordance"], sum(pairs))
    # torchlap train: layer means weighted by paper_loss_weights, the same total
    training = InjectionLoss(sets, layer_reduction="mean", weights=paper_loss_weights(3, "weak"))
    trained = training(maps, labels, logits=logits)
    torch.testing.assert_close(trained["total"], out["total"])
    torch.testing.assert_close(trained["discrimination"], sum(disc) / 3)
    torch.testing.assert_close(trained["concordance"], sum(pairs) / 2)


def test_forward_refuses_maps_that_are_not_probabilities():
    model = tiny_model()
    enable_discriminative_scorers(model)
    images, labels, masks = _batch()
    model(images)
    maps = attention_maps(model, detach=False)
    name, lap = next(iter(maps.items()))
    logits_maps = {**maps, name: LapMaps(lap.concepts * 10 - 5, lap.score, lap.discriminative)}
    with pytest.raises(ValueError, match=r"concepts must hold probabilities in \[0, 1\]"):
        InjectionLoss(ConceptSets.default(2, 2))(logits_maps, labels)
    nan_disc = lap.discriminative.detach().clone()
    nan_disc[0, 0, 0, 0] = float("nan")
    nan_maps = {**maps, name: LapMaps(lap.concepts, lap.score, nan_disc)}
    with pytest.raises(ValueError, match=r"discriminative must hold probabilities.*NaN"):
        InjectionLoss(ConceptSets.default(2, 2))(nan_maps, labels)
    expert = InjectionLoss(ConceptSets.default(2, 2), supervision="expert")
    with pytest.raises(ValueError, match=r"region_masks must hold values in \[0, 1\]"):
        expert(maps, labels, region_masks=torch.full_like(masks, float("nan")))
