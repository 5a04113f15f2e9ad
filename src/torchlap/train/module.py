"""``ClassifierModule``: the LightningModule that trains any classifier, LAP or not.

The loss is the objective of the model's family (:mod:`torchlap.models.objectives`, given by
its recipe in :mod:`torchlap.models.recipes`): cross-entropy, B-cos's one-hot BCE,
cross-entropy plus the knowledge-injection terms of :class:`torchlap.losses.InjectionLoss`
(paper 000, section III.B) for LAP models, or the ante-hoc network's two passes. Metrics per
epoch (torchmetrics): accuracy, sensitivity, specificity and balanced accuracy (for two
classes: recall of class 1, recall of class 0 and their mean; for more: the macro means of the
per-class recall and specificity, balanced accuracy being the macro recall; a class missing
from the split is left out of the means, see :func:`classification_summary`), plus the mean of
every term of the objective.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassStatScores,
)

from torchlap.layers import lap_modules
from torchlap.losses import InjectionLoss
from torchlap.models.objectives import CrossEntropyObjective, InjectionObjective, Objective
from torchlap.train.config import KEEP_EPOCHS, SELECT_METRICS, PhaseConfig
from torchlap.train.sampling import derive_seed

__all__ = [
    "ClassifierModule",
    "NonFiniteLossError",
    "classification_summary",
    "per_class_rates",
    "set_trainable",
]

logger = logging.getLogger(__name__)

STAGES = ("train", "val", "test")


class NonFiniteLossError(FloatingPointError):
    """Training diverged: the training loss, or the model's outputs on the validation split,
    became NaN or infinite. The run stopped, its last good checkpoint kept."""


def _inner(model: nn.Module) -> nn.Module:
    """The classifier inside a :class:`NormalizedClassifier` (phase targets name its modules)."""
    return getattr(model, "net", model)


def set_trainable(model: nn.Module, phase: PhaseConfig) -> list[str]:
    """Freeze everything but the phase's targets; return the trainable parameter names.

    Targets (``phase.train``): ``all``; ``lap`` (every LAP module); module names of the
    classifier (``layer4``, ``fc``; names relative to the classifier inside the input
    normalization wrapper, full names accepted too). Unknown names raise ``ValueError``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(phase, PhaseConfig):
        raise TypeError(f"phase must be a PhaseConfig, got {type(phase).__name__}")
    inner = _inner(model)
    modules = dict(inner.named_modules())
    targets = phase.train_targets()
    chosen: list[nn.Module] = []
    for target in targets:
        if target == "all":
            chosen.append(inner)
        elif target == "lap":
            laps = lap_modules(inner)
            if not laps:
                raise ValueError(
                    "phase trains 'lap' but the model has no LAP layer (was it built with "
                    "--lap none?)"
                )
            chosen.extend(laps.values())
        else:
            name = (
                target[len("net.") :]
                if target.startswith("net.") and inner is not model
                else target
            )
            if name not in modules or name == "":
                tops = [n for n, _ in inner.named_children()]
                raise ValueError(
                    f"phase trains module {target!r}, which the model does not have; top-level "
                    f"modules: {tops} (nested names such as 'layer4.1' work too), or 'lap'/'all'"
                )
            chosen.append(modules[name])
    # the selection is checked before any flag changes: a refused phase leaves the model as is
    selected = {id(parameter) for module in chosen for parameter in module.parameters()}
    trainable = [name for name, p in model.named_parameters() if id(p) in selected]
    if not trainable:
        raise ValueError(f"phase {phase.train!r} selects no trainable parameter")
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in selected)
    return trainable


def _frozen_batchnorms(model: nn.Module) -> list[_BatchNorm]:
    """Batch-norm layers none of whose parameters learn (they keep their running statistics)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, _BatchNorm) and not any(p.requires_grad for p in m.parameters())
    ]


def classification_summary(accuracy: Tensor, recall: Tensor, specificity: Tensor) -> dict:
    """Accuracy, sensitivity, specificity, balanced accuracy from per-class recall/specificity.

    Two classes: sensitivity = recall of class 1, specificity = recall of class 0, balanced
    accuracy = their mean. More classes: macro means (balanced accuracy = macro recall). A
    class absent from the split has recall NaN (and a class that is the whole split NaN
    specificity): it is left out of the means, so balanced accuracy is the mean recall over the
    classes present (scikit-learn's ``balanced_accuracy_score``), which keeps the epoch
    selection working on a split that lacks a class, and sensitivity or specificity of a
    missing class is NaN, not the 0 of a zero division.
    """
    if recall.numel() == 2:
        sensitivity, spec = recall[1], recall[0]
    else:
        sensitivity, spec = recall.nanmean(), specificity.nanmean()
    return {
        "accuracy": float(accuracy),
        "sensitivity": float(sensitivity),
        "specificity": float(spec),
        "balanced_accuracy": float(recall.nanmean()),
    }


def per_class_rates(stats: Tensor) -> tuple[Tensor, Tensor]:
    """Recall ``tp / (tp + fn)`` and specificity ``tn / (tn + fp)`` per class from
    ``MulticlassStatScores(average=None)`` rows ``(tp, fp, tn, fn, support)``; NaN where the
    denominator is 0 (no sample of the class, or no sample of the others)."""
    tp, fp, tn, fn = (stats[:, k].double() for k in range(4))
    nan = torch.full_like(tp, float("nan"))
    recall = torch.where(tp + fn > 0, tp / (tp + fn).clamp_min(1), nan)
    specificity = torch.where(tn + fp > 0, tn / (tn + fp).clamp_min(1), nan)
    return recall, specificity


class ClassifierModule(L.LightningModule):
    """Trains ``model`` (images in [0, 1] -> logits) with its family's objective.

    Args:
        model: the classifier (usually a :class:`~torchlap.train.NormalizedClassifier`).
        num_classes: number of classes.
        objective: what is minimised: an :class:`~torchlap.models.objectives.Objective`
            (:func:`torchlap.models.recipes.build_for_training` gives the family's), an
            :class:`~torchlap.losses.InjectionLoss` (cross-entropy + injection, for LAP
            models) or ``None`` (cross-entropy only; the vanilla baseline).
        phases: the run's phases; :meth:`set_phase` selects the current one.
        seed: the run's seed (per-batch RNG seeds derive from it, so a resumed run draws the
            same random numbers as an uninterrupted one).
        make_loader: ``make_loader(split, phase_index, rank, world_size, skip_batches)`` returns
            the DataLoader of a split.
        on_epoch_end: called on every rank with the history after each training epoch.
        keep_epoch: ``"last"`` (default here) or ``"best"``: keep a copy of the weights of the
            epoch with the best validation ``select_metric`` (paper 000, Appendix A: "the
            epoch with the best performance on validation data" is the final model), carried
            in the checkpoints; :meth:`restore_selected_epoch` puts it back.
        select_metric: ``"balanced_accuracy"`` or ``"accuracy"`` (higher is better; ties go to
            the lower validation cross-entropy, then to the earlier epoch) or ``"loss"`` (the
            validation total loss, or the cross-entropy for models without injection loss) or
            ``"cross_entropy"`` (the validation cross-entropy); lower is better, ties to the
            earlier epoch.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        objective: Objective | InjectionLoss | None,
        phases: list[PhaseConfig],
        seed: int,
        make_loader: Callable[..., Any] | None = None,
        on_epoch_end: Callable[[list[dict[str, Any]]], None] | None = None,
        keep_epoch: str = "last",
        select_metric: str = "balanced_accuracy",
    ) -> None:
        super().__init__()
        if keep_epoch not in KEEP_EPOCHS:
            raise ValueError(f"keep_epoch must be one of {KEEP_EPOCHS}, got {keep_epoch!r}")
        if select_metric not in SELECT_METRICS:
            raise ValueError(
                f"select_metric must be one of {SELECT_METRICS}, got {select_metric!r}"
            )
        self.keep_epoch = keep_epoch
        self.select_metric = select_metric
        self.best_epoch: int | None = None  # global epoch (1-based) of the kept weights
        self._best_state: dict[str, Tensor] | None = None
        self.model = model
        self.num_classes = int(num_classes)
        if objective is None:
            objective = CrossEntropyObjective()
        elif isinstance(objective, InjectionLoss):
            objective = InjectionObjective(objective)
        if not isinstance(objective, Objective):
            raise TypeError(
                "objective must be a torchlap.models.objectives.Objective, an InjectionLoss or "
                f"None, got {type(objective).__name__}"
            )
        objective.bind(model)
        self.objective = objective
        self.phases = list(phases)
        self.seed = int(seed)
        self.make_loader = make_loader
        self.on_epoch_end = on_epoch_end
        self.phase_index = 0
        self.history: list[dict[str, Any]] = []
        self.test_results: dict[str, float] = {}
        self._batches_done = 0
        self._resume_skip = 0
        self._frozen_bn: list[_BatchNorm] = []
        self._val_results: dict[str, float] = {}
        self._val_finite: Tensor | None = None  # every validation logit finite (on the device)
        names = objective.terms
        # (ModuleDict keys cannot be "train": nn.Module.train exists)
        self.stage_metrics = nn.ModuleDict(
            {f"{stage}_metrics": self._make_metrics() for stage in STAGES}
        )
        self.stage_losses = nn.ModuleDict(
            {
                f"{stage}_losses": nn.ModuleDict({name: MeanMetric() for name in names})
                for stage in STAGES
            }
        )
        # metric states go into checkpoints, so a resumed epoch reports the same numbers
        for stage in STAGES:
            self._metrics(stage).persistent(True)
            for metric in self._losses(stage).values():
                metric.persistent(True)

    # ---------------------------------------------------------------------------------------
    def _metrics(self, stage: str) -> MetricCollection:
        return self.stage_metrics[f"{stage}_metrics"]

    def _losses(self, stage: str) -> nn.ModuleDict:
        return self.stage_losses[f"{stage}_losses"]

    def _make_metrics(self) -> MetricCollection:
        n = self.num_classes
        return MetricCollection(
            {
                "accuracy": MulticlassAccuracy(n, average="micro"),
                # counts, not torchmetrics' rates: a class missing from the split is NaN
                # (per_class_rates), not the 0 of torchmetrics' zero division
                "stats": MulticlassStatScores(n, average=None),
            }
        )

    @property
    def phase(self) -> PhaseConfig:
        """The current phase."""
        return self.phases[self.phase_index]

    def set_phase(self, index: int) -> list[str]:
        """Select phase ``index``, freeze/unfreeze accordingly; return trainable names."""
        if not 0 <= index < len(self.phases):
            raise ValueError(f"phase index must be in [0, {len(self.phases) - 1}], got {index}")
        self.phase_index = index
        self.model.train()  # the previous phase left its frozen batch norms in eval mode
        trainable = set_trainable(self.model, self.phase)
        self._frozen_bn = _frozen_batchnorms(self.model)
        return trainable

    def forward(self, images: Tensor) -> Tensor:
        """Class logits of images in [0, 1]."""
        return self.model(images)

    # ---------------------------------------------------------------------------------------
    def _loss_terms(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        return self.objective(self.model, batch)

    def _update(self, stage: str, terms: dict[str, Tensor], logits: Tensor, labels: Tensor):
        self._metrics(stage).update(logits.detach(), labels)
        losses = self._losses(stage)
        for name, value in terms.items():
            if name in losses:  # a term this module does not know is not logged
                losses[name].update(value.float(), weight=labels.shape[0])

    def _compute(self, stage: str) -> dict[str, float]:
        values = self._metrics(stage).compute()
        recall, specificity = per_class_rates(values["stats"])
        result = classification_summary(values["accuracy"], recall, specificity)
        for name, metric in self._losses(stage).items():
            result[f"loss_{name}"] = float(metric.compute())
            metric.reset()
        self._metrics(stage).reset()
        return result

    # ---------------------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Seed the RNGs from (seed, phase, epoch, batch, rank); keep frozen BN in eval mode."""
        torch.manual_seed(
            derive_seed(
                self.seed, self.phase_index, self.current_epoch, batch_idx, self.global_rank
            )
        )
        for module in self._frozen_bn:
            module.eval()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """The objective's loss; stops the run on a NaN/infinite loss."""
        loss, terms, logits = self._loss_terms(batch)
        # the one host read of a step: a NaN loss must stop every process (NonFiniteLossError)
        finite = bool(torch.isfinite(loss.detach()).item())
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            shown = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
            raise NonFiniteLossError(
                f"the training loss is not finite in phase {self.phase_index + 1} "
                f"('{self.phase.train}'), epoch {self.current_epoch + 1}, batch {batch_idx + 1} "
                f"(loss terms on this process: {shown}). Training stopped; the last good "
                "checkpoint is kept (resume with --resume after lowering the learning rate)"
            )
        self._update("train", terms, logits, batch["label"])
        self._batches_done += 1
        return loss

    def on_train_epoch_end(self) -> None:
        """Record this epoch's train and validation metrics in ``history``."""
        record = {
            "phase": self.phase_index + 1,
            "phase_train": self.phase.train,
            "epoch": self.current_epoch + 1,
            "global_epoch": len(self.history) + 1,
            "lr": float(self.trainer.optimizers[0].param_groups[0]["lr"]),
            "train": self._compute("train"),
            "val": dict(self._val_results),
        }
        self.history.append(record)
        self._batches_done = 0
        if self.keep_epoch == "best" and self._improves(record):
            self.best_epoch = record["global_epoch"]
            # a CPU copy: the checkpoints carry it, so a resumed run keeps the same choice
            self._best_state = {
                k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
            }
        logger.info(
            "phase %d epoch %d: train %s | val %s",
            record["phase"],
            record["epoch"],
            _short(record["train"]),
            _short(record["val"]),
        )
        if self.on_epoch_end is not None:
            self.on_epoch_end(self.history)

    # ---------------------------------------------------------------------------------------
    def _selection_key(self, record: dict[str, Any]) -> tuple[float, float] | None:
        """Smaller is better: (primary, tie-break) from an epoch's validation metrics."""
        val = record.get("val") or {}
        if self.select_metric in ("loss", "cross_entropy"):
            value = val.get("loss_cross_entropy")
            if self.select_metric == "loss":
                value = val.get("loss_total", value)
            key = None if value is None else (float(value), 0.0)
        else:
            value = val.get(self.select_metric)
            tie = val.get("loss_cross_entropy", math.inf)
            key = None if value is None else (-float(value), float(tie))
        if key is None or not math.isfinite(key[0]):
            return None
        return key

    def _improves(self, record: dict[str, Any]) -> bool:
        key = self._selection_key(record)
        if self.best_epoch is None:
            return True  # the first epoch is kept whatever (even without validation numbers)
        best = next((r for r in self.history if r["global_epoch"] == self.best_epoch), None)
        best_key = None if best is None else self._selection_key(best)
        if key is None:
            return False
        return best_key is None or key < best_key

    def selected_epoch(self) -> dict[str, Any] | None:
        """Which epoch the final weights come from: ``keep_epoch``, ``select_metric``,
        ``global_epoch``, ``phase``, ``epoch`` and the validation value (``None`` before any
        epoch)."""
        if not self.history:
            return None
        chosen = self.history[-1]
        if self.keep_epoch == "best" and self.best_epoch is not None:
            chosen = next((r for r in self.history if r["global_epoch"] == self.best_epoch), chosen)
        val = chosen.get("val") or {}
        metric = self.select_metric
        if metric == "loss":
            metric = "loss_total" if "loss_total" in val else "loss_cross_entropy"
        elif metric == "cross_entropy":
            metric = "loss_cross_entropy"
        return {
            "keep_epoch": self.keep_epoch,
            "select_metric": self.select_metric,
            "global_epoch": chosen["global_epoch"],
            "phase": chosen["phase"],
            "epoch": chosen["epoch"],
            "value": val.get(metric),
            "of_epochs": len(self.history),
        }

    def restore_selected_epoch(self) -> dict[str, Any] | None:
        """Load the kept epoch's weights into the model (``keep_epoch="best"``); return
        :meth:`selected_epoch`. With ``"last"`` the model is left as it is."""
        if self.keep_epoch == "best" and self._best_state is not None:
            own = self.model.state_dict()
            self.model.load_state_dict(
                {k: v.to(own[k].device) for k, v in self._best_state.items()}
            )
            logger.info(
                "keeping epoch %d of %d (best validation %s)",
                self.best_epoch,
                len(self.history),
                self.select_metric,
            )
        return self.selected_epoch()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Metrics on the validation split."""
        _, terms, logits = self._loss_terms(batch)
        finite = torch.isfinite(logits.detach()).all()  # read once, at the epoch's end
        self._val_finite = finite if self._val_finite is None else self._val_finite & finite
        self._update("val", terms, logits, batch["label"])

    def on_validation_epoch_end(self) -> None:
        """Compute the validation metrics (kept for the training epoch's record); stop the run
        when the model's outputs on the validation split are not finite: the epoch's last
        optimizer steps diverged after their own loss was computed (a run of one batch per
        epoch, or the run's last step), which the training loss check cannot see."""
        finite = self._val_finite is None or bool(self._val_finite.item())
        self._val_finite = None
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            raise NonFiniteLossError(
                f"the model's outputs on the validation split are not finite after phase "
                f"{self.phase_index + 1} ('{self.phase.train}'), epoch {self.current_epoch + 1}: "
                "training diverged in the epoch's last steps (their loss was still finite). "
                "Training stopped; the last good checkpoint is kept (resume with --resume after "
                "lowering the learning rate)"
            )
        self._val_results = self._compute("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Metrics on the test split."""
        _, terms, logits = self._loss_terms(batch)
        self._update("test", terms, logits, batch["label"])

    def on_test_epoch_end(self) -> None:
        """Compute the test metrics into ``test_results``."""
        self.test_results = self._compute("test")

    # ---------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """The phase's optimizer over the trainable parameters (its ``weight_decay``; SGD with its
        ``momentum``), with its LR schedule."""
        phase = self.phase
        params = [p for p in self.model.parameters() if p.requires_grad]
        if phase.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=phase.lr, weight_decay=phase.weight_decay)
        elif phase.optimizer == "adamw":
            optimizer = torch.optim.AdamW(params, lr=phase.lr, weight_decay=phase.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                params, lr=phase.lr, momentum=phase.momentum, weight_decay=phase.weight_decay
            )
        if phase.schedule == "constant":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def train_dataloader(self) -> Any:
        """The training split's loader for this rank (skipping batches done, when resuming)."""
        skip, self._resume_skip = self._resume_skip, 0
        return self._loader("train", skip)

    def val_dataloader(self) -> Any:
        """The validation split's loader for this rank."""
        return self._loader("val", 0)

    def test_dataloader(self) -> Any:
        """The test split's loader for this rank."""
        return self._loader("test", 0)

    def _loader(self, split: str, skip: int) -> Any:
        if self.make_loader is None:
            raise RuntimeError("ClassifierModule was built without make_loader")
        return self.make_loader(
            split, self.phase_index, self.global_rank, self.trainer.world_size, skip
        )

    # ---------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the phase, the batches done in this epoch and the metrics history."""
        checkpoint["torchlap"] = {
            "phase_index": self.phase_index,
            "batches_done": self._batches_done,
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_state": self._best_state,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore what :meth:`on_save_checkpoint` stored."""
        state = checkpoint.get("torchlap")
        if not isinstance(state, dict):
            raise ValueError("this checkpoint was not written by torchlap train")
        if state["phase_index"] != self.phase_index:
            raise ValueError(
                f"the checkpoint belongs to phase {state['phase_index'] + 1}, "
                f"not to phase {self.phase_index + 1}"
            )
        self.history = list(state["history"])
        self.best_epoch = state.get("best_epoch")  # (absent from older checkpoints)
        self._best_state = state.get("best_state")
        self._batches_done = int(state["batches_done"])
        self._resume_skip = int(state["batches_done"])


def _short(values: dict[str, float]) -> str:
    keys = ("loss_total", "loss_cross_entropy", "accuracy", "balanced_accuracy")
    return " ".join(f"{k}={values[k]:.4f}" for k in keys if k in values)
