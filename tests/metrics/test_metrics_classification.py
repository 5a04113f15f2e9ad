"""Model performance metrics against counting references."""

from __future__ import annotations

import math

import pytest
import torch

from torchlap.metrics import binary_classification_metrics, multiclass_classification_metrics


def ref_binary(probabilities, labels, threshold):
    tp = tn = fp = fn = 0
    for p, y in zip(probabilities.tolist(), labels.tolist(), strict=True):
        predicted = 1 if p > threshold else 0
        tp += predicted == 1 and y == 1
        tn += predicted == 0 and y == 0
        fp += predicted == 1 and y == 0
        fn += predicted == 0 and y == 1
    sensitivity = tp / (tp + fn) if tp + fn else float("nan")
    specificity = tn / (tn + fp) if tn + fp else float("nan")
    return {
        "accuracy": (tp + tn) / len(labels),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "balanced_accuracy": (sensitivity + specificity) / 2,
    }


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_metrics_match_reference(threshold):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 2, generator=generator)
    labels = torch.randint(0, 2, (40,), generator=generator)
    results = binary_classification_metrics(logits, labels, threshold)
    expected = ref_binary(logits.softmax(1)[:, 1], labels, threshold)
    for name, value in expected.items():
        torch.testing.assert_close(results[name].value, value, rtol=1e-5, atol=1e-6)
        assert results[name].higher_is_better
    assert results["sensitivity"].n == int(labels.sum())
    assert results["specificity"].n == int((labels == 0).sum())
    # (B,) probabilities give the same numbers
    again = binary_classification_metrics(logits.softmax(1)[:, 1], labels, threshold)
    assert {k: v.value for k, v in again.items()} == {k: v.value for k, v in results.items()}


def test_binary_metrics_without_positives_are_undefined_not_zero():
    probabilities = torch.tensor([0.2, 0.7, 0.1])
    labels = torch.zeros(3, dtype=torch.long)
    results = binary_classification_metrics(probabilities, labels)
    assert results["sensitivity"].n == 0 and math.isnan(results["sensitivity"].value)
    assert results["sensitivity"].to_dict()["value"] is None
    assert results["balanced_accuracy"].n == 0
    assert results["specificity"].value == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="probabilities"):
        binary_classification_metrics(torch.tensor([2.0, -1.0, 0.3]), labels)
    with pytest.raises(ValueError, match="0 or 1"):
        binary_classification_metrics(probabilities, torch.tensor([0, 2, 1]))


def test_non_finite_logits_and_empty_batches_are_refused():
    labels = torch.tensor([0, 1, 0, 1])
    # NaN logits scored accuracy 0.5 (binary), top-1 0.25 and top-3 1.0 (multi-class)
    with pytest.raises(ValueError, match="NaN or infinite"):
        binary_classification_metrics(torch.full((4, 2), float("nan")), labels)
    with pytest.raises(ValueError, match="NaN or infinite"):
        binary_classification_metrics(torch.tensor([[0.0, float("inf")]] * 4), labels)
    with pytest.raises(ValueError, match="NaN or infinite"):
        multiclass_classification_metrics(torch.full((4, 3), float("nan")), labels)
    # an empty batch failed inside torchmetrics with a reshape error
    with pytest.raises(ValueError, match="no sample"):
        binary_classification_metrics(torch.rand(0), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="no sample"):
        binary_classification_metrics(torch.rand(0, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="no sample"):
        multiclass_classification_metrics(torch.rand(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(TypeError, match=r"threshold must be a number in \[0, 1\]"):
        binary_classification_metrics(torch.rand(4), labels, "0.5")
    with pytest.raises(ValueError, match="threshold"):
        binary_classification_metrics(torch.rand(4), labels, float("nan"))


def test_multiclass_topk_matches_reference(caplog):
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 8, generator=generator)
    labels = torch.randint(0, 8, (50,), generator=generator)
    results = multiclass_classification_metrics(logits, labels)
    for t in (1, 5):
        hits = 0
        for row, y in zip(logits, labels, strict=True):
            rank = sum(float(v) > float(row[y]) for v in row)  # classes scored above y
            hits += rank < t
        torch.testing.assert_close(results[f"top{t}_accuracy"].value, hits / 50)
    with caplog.at_level("WARNING"):
        few = multiclass_classification_metrics(logits[:, :3], labels % 3)
    assert set(few) == {"top1_accuracy", "top3_accuracy"} and few["top3_accuracy"].value == 1.0
    assert "top-3" in caplog.text
    with pytest.raises(ValueError, match="num_classes"):
        multiclass_classification_metrics(logits, labels + 8)
