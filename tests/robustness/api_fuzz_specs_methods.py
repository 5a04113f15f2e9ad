"""Valid arguments of public methods, module forwards and the option records (training
phases, evaluation options, export) for the API fuzzer (``api_fuzz``). A method is swept
through a function of the same parameters that builds a fresh object and calls it."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from api_fuzz import Spec
from torch import Tensor

import torchlap
from torchlap import io, layers, losses, metrics, models, report
from torchlap.evaluate import EvaluateOptions
from torchlap.export import LapExportModule
from torchlap.train import PhaseConfig, parse_phase

_FORWARD = "a forward pass reads no value (no device sync): NaN propagates"
_FORWARD_NAN = {"x": {"nan": _FORWARD, "inf": _FORWARD}}
_LABEL = "a word of the messages only (the caller's name of the option), never parsed"


def _g(*shape: int) -> Tensor:
    """A seeded random tensor (uniform in [0, 1))."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))


def _predictor() -> metrics.LearnedConceptPredictor:
    return metrics.LearnedConceptPredictor(2, 3, 4, epochs=1, batch_size=2)


def fit(concepts_or_features: Tensor, labels: Tensor) -> list[Tensor]:
    """:meth:`LearnedConceptPredictor.fit` of a fresh predictor: its fitted state."""
    torch.manual_seed(0)
    return list(_predictor().fit(concepts_or_features, labels).state_dict().values())


def predict(concepts_or_features: Tensor) -> Tensor:
    """:meth:`LearnedConceptPredictor.predict` of a fitted predictor."""
    return _predictor().fit(_g(3, 2), torch.tensor([0, 1, 2])).predict(concepts_or_features)


def predict_top_k(concepts_or_features: Tensor, k: int = 5) -> Tensor:
    """:meth:`LearnedConceptPredictor.predict_top_k` of a fitted predictor."""
    fitted = _predictor().fit(_g(3, 2), torch.tensor([0, 1, 2]))
    return fitted.predict_top_k(concepts_or_features, k)


def presence(labels: Tensor) -> Tensor:
    """:meth:`ConceptSets.presence` of a three-class, two-concept table."""
    table = torch.tensor([[True, False], [False, True], [True, True]])
    return losses.ConceptSets(table).presence(labels)


def lap_forward(x: Tensor) -> Tensor:
    """A :class:`LocalAttentionPool2d` pass."""
    torch.manual_seed(0)
    return layers.LocalAttentionPool2d(4, 2, n_concepts=2, hidden_channels=4)(x)


def adaptive_lap_forward(x: Tensor) -> Tensor:
    """An :class:`AdaptiveLocalAttentionPool2d` pass."""
    torch.manual_seed(0)
    return layers.AdaptiveLocalAttentionPool2d(4, 2, n_concepts=2, hidden_channels=4)(x)


def scorer_forward(x: Tensor) -> tuple[Tensor, Tensor]:
    """A :class:`ConceptScorer` pass."""
    torch.manual_seed(0)
    return layers.ConceptScorer(4, n_concepts=2, hidden_channels=4)(x)


def normalize_forward(x: Tensor) -> Tensor:
    """A :class:`Normalize` pass."""
    return models.Normalize([0.5, 0.5, 0.5], [0.2, 0.2, 0.2])(x)


def small_cnn_forward(x: Tensor) -> Tensor:
    """A lapified :class:`SmallCNN` pass (eval mode)."""
    torch.manual_seed(0)
    model, _ = torchlap.lapify(models.SmallCNN(num_classes=3, width=4))
    return model.eval()(x)


def phase(
    epochs: int,
    lr: float = 1e-3,
    train: str = "all",
    optimizer: str = "adam",
    weight_decay: float = 1e-6,
    schedule: str = "cosine",
    momentum: float = 0.9,
) -> PhaseConfig:
    """A :class:`PhaseConfig`, validated."""
    config = PhaseConfig(epochs, lr, train, optimizer, weight_decay, schedule, momentum)
    config.validate()
    return config


def evaluate_options(
    split: str = "test",
    batch_size: int = 32,
    max_images: int | None = None,
    ks: tuple[float, ...] = (10, 30),
    baseline: str = "zero",
    stability_images: int = 16,
    stability_fractions: tuple[float, ...] = (0.1, 0.2),
    ties: str = "random",
    tie_draws: int = 4,
    target: str = "prediction",
    lime_samples: int = 1000,
    seed: int = 0,
    bootstrap_resamples: int = 2000,
    bootstrap_level: float = 0.95,
) -> EvaluateOptions:
    """:class:`EvaluateOptions`, validated (the fields a user sets most)."""
    options = EvaluateOptions(
        split=split, batch_size=batch_size, max_images=max_images, ks=ks, baseline=baseline,
        stability_images=stability_images, stability_fractions=stability_fractions, ties=ties,
        tie_draws=tie_draws, target=target, lime_samples=lime_samples, seed=seed,
        bootstrap_resamples=bootstrap_resamples, bootstrap_level=bootstrap_level,
    )  # fmt: skip
    options.validate()
    return options


def _export_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model, _ = torchlap.lapify(models.SmallCNN(num_classes=3, width=4))
    return model.eval()


def _png() -> str:
    return str(Path(tempfile.mkdtemp(prefix="api_fuzz_")) / "figure.png")


def plot_lap_layers(
    image: Tensor,
    concept_maps: Mapping[str, Tensor],
    path: str,
    *,
    concept_names: Sequence[str] | None = None,
    max_concepts: int = 10,
    overwrite: bool = False,
) -> Path:
    """:func:`torchlap.report.plot_lap_layers`."""
    return report.plot_lap_layers(
        image, concept_maps, path, concept_names=concept_names, max_concepts=max_concepts,
        overwrite=overwrite,
    )  # fmt: skip


SPECS = [
    Spec(
        "LearnedConceptPredictor.fit",
        fit,
        lambda: {"concepts_or_features": _g(3, 2), "labels": torch.tensor([0, 1, 2])},
        batch=("concepts_or_features", "labels"),
    ),
    Spec(
        "LearnedConceptPredictor.predict",
        predict,
        lambda: {"concepts_or_features": _g(3, 2)},
        batch=("concepts_or_features",),
    ),
    Spec(
        "LearnedConceptPredictor.predict_top_k",
        predict_top_k,
        lambda: {"concepts_or_features": _g(3, 2), "k": 2},
        batch=("concepts_or_features",),
        positives=("k",),
    ),
    Spec(
        "ConceptSets.presence",
        presence,
        lambda: {"labels": torch.tensor([0, 1, 2])},
        batch=("labels",),
    ),
    Spec(
        "LocalAttentionPool2d.forward",
        lap_forward,
        lambda: {"x": _g(3, 4, 8, 8)},
        batch=("x",),
        allow=_FORWARD_NAN,
        names={"x": "LocalAttentionPool2d"},
    ),
    Spec(
        "AdaptiveLocalAttentionPool2d.forward",
        adaptive_lap_forward,
        lambda: {"x": _g(3, 4, 8, 8)},
        batch=("x",),
        allow=_FORWARD_NAN,
        names={"x": "AdaptiveLocalAttentionPool2d"},
    ),
    Spec(
        "ConceptScorer.forward",
        scorer_forward,
        lambda: {"x": _g(3, 4, 8, 8)},
        batch=("x",),
        allow=_FORWARD_NAN,
        names={"x": "ConceptScorer"},
    ),
    Spec(
        "Normalize.forward",
        normalize_forward,
        lambda: {"x": _g(3, 3, 8, 8)},
        batch=("x",),
        allow=_FORWARD_NAN,
        names={"x": "images"},
    ),
    Spec(
        "SmallCNN.forward",
        small_cnn_forward,
        lambda: {"x": _g(3, 3, 16, 16)},
        batch=("x",),
        allow=_FORWARD_NAN,
        names={"x": "SmallCNN"},
    ),
    Spec(
        "PhaseConfig",
        phase,
        lambda: {
            "epochs": 2,
            "lr": 1e-3,
            "train": "all",
            "optimizer": "adam",
            "weight_decay": 1e-6,
            "schedule": "cosine",
            "momentum": 0.9,
        },
        positives=("epochs", "lr"),
        choices=("optimizer", "schedule"),
        names={"lr": "learning rate"},
    ),
    Spec(
        "parse_phase",
        parse_phase,
        lambda: {"text": "lap:2:1e-4", "lr": 1e-3, "optimizer": "adam"},
        positives=("lr",),
        choices=("text", "optimizer"),
        names={"text": "phase"},
    ),
    Spec(
        "EvaluateOptions",
        evaluate_options,
        lambda: {
            "split": "test",
            "batch_size": 8,
            "max_images": 10,
            "ks": (10, 30),
            "baseline": "zero",
            "stability_images": 4,
            "stability_fractions": (0.1, 0.2),
            "ties": "random",
            "tie_draws": 2,
            "target": "prediction",
            "lime_samples": 100,
            "seed": 0,
            "bootstrap_resamples": 100,
            "bootstrap_level": 0.95,
        },
        positives=(
            "batch_size",
            "max_images",
            "stability_images",
            "tie_draws",
            "lime_samples",
            "bootstrap_level",
        ),
        choices=("split", "baseline", "ties", "target"),
    ),
    Spec(
        "LapExportModule",
        LapExportModule,
        lambda: {"model": _export_model(), "decay": 0.8, "threshold": 0.5},
        positives=("decay",),
    ),
    Spec(
        "loads_strict",
        io.loads_strict,
        lambda: {"text": '{"a": 1}', "what": "--options", "keys": "key"},
        names={"text": "--options"},
        allow={
            "what": {"none": _LABEL, "int": _LABEL},
            "keys": {"none": _LABEL, "int": _LABEL},
        },
    ),
    Spec(
        "plot_lap_layers",
        plot_lap_layers,
        lambda: {
            "image": _g(3, 16, 16),
            "concept_maps": {"layer3.pool": _g(2, 8, 8)},
            "path": _png(),
            "concept_names": ["a", "b"],
            "max_concepts": 10,
            "overwrite": False,
        },
        writes="path",
        positives=("max_concepts",),
        allow={"image": {"rank+1": "(1, C, H, W) is one image too (documented)"}},
        slow=True,
    ),
]
