"""LAP predictors: what no other test pinned (found by mutation testing). The learned predictor
against a reference of its documented procedure (seeded init, standardization, shuffled
mini-batches, Adam, cross-entropy) written here, its forward pass by hand, the boundaries of
the checks and the refusals, each naming the argument and what is accepted."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from torchlap.metrics import (
    LearnedConceptPredictor,
    binary_rule,
    concept_size_features,
    paper_primary_rule,
    predictivity,
    top_k_lap_predictor_metrics,
)


def task(n=10, n_concepts=3, num_classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.rand(n, n_concepts, generator=generator) * 5
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    return features, labels


def reference_fit(features, labels, num_classes, hidden, epochs, lr, batch_size, seed):
    """The docstring's procedure: init under torch.manual_seed(seed), features standardized
    by the training mean and population std (at least 1e-6), every epoch one seeded shuffle
    in mini-batches, Adam on the cross-entropy."""
    n, n_concepts = features.shape
    saved = torch.random.get_rng_state()
    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(n_concepts, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    torch.random.set_rng_state(saved)
    mean = [sum(float(features[i, j]) for i in range(n)) / n for j in range(n_concepts)]
    std = []
    for j in range(n_concepts):
        var = sum((float(features[i, j]) - mean[j]) ** 2 for i in range(n)) / n
        std.append(max(var**0.5, 1e-6))
    z = (features - torch.tensor(mean)) / torch.tensor(std)
    optimizer = torch.optim.Adam(mlp.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(mlp(z[batch]), labels[batch])
            loss.backward()
            optimizer.step()
    return mlp, mean, std


@pytest.mark.parametrize("batch_size", [1, 4, 10])
def test_learned_predictor_follows_its_documented_procedure(batch_size):
    features, labels = task()
    features[:, 2] = 1.5  # a constant feature: std clamped to 1e-6
    torch.manual_seed(123)  # the global RNG state must not matter
    predictor = LearnedConceptPredictor(
        3, 3, hidden_features=5, epochs=3, lr=0.05, batch_size=batch_size, seed=7
    ).fit(features, labels)
    mlp, mean, std = reference_fit(features, labels, 3, 5, 3, 0.05, batch_size, 7)
    torch.testing.assert_close(predictor.feature_mean, torch.tensor(mean))
    torch.testing.assert_close(predictor.feature_std, torch.tensor(std))
    for got, expected in zip(predictor.mlp.parameters(), mlp.parameters(), strict=True):
        torch.testing.assert_close(got, expected)
    # forward by hand: z = (x - mean) / std, W2 relu(W1 z + b1) + b2
    x = features[:2] + 0.25
    w1, b1, w2, b2 = (p.detach() for p in mlp.parameters())
    for i in range(2):
        z = [(float(x[i, j]) - mean[j]) / std[j] for j in range(3)]
        h = [
            max(0.0, sum(float(w1[u, j]) * z[j] for j in range(3)) + float(b1[u])) for u in range(5)
        ]
        out = [sum(float(w2[c, u]) * h[u] for u in range(5)) + float(b2[c]) for c in range(3)]
        torch.testing.assert_close(
            predictor(x[i : i + 1])[0], torch.tensor(out), atol=1e-4, rtol=1e-4
        )


def test_learned_predictor_init_is_seeded_and_defaults_are_documented():
    torch.manual_seed(1)
    a = LearnedConceptPredictor(2, 2, seed=4)
    torch.manual_seed(2)
    b = LearnedConceptPredictor(2, 2, seed=4)
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(x, y)
    defaults = {
        k: v.default for k, v in inspect.signature(LearnedConceptPredictor).parameters.items()
    }
    assert defaults["hidden_features"] == 128 and defaults["epochs"] == 200
    assert defaults["lr"] == 1e-2 and defaults["batch_size"] == 256 and defaults["seed"] == 0
    assert inspect.signature(LearnedConceptPredictor.predict_top_k).parameters["k"].default == 5
    LearnedConceptPredictor(1, 2, hidden_features=1, batch_size=1)  # the smallest accepted
    with pytest.raises(ValueError, match="lr must be"):
        LearnedConceptPredictor(2, 2, lr=0.0)
    with pytest.raises(ValueError, match="seed must be"):
        LearnedConceptPredictor(2, 2, seed=-1)


def test_learned_predictor_refusals():
    predictor = LearnedConceptPredictor(3, 2, epochs=1)
    with pytest.raises(ValueError, match="predict_top_k called before fit"):
        predictor.predict_top_k(torch.rand(2, 3))
    with pytest.raises(TypeError, match="must be floating concept maps"):
        predictor.fit(torch.ones(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    nan = torch.rand(4, 3)
    nan[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        predictor.fit(nan, torch.zeros(4, dtype=torch.long))
    with pytest.raises(
        ValueError, match=r"concept maps \(B, h, H, W\) or features \(B, h\), got shape"
    ):
        predictor.fit(torch.rand(4, 3, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="got list"):
        predictor.fit([[1.0, 2.0, 3.0]], torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one sample"):
        predictor.fit(torch.rand(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must be < num_classes"):
        predictor.fit(torch.rand(4, 3), torch.tensor([0, 1, 2, 0]))


def test_concept_maps_refusals():
    with pytest.raises(ValueError, match="H, W >= 1"):
        concept_size_features(torch.zeros(2, 1, 0, 3))
    with pytest.raises(ValueError, match="top_k must hold non-negative class indices"):
        top_k_lap_predictor_metrics(
            torch.tensor([[1], [-1]]), torch.tensor([1, 1]), torch.tensor([0, 0])
        )
    with pytest.raises(ValueError, match="meta device"):
        concept_size_features(torch.zeros(2, 1, 3, 3, device="meta"))
    one_nan = torch.rand(2, 1, 3, 3)
    one_nan[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="concepts contain nan or inf values"):
        concept_size_features(one_nan)


def test_binary_rule_bounds_and_indices():
    concepts = torch.zeros(2, 3, 2, 2)
    concepts[0, 1, 0, 0] = 1.0  # exactly 1: a probability
    assert binary_rule(concepts).tolist() == [1, 0]
    for bad in (1.5, -0.1):
        odd = concepts.clone()
        odd[1, 2, 1, 1] = bad
        with pytest.raises(ValueError, match=r"concepts must hold probabilities in \[0, 1\]"):
            binary_rule(odd)
    assert binary_rule(concepts, positive_concepts=[2]).tolist() == [0, 0]
    for bad in ([0, 1.5], [0, 5], [3]):
        with pytest.raises((TypeError, ValueError), match=r"int concept indices in \[0, 3\)"):
            binary_rule(concepts, positive_concepts=bad)


def test_top_k_and_rule_refusals():
    one = top_k_lap_predictor_metrics(
        torch.tensor([[1], [0]]), torch.tensor([1, 1]), torch.tensor([0, 0])
    )
    assert one["top1/predictivity"].per_sample.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="meta device"):
        top_k_lap_predictor_metrics(
            torch.zeros(2, 1, dtype=torch.long, device="meta"),
            torch.tensor([1, 1]),
            torch.tensor([0, 0]),
        )
    with pytest.raises(ValueError, match=r"predictions must be a \(B,\) tensor"):
        predictivity(torch.tensor([[0, 1]]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"predictions must be a \(B,\) tensor"):
        predictivity([0, 1], torch.tensor([0, 1]))
    for bad in ("binary", 5):
        with pytest.raises(TypeError, match="available must be a list of rule names"):
            paper_primary_rule(2, bad)
