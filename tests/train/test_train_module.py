"""ClassifierModule pieces: phase freezing, frozen batch norm, metrics against loops."""

from __future__ import annotations

import math

import pytest
import torch

from torchlap.layers import lap_modules
from torchlap.models import lapify
from torchlap.train import NormalizedClassifier, PhaseConfig, SmallCNN
from torchlap.train.module import ClassifierModule, classification_summary, set_trainable


def _lap_model(norm: str = "batch") -> NormalizedClassifier:
    net = SmallCNN(2, in_channels=1, norm=norm)
    lapify(net, where="auto", n_concepts=1)
    return NormalizedClassifier(net, [0.5], [0.25])


def test_lap_phase_trains_only_lap_parameters() -> None:
    model = _lap_model()
    names = set(set_trainable(model, PhaseConfig(1, train="lap")))
    lap_names = {
        f"net.{layer}.{p}"
        for layer, module in lap_modules(model.net).items()
        for p, _ in module.named_parameters()
    }
    assert names == lap_names and names
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad == (name in lap_names)


def test_named_phase_targets_and_everything() -> None:
    model = _lap_model()
    names = set_trainable(model, PhaseConfig(1, train="layer3,fc"))
    assert names and all(n.startswith(("net.layer3.", "net.fc.")) for n in names)
    assert set_trainable(model, PhaseConfig(1, train="net.fc")) == ["net.fc.weight", "net.fc.bias"]
    everything = set_trainable(model, PhaseConfig(1, train="all"))
    assert everything == [n for n, _ in model.named_parameters()]


def test_unknown_phase_module_is_refused() -> None:
    model = _lap_model()
    with pytest.raises(ValueError, match=r"does not have; top-level modules: \['layer1'"):
        set_trainable(model, PhaseConfig(1, train="layer9,fc"))
    vanilla = NormalizedClassifier(SmallCNN(2, 1), [0.5], [0.25])
    with pytest.raises(ValueError, match="no LAP layer"):
        set_trainable(vanilla, PhaseConfig(1, train="lap"))


def test_a_phase_selecting_no_parameter_leaves_the_flags_as_they_were() -> None:
    """Before: every parameter was frozen first and the empty selection refused afterwards, so
    the ValueError left the whole model frozen (a caller catching it trained nothing)."""
    model = _lap_model()
    set_trainable(model, PhaseConfig(1, train="layer3,fc"))
    before = [(name, p.requires_grad) for name, p in model.named_parameters()]
    with pytest.raises(ValueError, match="selects no trainable parameter"):
        set_trainable(model, PhaseConfig(1, train="layer1.relu,layer2.relu"))
    assert [(name, p.requires_grad) for name, p in model.named_parameters()] == before


def test_frozen_batch_norm_runs_in_eval_mode_during_lap_phase() -> None:
    model = _lap_model()
    module = ClassifierModule(model, 2, None, [PhaseConfig(1, train="lap")], seed=0)
    module.set_phase(0)
    module.train()
    module.on_train_batch_start(None, 0)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(m.training for m in lap_modules(model).values())
    before = [m.running_mean.clone() for m in bns]
    model(torch.rand(4, 1, 32, 32))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns, strict=True))


@pytest.mark.parametrize(("optimizer", "momentum"), [("sgd", 0.5), ("sgd", 0.0), ("sgd", 0.9)])
def test_the_sgd_optimizer_gets_the_phase_momentum(optimizer: str, momentum: float) -> None:
    phase = PhaseConfig(1, 1e-3, "all", optimizer, 1e-6, "constant", momentum)
    module = ClassifierModule(_lap_model(), 2, None, [phase], seed=0)
    module.set_phase(0)
    sgd = module.configure_optimizers()
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == momentum
    assert sgd.param_groups[0]["weight_decay"] == 1e-6


def test_batch_seed_depends_on_batch_only() -> None:
    module = ClassifierModule(_lap_model(), 2, None, [PhaseConfig(1)], seed=7)
    module.set_phase(0)
    module.on_train_batch_start(None, 3)
    a = torch.rand(4)
    torch.rand(10)  # whatever happened in between
    module.on_train_batch_start(None, 3)
    assert torch.equal(torch.rand(4), a)
    module.on_train_batch_start(None, 4)
    assert not torch.equal(torch.rand(4), a)


def _reference(predictions: list[int], labels: list[int], n_classes: int) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, balanced accuracy by explicit counting."""
    recalls, specificities = [], []
    for c in range(n_classes):
        tp = sum(1 for p, y in zip(predictions, labels, strict=True) if y == c and p == c)
        fn = sum(1 for p, y in zip(predictions, labels, strict=True) if y == c and p != c)
        tn = sum(1 for p, y in zip(predictions, labels, strict=True) if y != c and p != c)
        fp = sum(1 for p, y in zip(predictions, labels, strict=True) if y != c and p == c)
        # a class absent from the labels has no recall (and the only class no specificity)
        recalls.append(tp / (tp + fn) if tp + fn else math.nan)
        specificities.append(tn / (tn + fp) if tn + fp else math.nan)
    correct = sum(1 for p, y in zip(predictions, labels, strict=True) if p == y)

    def mean_of_defined(values: list[float]) -> float:
        defined = [v for v in values if not math.isnan(v)]
        return sum(defined) / len(defined) if defined else math.nan

    if n_classes == 2:
        sensitivity, specificity = recalls[1], recalls[0]
    else:
        sensitivity = mean_of_defined(recalls)
        specificity = mean_of_defined(specificities)
    return {
        "accuracy": correct / len(labels),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "balanced_accuracy": mean_of_defined(recalls),
    }


@pytest.mark.parametrize(("n_classes", "present"), [(2, 2), (3, 3), (2, 1), (3, 2)])
def test_epoch_metrics_match_counting(n_classes: int, present: int) -> None:
    """``present < n_classes``: a split that lacks a class (a tiny test split) gives NaN for
    that class's recall, not torchmetrics' 0 of a zero division."""
    torch.manual_seed(n_classes)
    module = ClassifierModule(_lap_model(), n_classes, None, [PhaseConfig(1)], seed=0)
    labels = torch.arange(40) % present
    logits = torch.randn(40, n_classes)
    for chunk in range(4):  # several batches accumulate into one epoch value
        part = slice(chunk * 10, (chunk + 1) * 10)
        module._update("val", {"cross_entropy": torch.tensor(float(chunk))}, logits[part],
                       labels[part])  # fmt: skip
    result = module._compute("val")
    expected = _reference(logits.argmax(1).tolist(), labels.tolist(), n_classes)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
    if present < n_classes:
        assert math.isfinite(result["balanced_accuracy"])  # the epoch selection reads it
        if n_classes == 2:
            assert math.isnan(result["sensitivity"])  # no positive sample
    assert result["loss_cross_entropy"] == pytest.approx(1.5)  # mean over equal-size batches
    # the states were reset: the next epoch sees only its own batches
    module._update("val", {"cross_entropy": torch.tensor(7.0)}, logits[:5], labels[:5])
    again = module._compute("val")
    assert again["loss_cross_entropy"] == pytest.approx(7.0)
    expected = _reference(logits[:5].argmax(1).tolist(), labels[:5].tolist(), n_classes)
    assert again["accuracy"] == pytest.approx(expected["accuracy"])


def test_summary_of_two_classes_is_recall_per_class() -> None:
    out = classification_summary(torch.tensor(0.7), torch.tensor([0.6, 0.8]), torch.ones(2))
    assert out["sensitivity"] == pytest.approx(0.8)
    assert out["specificity"] == pytest.approx(0.6)
    assert out["balanced_accuracy"] == pytest.approx(0.7)
