"""Table I's LAP-predictor rule per layout and its top-5 (paper 000, section IV.C: ImageNet's
"2-layer MLP network to classify the samples according to F_C", Top-1 and Top-5 Acc.)."""

from __future__ import annotations

import pytest
import torch

from torchlap.metrics import (
    LearnedConceptPredictor,
    paper_primary_rule,
    top_k_lap_predictor_metrics,
)


def test_primary_rule_per_layout() -> None:
    # RSNA: binary; CelebA (two classes, own heads + a common one): concept sum; ImageNet: MLP
    assert paper_primary_rule(2, ["binary", "learned"]) == "binary"
    assert paper_primary_rule(2, ["concept_sum", "learned"]) == "concept_sum"
    assert paper_primary_rule(1000, ["concept_sum", "learned"]) == "learned"
    assert paper_primary_rule(10, ["concept_sum"]) == "concept_sum"
    with pytest.raises(ValueError, match="no LAP-predictor rule"):
        paper_primary_rule(3, [])
    with pytest.raises(ValueError, match="num_classes"):
        paper_primary_rule(1, ["learned"])


def test_top_k_agreement_matches_a_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    num_classes, batch, k = 12, 40, 5
    features = torch.rand(batch, num_classes, generator=generator)
    labels = torch.randint(0, num_classes, (batch,), generator=generator)
    model_predictions = torch.randint(0, num_classes, (batch,), generator=generator)
    predictor = LearnedConceptPredictor(num_classes, num_classes, epochs=5, seed=1)
    predictor.fit(features, labels)
    top = predictor.predict_top_k(features, k)
    logits = predictor(features).detach()
    hits_label, hits_model = 0, 0
    for s in range(batch):
        ranked = sorted(range(num_classes), key=lambda c, s=s: -float(logits[s, c]))[:k]
        assert sorted(top[s].tolist()) == sorted(ranked)
        hits_label += int(int(labels[s]) in ranked)
        hits_model += int(int(model_predictions[s]) in ranked)
    assert top[:, 0].tolist() == predictor.predict(features).tolist()
    out = top_k_lap_predictor_metrics(top, labels, model_predictions)
    assert set(out) == {"top5/predictivity", "top5/faithfulness"}
    assert out["top5/predictivity"].value == pytest.approx(hits_label / batch)
    assert out["top5/faithfulness"].value == pytest.approx(hits_model / batch)
    assert out["top5/predictivity"].higher_is_better
    with pytest.raises(ValueError, match="top_k"):
        top_k_lap_predictor_metrics(top[:, 0], labels, model_predictions)
    # float or negative class indices matched nothing instead of being refused
    with pytest.raises(TypeError, match="integer class indices"):
        top_k_lap_predictor_metrics(top.float(), labels, model_predictions)
    with pytest.raises(ValueError, match="non-negative"):
        top_k_lap_predictor_metrics(top - 100, labels, model_predictions)
    with pytest.raises(ValueError, match="k must be"):
        predictor.predict_top_k(features, 0)
