"""The LAP predictors of ``results["lap_predictors"]`` leave the common concepts out (paper 000,
section IV: the binary rule reads "a concept present only in the positive class"): an RSNA-like
layout with a common head and one positive-only head is scored by the binary rule."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

import torchlap.evaluate.lap_predictors as lap_predictors
from torchlap.evaluate.common import EvalData
from torchlap.losses import ConceptSets


class _ConceptsFromImages(nn.Module):
    """Its 'LAP maps' are the first two image channels (concept 0: common, 1: positive)."""

    def forward(self, x: Tensor) -> Tensor:
        self.last = x[:, :2]
        return x.flatten(1)[:, :2]


def _split(peaks: list[float], labels: list[int]) -> EvalData:
    images = torch.full((len(labels), 3, 3, 3), 0.1)
    images[:, 0] = 0.9  # the common concept is strong everywhere
    images[:, 1, 1, 1] = torch.tensor(peaks)
    masks = torch.zeros(len(labels), 3, 3, dtype=torch.bool)
    return EvalData(images, torch.tensor(labels), masks, masks.flatten(1).any(1), ["n", "p"], "s")


def test_binary_rule_reads_the_positive_only_concept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Class 0 owns only the common concept, so the binary rule applies, on concept 1 alone."""
    model = _ConceptsFromImages()
    monkeypatch.setattr(lap_predictors, "lap_modules", lambda _m: {"lap": model})
    monkeypatch.setattr(
        lap_predictors, "attention_maps", lambda m: {"lap": SimpleNamespace(concepts=m.last)}
    )
    sets = ConceptSets(torch.tensor([[True, False], [True, True]]))  # concept 0 in both classes
    test = _split([0.9, 0.2, 0.7, 0.3], [1, 0, 0, 0])
    val = _split([0.9, 0.2], [0, 0])  # one class only: no learned MLP
    predictions = torch.tensor([1, 0, 0, 1])
    out = lap_predictors.lap_predictor_results(
        model, test, val, predictions, sets, 2, torch.device("cpu")
    )
    entry = out["lap"]
    assert entry["rule"] == "binary"
    assert set(entry["rules"]) == {"binary"}
    # by hand: positive iff the concept-1 peak exceeds 0.5 -> [1, 0, 1, 0]
    labels, chosen = [1, 0, 0, 0], [1, 0, 1, 0]
    accuracy = sum(a == b for a, b in zip(chosen, labels, strict=True)) / 4
    agreement = sum(a == b for a, b in zip(chosen, predictions.tolist(), strict=True)) / 4
    values = {k: v["value"] for k, v in entry["rules"]["binary"].items()}
    assert accuracy in values.values() and agreement in values.values()


def test_learned_predictor_is_fitted_on_the_validation_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Table I's learned MLP is trained on the validation features F_C, never on the test's."""
    model = _ConceptsFromImages()
    monkeypatch.setattr(lap_predictors, "lap_modules", lambda _m: {"lap": model})
    monkeypatch.setattr(
        lap_predictors, "attention_maps", lambda m: {"lap": SimpleNamespace(concepts=m.last)}
    )
    fitted: list[tuple[Tensor, Tensor]] = []

    class Spy:
        def __init__(self, *_a: object, **_k: object) -> None:
            pass

        def fit(self, features: Tensor, labels: Tensor) -> None:
            fitted.append((features.clone(), labels.clone()))

        def predict(self, features: Tensor) -> Tensor:
            return torch.zeros(len(features), dtype=torch.long)

        def predict_top_k(self, features: Tensor, k: int) -> Tensor:
            return torch.zeros(len(features), k, dtype=torch.long)

    monkeypatch.setattr(lap_predictors, "LearnedConceptPredictor", Spy)
    test = _split([0.9, 0.2, 0.7, 0.3], [1, 0, 0, 0])
    val = _split([0.6, 0.1, 0.8], [1, 0, 1])
    lap_predictors.lap_predictor_results(
        model, test, val, torch.tensor([1, 0, 0, 1]), None, 2, torch.device("cpu")
    )
    ((features, labels),) = fitted
    assert labels.tolist() == [1, 0, 1]
    # F_C of the validation images by hand: the sum of each concept map over its 9 pixels
    expected = torch.tensor([[8.1, 0.8 + p] for p in (0.6, 0.1, 0.8)])
    torch.testing.assert_close(features, expected)
