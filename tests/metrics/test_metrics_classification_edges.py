"""Binary and multi-class model performance: what no other test pinned (found by mutation
testing): a metric over a single usable sample, the excluded counts, the (B, 2)-logits rule at
a near tie, and the refusals of empty or value-less scores. References are loops."""

from __future__ import annotations

import pytest
import torch

from torchlap.metrics import binary_classification_metrics, multiclass_classification_metrics


def test_single_positive_sample_and_excluded_counts():
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, 0, 0, 0])
    result = binary_classification_metrics(logits, labels)
    predicted = [int(row.argmax()) for row in logits]
    positives = [i for i in range(4) if labels[i] == 1]
    negatives = [i for i in range(4) if labels[i] == 0]
    sensitivity = sum(predicted[i] == 1 for i in positives) / len(positives)
    specificity = sum(predicted[i] == 0 for i in negatives) / len(negatives)
    assert result["sensitivity"].value == pytest.approx(sensitivity)  # one positive: defined
    assert (result["sensitivity"].n, result["sensitivity"].n_excluded) == (1, 3)
    assert result["specificity"].value == pytest.approx(specificity)
    assert (result["specificity"].n, result["specificity"].n_excluded) == (3, 1)
    assert result["balanced_accuracy"].value == pytest.approx((sensitivity + specificity) / 2)
    assert (result["accuracy"].n, result["accuracy"].n_excluded) == (4, 0)


def test_two_logits_at_a_near_tie_predict_their_argmax():
    """[0, 1e-20]: class 1 is the larger logit; a softmax (float32 or float64) rounds it to 0.5."""
    logits = torch.tensor([[0.0, 1e-20], [1e-20, 0.0]])
    result = binary_classification_metrics(logits, torch.tensor([1, 0]))
    assert result["accuracy"].value == 1.0


def test_scores_without_values_are_refused():
    with pytest.raises(ValueError, match="meta device"):
        binary_classification_metrics(torch.zeros(2, device="meta"), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=r"scores must be a torch\.Tensor"):
        binary_classification_metrics([0.2, 0.9], torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=r"\(B, 2\) scores must be floating logits"):
        binary_classification_metrics(torch.tensor([[0, 1], [1, 0]]), torch.tensor([0, 1]))


def test_a_probability_equal_to_the_threshold_is_negative():
    """Positive when the probability is *above* the threshold (torchmetrics' convention)."""
    scores = torch.tensor([0.25, 0.75, 0.5])
    result = binary_classification_metrics(scores, torch.tensor([0, 1, 1]), threshold=0.25)
    assert result["accuracy"].per_sample.tolist() == [1.0, 1.0, 1.0]
    result = binary_classification_metrics(scores, torch.tensor([0, 1, 0]), threshold=0.5)
    assert result["accuracy"].per_sample.tolist() == [1.0, 1.0, 1.0]


def test_probability_shapes_and_range():
    labels = torch.tensor([0, 1, 1])
    flat = binary_classification_metrics(torch.tensor([0.0, 1.0, 0.75]), labels)  # 0, 1 accepted
    column = binary_classification_metrics(torch.tensor([[0.0], [1.0], [0.75]]), labels)
    assert flat["accuracy"].per_sample.tolist() == [1.0, 1.0, 1.0]
    assert column["accuracy"].per_sample.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"scores must be \(B, 2\) two-class logits or"):
        binary_classification_metrics(torch.rand(3, 3), labels)
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=r"\(B,\) scores must be probabilities in \[0, 1\]"):
            binary_classification_metrics(torch.tensor([0.5, bad, 0.2]), labels)
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]"):
        binary_classification_metrics(torch.tensor([0.5, 0.5, 0.2]), labels, threshold=1.5)


def test_multiclass_refusals_at_their_boundaries():
    two = multiclass_classification_metrics(
        torch.tensor([[0.0, 1.0], [2.0, 0.0]]), torch.tensor([1, 1])
    )
    assert two["top1_accuracy"].per_sample.tolist() == [1.0, 0.0]  # two classes: accepted
    with pytest.raises(ValueError, match=r"need at least 2 classes"):
        multiclass_classification_metrics(torch.zeros(2, 1), torch.tensor([0, 0]))
    for bad in ([[0.0, 1.0]], torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, 1)):
        with pytest.raises(ValueError, match=r"logits must be a floating tensor of shape"):
            multiclass_classification_metrics(bad, torch.tensor([0, 1]))
    for bad in (torch.tensor([0, 3]), torch.tensor([4, 1])):
        with pytest.raises(ValueError, match="labels must be < num_classes = 3"):
            multiclass_classification_metrics(torch.zeros(2, 3), bad)
