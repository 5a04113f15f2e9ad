"""LAP layers as standalone predictors (paper 000, section IV)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from torchlap.layers import LapMaps
from torchlap.metrics import (
    LearnedConceptPredictor,
    binary_rule,
    concept_size_features,
    concept_sum_rule,
    faithfulness,
    lap_predictor_metrics,
    predictivity,
)


def concept_maps(seed, batch=8, n_concepts=3, size=5):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, n_concepts, size, size, generator=generator) * 0.6


def ref_binary(concepts, threshold, positive):
    out = []
    for sample in concepts:
        hit = False
        for j in positive:
            for value in sample[j].flatten().tolist():
                hit = hit or value > threshold
        out.append(int(hit))
    return out


def ref_concept_sum(concepts, class_to_concepts):
    out = []
    for sample in concepts:
        sums = [sum(float(sample[j].sum()) for j in idx) for idx in class_to_concepts]
        best = max(range(len(sums)), key=lambda c: (sums[c], -c))  # ties -> lowest class
        out.append(best)
    return out


@pytest.mark.parametrize("positive", [None, [0], [1, 2]])
def test_binary_rule_matches_reference(positive):
    concepts = concept_maps(0)  # values in [0, 0.6): some maps cross 0.5, some do not
    concepts[2] = 0.5  # exactly 0.5 is not "above 0.5"
    got = binary_rule(concepts, positive_concepts=positive)
    expected = ref_binary(concepts, 0.5, positive if positive is not None else [0, 1, 2])
    assert got.tolist() == expected
    assert got.dtype == torch.long and 0 < sum(expected) < len(expected)


def test_concept_indices_and_threshold_are_not_coerced():
    concepts = concept_maps(0)
    # NaN predicted all zeros; 1.7 and "1" were read as concept 1 by int()
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]"):
        binary_rule(concepts, float("nan"))
    with pytest.raises(TypeError, match="threshold"):
        binary_rule(concepts, "0.5")
    for bad in ([1.7], ["1"], [True], 1, "1"):
        with pytest.raises(TypeError, match="positive_concepts must be a non-empty list of int"):
            binary_rule(concepts, positive_concepts=bad)
    # [[0], [0.9]] mapped both classes to concept 0
    with pytest.raises(TypeError, match=r"class_to_concepts\[1\] must be .* int concept"):
        concept_sum_rule(concepts, [[0], [0.9]])


def test_concept_sum_rule_matches_reference_and_ties():
    concepts = concept_maps(1, n_concepts=4)
    mapping = [[0], [1, 3], [2]]
    assert concept_sum_rule(concepts, mapping).tolist() == ref_concept_sum(concepts, mapping)
    tied = torch.full((2, 2, 3, 3), 0.25)
    assert concept_sum_rule(tied, [[0], [1]]).tolist() == [0, 0]
    with pytest.raises(ValueError, match="class_to_concepts"):
        concept_sum_rule(concepts, [[0]])
    with pytest.raises(ValueError, match=r"class_to_concepts\[1\]"):
        concept_sum_rule(concepts, [[0], [9]])


def test_lapmaps_objects_are_accepted():
    concepts = concept_maps(2)
    maps = LapMaps(concepts=concepts, score=concepts.amax(dim=1, keepdim=True))
    assert torch.equal(binary_rule(maps), binary_rule(concepts))
    assert torch.equal(
        concept_size_features(SimpleNamespace(concepts=concepts)), concepts.sum((2, 3))
    )
    with pytest.raises(ValueError, match="n_concepts"):
        binary_rule(concepts[0])
    with pytest.raises(TypeError, match="LapMaps"):
        binary_rule([1, 2, 3])


def size_coded_task(seed, n=300, num_classes=3, size=6):
    """Class c has a large concept map c: F_C carries the label."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    concepts = torch.rand(n, num_classes, size, size, generator=generator) * 0.3
    concepts[torch.arange(n), labels] += 0.5
    return concepts, labels


def test_learned_predictor_learns_and_is_seeded():
    val_concepts, val_labels = size_coded_task(0)
    test_concepts, test_labels = size_coded_task(1)
    rng_before = torch.random.get_rng_state()
    first = LearnedConceptPredictor(3, 3, hidden_features=16, epochs=20, seed=3)
    first.fit(val_concepts, val_labels)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG untouched
    predictions = first.predict(test_concepts)
    assert predictivity(predictions, test_labels).value > 0.95
    second = LearnedConceptPredictor(3, 3, hidden_features=16, epochs=20, seed=3)
    second.fit(concept_size_features(val_concepts), val_labels)  # features work as input too
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert first.training  # the flag it had before fit() is restored
    second.eval()
    second.fit(val_concepts, val_labels)
    assert not second.training


def test_learned_predictor_validation():
    with pytest.raises(ValueError, match="num_classes"):
        LearnedConceptPredictor(3, 1)
    predictor = LearnedConceptPredictor(3, 2, epochs=1)
    with pytest.raises(ValueError, match="before fit"):
        predictor.predict(torch.rand(2, 3))
    with pytest.raises(ValueError, match="expected 3 concepts"):
        predictor.fit(torch.rand(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="num_classes"):
        predictor.fit(torch.rand(4, 3), torch.full((4,), 2))


def test_predictivity_and_faithfulness_reference():
    predictions = torch.tensor([0, 1, 1, 0, 2])
    labels = torch.tensor([0, 1, 0, 0, 1])
    model_predictions = torch.tensor([0, 1, 1, 1, 2])
    result = lap_predictor_metrics(predictions, labels, model_predictions)
    assert result["predictivity"].value == pytest.approx(3 / 5)
    assert result["faithfulness"].value == pytest.approx(4 / 5)
    assert result["predictivity"].higher_is_better and result["faithfulness"].n == 5
    assert predictivity(predictions, labels).to_dict()["value"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="shape"):
        faithfulness(predictions, model_predictions[:2])
    with pytest.raises(TypeError, match="integer"):
        predictivity(predictions.float(), labels)


def test_binary_rule_takes_probabilities_and_a_threshold_in_0_1():
    # a threshold of 2 predicted 0 for every image and -1 predicted 1; logits (values from -5)
    # were thresholded as if they were probabilities
    concepts = concept_maps(0)
    for threshold in (2.0, -1.0, 1.5):
        with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\] \(the "):
            binary_rule(concepts, threshold)
    with pytest.raises(
        ValueError, match=r"concepts must hold probabilities in \[0, 1\] .* from -5"
    ):
        binary_rule(concepts - 5)
    assert binary_rule(concepts, 1.0).tolist() == [0] * concepts.shape[0]  # the ends are taken
    binary_rule(concepts, 0.0)


@pytest.mark.parametrize("fail", [False, True])
def test_fit_gives_back_each_submodules_own_train_flag(fail: bool, monkeypatch) -> None:
    """Before: fit restored the flag of the predictor with ``train(was_training)``, which set
    every submodule to the predictor's flag (an MLP layer the caller had in eval mode came
    back in train mode)."""
    predictor = LearnedConceptPredictor(3, 3, hidden_features=4, epochs=2, seed=0)
    predictor.train()
    predictor.mlp[1].eval()
    before = [m.training for m in predictor.modules()]
    features = torch.randn(8, 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    if fail:

        def interrupted(*args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(torch.optim.Adam, "step", interrupted)
        with pytest.raises(KeyboardInterrupt):
            predictor.fit(features, labels)
    else:
        predictor.fit(features, labels)
    assert [m.training for m in predictor.modules()] == before
