"""Training objectives: what :class:`~torchlap.train.ClassifierModule` minimises for a model.

Each model family (:mod:`torchlap.models.recipes`) names its objective; the Lightning module
calls it on a batch and logs its terms, without knowing which family it trains:

- :class:`CrossEntropyObjective`: cross-entropy alone (the vanilla network, the BLA family);
- :class:`OneHotBCEObjective`: binary cross-entropy on one-hot targets (the B-cos recipe of the
  ``bcos`` package), logged under ``"cross_entropy"`` like the others;
- :class:`InjectionObjective`: cross-entropy plus the knowledge-injection terms of
  :class:`torchlap.losses.InjectionLoss` on the maps the LAP layers left in the same forward
  pass (paper 000, section III.B);
- :class:`AnteHocObjective`: both passes of paper 004, section 2.1, in one step on
  ``total = task + interpret``: pass one is the cross-entropy of the CNN's logits (Eq. 2; the
  logits do not depend on the weight network, so it gets no gradient from it), pass two is
  :func:`~torchlap.models.antehoc.antehoc_pass_two_loss` (Eq. 3) on the normalized images,
  whose graph reaches only the weight network (the backbone runs on detached parameters). The
  sum gives each network the gradient of its own pass; one optimizer steps both. Unlike the
  paper's alternation, pass two sees the CNN before this step's update, not after it.

An objective is called as ``objective(model, batch)`` (``batch``: ``"image"``, ``"label"`` and,
for expert supervision, ``"mask"``/``"has_region"``) and returns ``(loss, terms, logits)``:
the loss to minimise, its detached terms by name (the names of :attr:`Objective.terms`) and the
class logits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from torchlap.layers import attention_maps, clear_attention_maps
from torchlap.losses import InjectionLoss
from torchlap.models.antehoc import AnteHocModel, antehoc_pass_two_loss

__all__ = [
    "INJECTION_TERMS",
    "AnteHocObjective",
    "CrossEntropyObjective",
    "InjectionObjective",
    "Objective",
    "OneHotBCEObjective",
]

# the terms InjectionLoss returns with logits (their epoch means are logged)
INJECTION_TERMS = (
    "total",
    "cross_entropy",
    "injection",
    "discrimination",
    "discriminative",
    "expert",
    "concordance",
)

LossTerms = tuple[Tensor, dict[str, Tensor], Tensor]


def _detached(terms: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: value.detach() for name, value in terms.items()}


class Objective:
    """The loss a model family trains with; subclasses set :attr:`terms` and ``__call__``."""

    #: names of the terms ``__call__`` returns (the losses logged per epoch)
    terms: tuple[str, ...] = ("cross_entropy",)
    #: the task loss, as config.json's ``losses.task_loss`` names it
    task_loss: str = "cross_entropy"

    def bind(self, model: nn.Module) -> None:
        """Check that ``model`` is one this objective trains (called once, before training)."""

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> LossTerms:
        """``(loss, detached terms, logits)`` of one batch."""
        raise NotImplementedError(f"{type(self).__name__} does not define __call__")


class CrossEntropyObjective(Objective):
    """Cross-entropy of the class logits (the vanilla network, the BLA family)."""

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> LossTerms:
        """Cross-entropy of ``model(batch["image"])`` against ``batch["label"]``."""
        logits = model(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        return loss, {"cross_entropy": loss.detach()}, logits


class OneHotBCEObjective(Objective):
    """Binary cross-entropy on one-hot targets (the B-cos recipe of the ``bcos`` package)."""

    task_loss = "binary_cross_entropy"

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> LossTerms:
        """BCE of every logit against the one-hot label (logged as ``cross_entropy``)."""
        logits = model(batch["image"])
        one_hot = F.one_hot(batch["label"], logits.shape[1]).to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, one_hot)
        return loss, {"cross_entropy": loss.detach()}, logits


class InjectionObjective(Objective):
    """Cross-entropy + the knowledge-injection loss of the LAP layers (paper 000, III.B)."""

    terms = INJECTION_TERMS

    def __init__(self, injection: InjectionLoss) -> None:
        if not isinstance(injection, InjectionLoss):
            raise TypeError(
                f"InjectionObjective needs a torchlap.losses.InjectionLoss, got "
                f"{type(injection).__name__}"
            )
        self.injection = injection

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> LossTerms:
        """``InjectionLoss`` on this forward pass's LAP maps (its ``total`` is the loss)."""
        logits = model(batch["image"])
        maps = attention_maps(model, detach=False)
        terms = self.injection(
            maps,
            batch["label"],
            region_masks=batch.get("mask"),
            has_region=batch.get("has_region"),
            logits=logits,
        )
        # the maps hold the graph; drop them now rather than at the next forward pass
        clear_attention_maps(model)
        return terms["total"], _detached(terms), logits


def _antehoc_of(model: nn.Module) -> tuple[AnteHocModel, Callable[[Tensor], Tensor]]:
    """The ante-hoc model inside ``model`` and the map from ``model``'s input to its input."""
    if isinstance(model, AnteHocModel):
        return model, nn.Identity()  # (a module, not a lambda: the module stays picklable)
    found = [m for m in model.modules() if isinstance(m, AnteHocModel)]
    if not found:
        raise ValueError(
            "AnteHocObjective trains an AnteHocModel (paper 004), but the model holds none"
        )
    normalize = getattr(model, "normalize", None)
    if getattr(model, "net", None) is found[0] and isinstance(normalize, nn.Module):
        return found[0], normalize
    raise ValueError(
        "an AnteHocModel must be the trained model itself or the net of a NormalizedClassifier "
        f"(its pass two needs the images it sees); got it inside {type(model).__name__}"
    )


class AnteHocObjective(Objective):
    """Both passes of the ante-hoc network (paper 004, section 2.1) in one step."""

    terms = ("total", "cross_entropy", "interpret")

    def bind(self, model: nn.Module) -> None:
        """Refuse a model without an :class:`AnteHocModel` where pass two can reach it."""
        _antehoc_of(model)

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> LossTerms:
        """Pass one (Eq. 2, cross-entropy) + pass two (Eq. 3, interpretation loss)."""
        antehoc, to_input = _antehoc_of(model)
        images, labels = batch["image"], batch["label"]
        logits = model(images)
        task = F.cross_entropy(logits, labels)  # pass one, Eq. 2
        interpret = antehoc_pass_two_loss(antehoc, to_input(images))  # pass two, Eq. 3
        antehoc.close()  # the maps hold the graph of pass two
        total = task + interpret
        terms = {"total": total, "cross_entropy": task, "interpret": interpret}
        return total, _detached(terms), logits
