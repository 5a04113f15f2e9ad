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
class logits. A model whose logits or maps are no longer finite (a diverging run) gets a NaN
loss, which the training step refuses as it refuses any non-finite loss.

:func:`unused_supervision_settings` says which settings of a training configuration the chosen
supervision of the injection objective does not use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlap._checks import check_fraction
from torchlap.layers import attention_maps, clear_attention_maps
from torchlap.losses import InjectionLoss, default_weights
from torchlap.models.antehoc import AnteHocModel, antehoc_pass_two_loss

__all__ = [
    "INJECTION_TERMS",
    "RATIO_FIELDS",
    "SUPERVISION_SETTINGS",
    "AnteHocObjective",
    "CrossEntropyObjective",
    "InjectionObjective",
    "Objective",
    "OneHotBCEObjective",
    "check_head_ratios",
    "unused_supervision_settings",
]

logger = logging.getLogger(__name__)

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

_SUPERVISED = ("weak", "expert")
#: the supervision settings of a training configuration: ``name: (flag, the supervision modes
#: whose objective uses it)``; another mode does not use it
SUPERVISION_SETTINGS = {
    "min_ar": ("--min-ar", _SUPERVISED), "max_ar": ("--max-ar", _SUPERVISED),
    "iar": ("--iar", _SUPERVISED), "ratios": ("--ratios", _SUPERVISED),
    "use_discriminative": ("--no-discriminative", _SUPERVISED),
    "common_head_sets": ("--common-head-sets", _SUPERVISED),
    "expert_positive_fraction": ("expert_positive_fraction", ("expert",)),
}  # fmt: skip
# the concept terms a --loss-weight may weigh, and the modes that compute them
_CONCEPT_TERMS = {
    "discrimination": _SUPERVISED,
    "discriminative": _SUPERVISED,
    "expert": ("expert",),
}


def unused_supervision_settings(config: Any, defaults: Mapping[str, Any]) -> list[str]:
    """What of ``config`` (a TrainConfig of a LAP model) its ``supervision`` does not use, one
    line each naming the flag and the supervision it needs (empty: everything is used).

    ``defaults``: the configuration's defaults; a setting at its default is not counted. The
    settings: :data:`SUPERVISION_SETTINGS` (MinAR/MaxAR/IAR, ``ratios``, the discriminative
    scorers, ``common_head_sets``: weak or expert, the last with the scorers too;
    ``expert_positive_fraction``: expert), a nonzero ``loss_weights``
    entry of a concept term the mode does not compute (``expert`` needs expert supervision,
    ``discriminative`` the scorers), and ``concordance_threshold``/``concordance_mode`` when
    the concordance term has weight 0 (``supervision="none"`` or ``"expert"`` without
    ``concordance_weight``)."""
    mode, unused = config.supervision, []
    for name, (flag, modes) in SUPERVISION_SETTINGS.items():
        value = getattr(config, name)
        if mode not in modes and value != defaults[name]:
            unused.append(f"{flag} ({name}={value!r}) needs --supervision {' or '.join(modes)}")
    weights = config.loss_weights or {}
    for term, modes in _CONCEPT_TERMS.items():
        if weights.get(term) and mode not in modes:
            unused.append(f"--loss-weight {term} needs --supervision {' or '.join(modes)}")
    if weights.get("discriminative") and not config.use_discriminative and mode != "none":
        unused.append("--loss-weight discriminative needs the scorers (no --no-discriminative)")
    own_sets = config.common_head_sets != defaults["common_head_sets"]
    if own_sets and not config.use_discriminative and mode != "none":  # (all sets are own ones)
        unused.append(
            f"--common-head-sets {config.common_head_sets} chooses between the scorers' sets "
            "and a common head's own; with --no-discriminative every head's sets are its own "
            "(leave --no-discriminative out)"
        )
    concordance = weights.get("concordance", config.concordance_weight)
    if concordance is None:  # the paper's
        concordance = default_weights(mode)["concordance"]
    for name in ("concordance_threshold", "concordance_mode"):
        if getattr(config, name) is not None and not concordance:
            unused.append(f"{name} needs a concordance weight > 0 (--concordance-weight)")
    return unused


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
        """``InjectionLoss`` on this forward pass's LAP maps (its ``total`` is the loss).

        NaN or infinite logits or maps (a diverging run) give a NaN ``total``, which the
        training step turns into its ``NonFiniteLossError``; the loss's value check (its one
        device sync) finds them, so a finite step costs no extra sync."""
        logits = model(batch["image"])
        try:
            maps = attention_maps(model, detach=False)
            try:
                terms = self.injection(
                    maps,
                    batch["label"],
                    region_masks=batch.get("mask"),
                    has_region=batch.get("has_region"),
                    logits=logits,
                )
            except ValueError as error:
                if _all_finite(logits, maps):  # (a sync only after the check failed)
                    raise
                logger.warning("the model's outputs are no longer finite: %s", error)
                nan = logits.sum() * float("nan")
                terms = {"total": nan, "cross_entropy": F.cross_entropy(logits, batch["label"])}
        finally:  # the maps hold the graph; drop them now rather than at the next forward pass
            clear_attention_maps(model)
        return terms["total"], _detached(terms), logits


def _all_finite(logits: Tensor, maps: Mapping[str, Any]) -> bool:
    """Whether the logits and every LAP map are finite (one device sync)."""
    tensors = [logits, *(t for lap in maps.values() for t in (lap.concepts, lap.discriminative))]
    flags = [torch.isfinite(t.detach()).all() for t in tensors if t is not None]
    return bool(torch.stack(flags).all())


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


RATIO_FIELDS = ("min_ar", "max_ar", "iar")


def check_head_ratios(ratios: object) -> dict[str, list[float | None]]:
    """Validate per-head ratios ``{head: [MinAR, MaxAR, IAR]}`` (head: ``"0"``, ``"1"``, ... or
    ``"*"``; each value in (0, 1] or ``None`` for "term off") and return them."""
    example = '{"0": [0.02, 0.2, 0.01], "2": [null, 0.1, null]}'
    if not isinstance(ratios, Mapping):
        raise TypeError(f"ratios must be a dict {{head: [MinAR, MaxAR, IAR]}}, e.g. {example}")
    for key, values in ratios.items():
        # one spelling per head: "00" would name head 0 a second time, and one row be lost
        digits = isinstance(key, str) and key.isdigit() and key.isascii()
        if not isinstance(key, str) or not (key == "*" or (digits and key == str(int(key)))):
            raise ValueError(
                f"ratios key {key!r} must be a head index ('0', '1', ..., no leading zero) or "
                f"'*' (every head), e.g. {example}"
            )
        if not isinstance(values, (list, tuple)) or len(values) != 3:
            raise ValueError(
                f"ratios[{key!r}] must be [MinAR, MaxAR, IAR] (null for a term that is off), "
                f"got {values!r}"
            )
        for name, value in zip(RATIO_FIELDS, values, strict=True):
            if value is not None:
                check_fraction(value, f"ratios[{key!r}] {name}")
        low, high = values[0], values[1]
        if low is not None and high is not None and low > high:
            raise ValueError(f"ratios[{key!r}]: MinAR ({low}) must not exceed MaxAR ({high})")
    return dict(ratios)
