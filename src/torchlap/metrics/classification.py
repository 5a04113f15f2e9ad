"""Model performance (paper 000, Table I, "Model performance"): accuracy, sensitivity,
specificity and balanced accuracy for binary tasks, top-1/top-5 accuracy for multi-class
tasks. Values come from torchmetrics; the wrappers add the direction, the sample counts
and per-sample correctness.
"""

from __future__ import annotations

import logging
from types import ModuleType

import torch
from torch import Tensor

from torchlap._checks import check_has_values, check_number
from torchlap.metrics._common import MetricResult, check_labels, higher_is_better, topk_hits

__all__ = ["binary_classification_metrics", "multiclass_classification_metrics"]

logger = logging.getLogger(__name__)


def _torchmetrics() -> ModuleType:
    """``torchmetrics.functional.classification``, imported on first use: importing
    torchmetrics takes seconds (measured: 10 s after torch on a busy 2-core machine), and the
    ``torchlap`` command imports this module at start-up (``torchlap --help`` must not pay)."""
    import torchmetrics.functional.classification as functional

    return functional


def _result(name: str, value: Tensor | float, per_sample: Tensor, valid: Tensor) -> MetricResult:
    n = int(valid.sum().item())
    stored = torch.where(valid, per_sample.double(), float("nan"))
    return MetricResult(
        value=float(value) if n > 0 else float("nan"),
        higher_is_better=higher_is_better(name),
        n=n,
        n_excluded=valid.numel() - n,
        per_sample=stored,
    )


def _check_batch(scores: Tensor, name: str) -> None:
    """A non-empty batch with values (torchmetrics fails on an empty one with a reshape
    error)."""
    check_has_values(scores, name)
    if scores.shape[0] == 0:
        raise ValueError(
            f"{name} hold no sample (shape {tuple(scores.shape)}); the metrics need at least one"
        )


def _check_finite_logits(logits: Tensor, name: str) -> None:
    if not bool(torch.isfinite(logits).all()):
        raise ValueError(f"{name} hold NaN or infinite values; only finite logits are accepted")


def _binary_predictions(scores: Tensor, threshold: float) -> Tensor:
    """The predicted class (0/1) per sample: ``argmax`` of (B, 2) logits at the default
    threshold 0.5 (as everywhere else in torchlap: a float32 softmax rounds a near tie such as
    [0, 1e-8] to 0.5 and would call it negative), else ``probability > threshold``."""
    if isinstance(scores, Tensor) and scores.dim() == 2 and scores.shape[1] == 2:
        _positive_probabilities(scores)  # the checks: floating, finite, non-empty
        if threshold == 0.5:
            return scores.argmax(dim=1)
        return (scores.double().softmax(dim=1)[:, 1] > threshold).long()
    return (_positive_probabilities(scores) > threshold).long()


def _positive_probabilities(scores: Tensor) -> Tensor:
    if not isinstance(scores, Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores)}")
    if scores.dim() in (1, 2):
        _check_batch(scores, "scores")
    if scores.dim() == 2 and scores.shape[1] == 2:
        if not scores.is_floating_point():
            raise TypeError("(B, 2) scores must be floating logits")
        _check_finite_logits(scores, "(B, 2) scores")
        return scores.float().softmax(dim=1)[:, 1]
    if scores.dim() == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.dim() != 1:
        raise ValueError(
            "scores must be (B, 2) two-class logits or (B,) / (B, 1) positive-class "
            f"probabilities, got shape {tuple(scores.shape)}"
        )
    probabilities = scores.float()
    if bool(((probabilities < 0) | (probabilities > 1) | probabilities.isnan()).any()):
        raise ValueError(
            "(B,) scores must be probabilities in [0, 1]; pass torch.sigmoid(logits) for a "
            "single logit, or (B, 2) logits"
        )
    return probabilities


def binary_classification_metrics(
    scores: Tensor, labels: Tensor, threshold: float = 0.5
) -> dict[str, MetricResult]:
    """Accuracy, sensitivity (recall of class 1), specificity (recall of class 0) and
    balanced accuracy ``(sensitivity + specificity) / 2`` of a binary classifier.

    ``scores``: (B, 2) logits or (B,) positive-class probabilities; a sample is predicted
    positive when its probability is above ``threshold`` (torchmetrics' convention), except
    that (B, 2) logits at the default threshold 0.5 predict ``logits.argmax(1)``, the class
    every other torchlap metric reads (the same rule, without the float rounding of near
    ties); at another threshold their float64 softmax is thresholded. Sensitivity uses only
    positive samples and specificity only negative ones (the others count as excluded); a
    metric with no usable sample is ``nan``. ``scores``: finite, at least one sample;
    ``threshold``: a number in [0, 1].
    """
    check_number(threshold, "threshold", minimum=0.0, maximum=1.0, accepted="a number in [0, 1]")
    predicted = _binary_predictions(scores, float(threshold))
    labels = check_labels(labels, predicted.shape[0]).to(predicted.device)
    if bool((labels > 1).any()):
        raise ValueError("binary labels must be 0 or 1")
    correct = predicted == labels
    positive, negative = labels == 1, labels == 0
    everyone = torch.ones_like(positive)
    # balanced accuracy is undefined unless both classes occur
    both = everyone if bool(positive.any()) and bool(negative.any()) else ~everyone
    # macro-averaged per-class recall over the two classes = (sensitivity + specificity) / 2
    tm = _torchmetrics()
    balanced = tm.multiclass_accuracy(predicted, labels, num_classes=2, average="macro")
    return {
        # integer predictions: torchmetrics reads them as the predicted classes
        "accuracy": _result("accuracy", tm.binary_accuracy(predicted, labels), correct, everyone),
        "sensitivity": _result(
            "sensitivity", tm.binary_recall(predicted, labels), correct, positive
        ),
        "specificity": _result(
            "specificity", tm.binary_specificity(predicted, labels), correct, negative
        ),
        "balanced_accuracy": _result("balanced_accuracy", balanced, correct, both),
    }


def multiclass_classification_metrics(logits: Tensor, labels: Tensor) -> dict[str, MetricResult]:
    """Top-1 and top-5 accuracy of a multi-class classifier from (B, num_classes) logits.

    With fewer than 5 classes the second metric is top-t with t = num_classes, named
    ``"top{t}_accuracy"`` (a log message records it). ``logits``: finite, at least one sample.
    """
    if not isinstance(logits, Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError("logits must be a floating tensor of shape (B, num_classes)")
    num_classes = logits.shape[1]
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got logits of shape {tuple(logits.shape)}")
    _check_batch(logits, "logits")
    _check_finite_logits(logits, "logits")
    labels = check_labels(labels, logits.shape[0]).to(logits.device)
    if bool((labels >= num_classes).any()):
        raise ValueError(f"labels must be < num_classes = {num_classes}")
    top_t = min(5, num_classes)
    if top_t < 5:
        logger.warning("only %d classes: reporting top-%d instead of top-5", num_classes, top_t)
    everyone = torch.ones_like(labels, dtype=torch.bool)
    results = {}
    for t in (1, top_t):
        name = f"top{t}_accuracy"
        value = _torchmetrics().multiclass_accuracy(
            logits, labels, num_classes=num_classes, top_k=t, average="micro"
        )
        results[name] = _result(name, value, topk_hits(logits, labels, t), everyone)
    return results
