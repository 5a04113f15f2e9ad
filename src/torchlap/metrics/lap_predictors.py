"""LAP layers as standalone predictors (paper 000, section IV, Table I).

Each LAP layer's concept maps (B, h, H, W) give a prediction without the rest of the
network:

- :func:`binary_rule` (RSNA): positive when any pixel of the concept map is above 0.5;
- :func:`concept_sum_rule` (CelebA): the class whose concept maps have the larger sum;
- :class:`LearnedConceptPredictor` (ImageNet): a 2-layer MLP on the concept size features
  ``F_C`` (per-concept sums of pixel importances), trained on the validation split; Table I
  reports its top-1 and top-5 agreement (:func:`top_k_lap_predictor_metrics`).

:func:`paper_primary_rule` names the rule Table I uses for a layout: ``binary`` (RSNA) or
``concept_sum`` (CelebA) for two classes, the ``learned`` MLP for more (ImageNet).

*Predictivity* is the agreement of these predictions with the ground truth,
*faithfulness* the agreement with the model's own predictions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torchlap._checks import (
    check_has_values,
    check_int,
    check_number,
    check_positive_float,
    check_positive_int,
    check_seed,
    is_int,
    is_integer_tensor,
)
from torchlap._hooks import kept_training_flags
from torchlap.metrics._common import MetricResult, check_labels, make_result

__all__ = [
    "PRIMARY_RULE_ORDER",
    "LearnedConceptPredictor",
    "binary_rule",
    "concept_size_features",
    "concept_sum_rule",
    "faithfulness",
    "lap_predictor_metrics",
    "paper_primary_rule",
    "predictivity",
    "top_k_lap_predictor_metrics",
]

# Table I's rule by number of classes, in order of preference among the rules that apply
PRIMARY_RULE_ORDER: dict[str, tuple[str, ...]] = {
    "two_classes": ("binary", "concept_sum", "learned"),
    "more_classes": ("learned", "concept_sum", "binary"),
}

logger = logging.getLogger(__name__)


def _concepts(concepts: object) -> Tensor:
    """A (B, h, H, W) floating tensor from a tensor or a LapMaps-like object (``.concepts``)."""
    tensor = getattr(concepts, "concepts", concepts)
    if not isinstance(tensor, Tensor):
        raise TypeError(
            "concepts must be a (B, n_concepts, H, W) tensor or an object with a `.concepts` "
            f"tensor (torchlap.layers.LapMaps), got {type(concepts)}"
        )
    if tensor.dim() != 4 or not tensor.is_floating_point() or 0 in tensor.shape[2:]:
        raise ValueError(
            "concepts must be a floating tensor of shape (B, n_concepts, H, W), H, W >= 1, got "
            f"shape {tuple(tensor.shape)} and dtype {tensor.dtype}"
        )
    check_has_values(tensor, "concepts")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError("concepts contain nan or inf values")
    return tensor.detach()


def concept_size_features(concepts: Tensor) -> Tensor:
    """Concept size features ``F_C`` (paper 000, section IV): the sum of the pixels'
    importances in each concept map, (B, h, H, W) -> (B, h)."""
    return _concepts(concepts).sum(dim=(2, 3))


def _concept_indices(indices: Sequence[int] | None, n_concepts: int, what: str) -> list[int]:
    """Concept indices as ints, never coerced: ``1.7`` or ``"1"`` is refused, not read as 1."""
    if indices is None:
        return list(range(n_concepts))
    accepted = f"a non-empty list of int concept indices in [0, {n_concepts})"
    if isinstance(indices, (str, bytes, Tensor)) or not isinstance(indices, Sequence):
        raise TypeError(f"{what} must be {accepted}, got {indices!r}")
    chosen = list(indices)
    if not all(is_int(i) for i in chosen):
        raise TypeError(f"{what} must be {accepted}, got {chosen!r}")
    if not chosen or any(i < 0 or i >= n_concepts for i in chosen):
        raise ValueError(f"{what} must be {accepted}, got {chosen!r}")
    return chosen


def binary_rule(
    concepts: Tensor,
    threshold: float = 0.5,
    positive_concepts: Sequence[int] | None = None,
) -> Tensor:
    """Binary LAP predictor (paper 000, section IV, RSNA): 1 when at least one pixel of the
    concept map(s) has probability strictly above ``threshold`` (0.5), else 0.

    With several concepts, ``positive_concepts`` names the maps that signal the positive
    class (default: all of them; any pixel of any of them suffices). Returns (B,) long.
    ``threshold``: a number in [0, 1]; ``concepts``: probabilities in [0, 1] (outside, a
    threshold above 1 or below 0 predicts one class for every image); ``positive_concepts``:
    None or a non-empty list of int indices.
    """
    check_number(
        threshold, "threshold", minimum=0.0, maximum=1.0,
        accepted="a number in [0, 1] (the concept maps hold probabilities)",
    )  # fmt: skip
    tensor = _concepts(concepts)
    if tensor.numel() and bool((tensor.amin() < 0) | (tensor.amax() > 1)):
        raise ValueError(
            "concepts must hold probabilities in [0, 1] (a LAP layer's sigmoid outputs, not "
            f"logits); they hold values from {float(tensor.amin()):.3g} to "
            f"{float(tensor.amax()):.3g}"
        )
    chosen = _concept_indices(positive_concepts, tensor.shape[1], "positive_concepts")
    return (tensor[:, chosen] > threshold).flatten(1).any(dim=1).long()


def concept_sum_rule(concepts: Tensor, class_to_concepts: Sequence[Sequence[int]]) -> Tensor:
    """Concept-sum LAP predictor (paper 000, section IV, CelebA): the class whose concept
    maps have the larger total importance, ``argmax_c Σ_{j ∈ concepts(c)} F_C[j]``.

    ``class_to_concepts[c]`` lists the concept indices of class c (e.g. ``[[0], [1]]``).
    Sums are not divided by the number of concepts per class. Ties go to the lowest class
    index. Returns (B,) long. Each ``class_to_concepts[c]`` is a non-empty list of int
    concept indices.
    """
    features = concept_size_features(concepts)
    n_concepts = features.shape[1]
    if (
        isinstance(class_to_concepts, (str, bytes))
        or not isinstance(class_to_concepts, Sequence)
        or len(class_to_concepts) < 2
    ):
        raise ValueError(
            "class_to_concepts must list the concept indices of at least 2 classes, "
            f"e.g. [[0], [1]]; got {class_to_concepts!r}"
        )
    # filled on the host from the Python lists, then one copy to the features' device
    assignment = torch.zeros(len(class_to_concepts), n_concepts, dtype=features.dtype, device="cpu")
    for class_index, indices in enumerate(class_to_concepts):
        chosen = _concept_indices(indices, n_concepts, f"class_to_concepts[{class_index}]")
        assignment[class_index, chosen] = 1.0
    scores = features @ assignment.to(features.device).T
    return scores.argmax(dim=1)


class LearnedConceptPredictor(nn.Module):
    """Learned LAP predictor (paper 000, section IV, ImageNet): a 2-layer MLP on the concept
    size features ``F_C`` (Linear(h, hidden) -> ReLU -> Linear(hidden, num_classes)).

    The paper gives no hyper-parameters; ours: features standardized with the training
    mean/std (sums over pixels have arbitrary scale), ``hidden_features=128``, Adam with
    learning rate 1e-2, ``epochs=200`` of shuffled mini-batches of 256, cross-entropy. The
    seed fixes initialization and shuffling without touching the global RNG. Fit on the
    validation split, then :meth:`predict` the test split. Inputs to :meth:`fit`,
    :meth:`forward` and :meth:`predict` are concept maps (B, h, H, W) (or LapMaps) or
    already-computed features (B, h).
    """

    def __init__(
        self,
        n_concepts: int,
        num_classes: int,
        hidden_features: int = 128,
        *,
        epochs: int = 200,
        lr: float = 1e-2,
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value, minimum in (
            ("n_concepts", n_concepts, 1),
            ("num_classes", num_classes, 2),
            ("hidden_features", hidden_features, 1),
            ("epochs", epochs, 1),
            ("batch_size", batch_size, 1),
        ):
            check_int(value, name, minimum=minimum)
        check_positive_float(lr, "lr")
        check_seed(seed)
        self.n_concepts, self.num_classes = n_concepts, num_classes
        self.epochs, self.lr, self.batch_size, self.seed = epochs, lr, batch_size, seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.mlp = nn.Sequential(
                nn.Linear(n_concepts, hidden_features),
                nn.ReLU(),
                nn.Linear(hidden_features, num_classes),
            )
        self.register_buffer("feature_mean", torch.zeros(n_concepts))
        self.register_buffer("feature_std", torch.ones(n_concepts))
        self.fitted = False

    def _features(self, concepts_or_features: Tensor) -> Tensor:
        name, accepted = "concepts_or_features", "concept maps (B, h, H, W) or features (B, h)"
        if isinstance(concepts_or_features, Tensor) and concepts_or_features.dim() == 2:
            features = check_has_values(concepts_or_features, name)
            if not features.is_floating_point():
                raise TypeError(f"{name} must be floating {accepted}, got {features.dtype}")
            if not bool(torch.isfinite(features).all()):
                raise ValueError(
                    f"{name} (B, n_concepts) contain NaN or infinite values; only finite concept "
                    "size features are accepted"
                )
        elif not isinstance(concepts_or_features, Tensor) or concepts_or_features.dim() != 4:
            got = (
                f"shape {tuple(concepts_or_features.shape)}"
                if isinstance(concepts_or_features, Tensor)
                else type(concepts_or_features).__name__
            )
            raise ValueError(f"{name} must be {accepted}, got {got}")
        else:
            features = concept_size_features(concepts_or_features)
        if features.shape[1] != self.n_concepts:
            raise ValueError(
                f"concepts_or_features: expected {self.n_concepts} concepts, got "
                f"{features.shape[1]} (input shape {tuple(features.shape)})"
            )
        return features.to(self.feature_mean.device, self.feature_mean.dtype)

    def forward(self, concepts_or_features: Tensor) -> Tensor:
        """Logits (B, num_classes) for concept maps (B, h, H, W) or features (B, h)."""
        features = self._features(concepts_or_features)
        return self.mlp((features - self.feature_mean) / self.feature_std)

    def fit(self, concepts_or_features: Tensor, labels: Tensor) -> LearnedConceptPredictor:
        """Train on the validation split (full passes over shuffled mini-batches)."""
        features = self._features(concepts_or_features).detach()
        if features.shape[0] == 0:
            raise ValueError("fit needs at least one sample; concepts_or_features has none")
        labels = check_labels(labels, features.shape[0]).to(features.device)
        if bool((labels >= self.num_classes).any()):
            raise ValueError(f"labels must be < num_classes = {self.num_classes}")
        self.feature_mean.copy_(features.mean(dim=0))
        self.feature_std.copy_(features.std(dim=0, unbiased=False).clamp_min(1e-6))
        generator = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.Adam(self.mlp.parameters(), lr=self.lr)
        loss_fn = nn.CrossEntropyLoss()
        last_loss = features.new_tensor(float("nan"))
        with kept_training_flags(self), torch.enable_grad():  # every flag back, also on error
            self.train()
            for _ in range(self.epochs):
                order = torch.randperm(features.shape[0], generator=generator, device="cpu")
                order = order.to(features.device)
                for start in range(0, features.shape[0], self.batch_size):
                    batch = order[start : start + self.batch_size]
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(self(features[batch]), labels[batch])
                    loss.backward()
                    optimizer.step()
                    last_loss = loss.detach()
        self.fitted = True
        logger.info("LearnedConceptPredictor fitted, final mini-batch loss %.4f", float(last_loss))
        return self

    def predict_top_k(self, concepts_or_features: Tensor, k: int = 5) -> Tensor:
        """The ``k`` classes of highest logit, best first (B, k) long; requires :meth:`fit`.
        ``k`` larger than ``num_classes`` is cut to ``num_classes``."""
        check_positive_int(k, "k")
        if not self.fitted:
            raise ValueError("LearnedConceptPredictor.predict_top_k called before fit()")
        with torch.no_grad():
            return self(concepts_or_features).topk(min(k, self.num_classes), dim=1).indices

    def predict(self, concepts_or_features: Tensor) -> Tensor:
        """Predicted classes (B,) long; requires :meth:`fit` first."""
        if not self.fitted:
            raise ValueError("LearnedConceptPredictor.predict called before fit()")
        with torch.no_grad():
            return self(concepts_or_features).argmax(dim=1)


def _agreement(name: str, predictions: Tensor, reference: Tensor, what: str) -> MetricResult:
    if not isinstance(predictions, Tensor) or predictions.dim() != 1:
        raise ValueError("predictions must be a (B,) tensor of class indices")
    predictions = check_labels(predictions, predictions.shape[0], "predictions")
    reference = check_labels(reference, predictions.shape[0], what)
    if reference.device != predictions.device:
        raise ValueError(f"{what} is on {reference.device}, predictions on {predictions.device}")
    return make_result(name, (predictions == reference).double())


def predictivity(predictions: Tensor, labels: Tensor) -> MetricResult:
    """Predictivity of a LAP predictor: accuracy of its predictions w.r.t. the ground
    truth (paper 000, Table I, "LAP predictions")."""
    return _agreement("predictivity", predictions, labels, "labels")


def faithfulness(predictions: Tensor, model_predictions: Tensor) -> MetricResult:
    """Faithfulness of a LAP predictor: agreement of its predictions with the model's own
    predictions (paper 000, Table I, "Faithfulness to model")."""
    return _agreement("faithfulness", predictions, model_predictions, "model_predictions")


def lap_predictor_metrics(
    predictions: Tensor, labels: Tensor, model_predictions: Tensor
) -> dict[str, MetricResult]:
    """``{"predictivity": ..., "faithfulness": ...}`` for one LAP layer's predictions."""
    return {
        "predictivity": predictivity(predictions, labels),
        "faithfulness": faithfulness(predictions, model_predictions),
    }


def paper_primary_rule(num_classes: int, available: Sequence[str]) -> str:
    """The LAP-predictor rule Table I of paper 000 reports for a layout, among ``available``.

    Two classes: the RSNA ``binary`` rule (a positive-only concept above 0.5 anywhere), else
    the CelebA ``concept_sum``. More classes: the ImageNet ``learned`` 2-layer MLP on ``F_C``
    ("it is not straightforward to evaluate the LAP's predictivity" with many concepts), else
    ``concept_sum``. Raises ``ValueError`` when none of them is available.
    """
    check_int(num_classes, "num_classes", minimum=2)
    if isinstance(available, (str, bytes)) or not isinstance(available, Sequence):
        raise TypeError(f"available must be a list of rule names, got {available!r:.80}")
    order = PRIMARY_RULE_ORDER["two_classes" if num_classes == 2 else "more_classes"]
    for rule in order:
        if rule in available:
            return rule
    raise ValueError(f"no LAP-predictor rule available; expected some of {order}, got {available}")


def top_k_lap_predictor_metrics(
    top_k: Tensor, labels: Tensor, model_predictions: Tensor
) -> dict[str, MetricResult]:
    """Top-k predictivity and faithfulness of a ranked LAP predictor (paper 000, Table I,
    ImageNet "Top-5 Acc."): the share of samples whose label (predictivity) or whose model
    prediction (faithfulness) is among the predictor's ``k`` best classes. ``top_k``: (B, k)
    class indices, e.g. :meth:`LearnedConceptPredictor.predict_top_k`. Keys
    ``"top{k}/predictivity"`` and ``"top{k}/faithfulness"``.
    """
    if not isinstance(top_k, Tensor) or top_k.dim() != 2 or top_k.shape[1] < 1:
        raise ValueError(f"top_k must be a (B, k) tensor of class indices, got {top_k!r:.80}")
    if not is_integer_tensor(top_k):
        raise TypeError(f"top_k must hold integer class indices, got dtype {top_k.dtype}")
    check_has_values(top_k, "top_k")
    if top_k.numel() and bool((top_k < 0).any()):
        raise ValueError("top_k must hold non-negative class indices")
    batch, k = top_k.shape
    out = {}
    for name, reference, what in (
        ("predictivity", labels, "labels"),
        ("faithfulness", model_predictions, "model_predictions"),
    ):
        reference = check_labels(reference, batch, what)
        if reference.device != top_k.device:
            raise ValueError(f"{what} is on {reference.device}, top_k on {top_k.device}")
        hit = (top_k == reference[:, None]).any(dim=1).double()
        out[f"top{k}/{name}"] = make_result(f"top{k}/{name}", hit)
    return out
