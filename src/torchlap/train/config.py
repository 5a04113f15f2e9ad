"""Training configuration: :class:`TrainConfig` and its :class:`PhaseConfig` list.

Both are plain dataclasses with a JSON round trip (``to_dict``/``from_dict``) and a ``validate``
method that raises ``ValueError``/``TypeError`` naming the bad field and what is accepted, so a
bad run is refused before anything is loaded or written.

Phases follow paper 000 (section IV.B and appendix C, the ImageNet model): phase 1 trains only
the LAP modules with everything else frozen; phase 2 fine-tunes chosen modules (``layer4,fc``).
Each phase has its own epochs, learning rate, optimizer and schedule.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EXECUTION_FIELDS",
    "MODELS",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULES",
    "SUPERVISIONS",
    "PhaseConfig",
    "TrainConfig",
    "parse_phase",
]

SUPERVISIONS = ("weak", "expert", "none")
# --model: LAP (paper 000), the BLA family (paper 002) or the ante-hoc network (paper 004)
MODELS = ("lap", "bla", "bla-t", "bla-ph", "l2x-f", "antehoc")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed")

# Fields that say how a run is executed, not what it computes: they may differ between the
# config.json of a run folder and a --resume of it (the rest identifies the run).
EXECUTION_FIELDS = frozenset(
    {
        "out",
        "overwrite",
        "resume",
        "devices",
        "num_nodes",
        "strategy",
        "accelerator",
        "precision",
        "num_workers",
        "progress_bar",
        "checkpoint_every_n_steps",
    }
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_positive_int(value: object, name: str) -> None:
    if not _is_int(value):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def _check_ratio(value: object, name: str) -> None:
    if not _is_number(value):
        raise TypeError(f"{name} must be a number in (0, 1], got {value!r}")
    if not (0.0 < float(value) <= 1.0):
        raise ValueError(f"{name} must be in (0, 1], got {value}")


@dataclass
class PhaseConfig:
    """One training phase (paper 000, appendix C: LAP-only, then fine-tuning).

    ``train``: which parameters learn in this phase: ``"all"``, ``"lap"`` (every LAP module,
    the rest frozen) or a comma list of module names of the classifier (``"layer4,fc"``); the
    word ``lap`` may be part of the list (``"lap,fc"``). Frozen batch-norm layers keep their
    running statistics (they run in eval mode).
    """

    epochs: int
    lr: float = 1e-3
    train: str = "all"
    optimizer: str = "adam"
    weight_decay: float = 1e-6
    schedule: str = "cosine"

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` on a bad field."""
        _check_positive_int(self.epochs, "phase epochs")
        if not _is_number(self.lr) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"phase learning rate must be a finite number > 0, got {self.lr!r}")
        if not isinstance(self.train, str) or not self.train_targets():
            raise ValueError(
                f"phase 'train' must be 'all', 'lap' or a comma list of module names "
                f"(e.g. 'layer4,fc'), got {self.train!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected one of {SCHEDULES}")

    def train_targets(self) -> list[str]:
        """The comma list of ``train`` split into names (``all``/``lap`` kept as words)."""
        return [part.strip() for part in str(self.train).split(",") if part.strip()]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhaseConfig:
        """Inverse of :meth:`to_dict` (unknown keys are refused)."""
        return _from_dict(cls, data, "phase")


def parse_phase(text: str) -> PhaseConfig:
    """Parse the CLI form ``TRAIN:EPOCHS[:LR[:OPTIMIZER]]``, e.g. ``lap:2:1e-4`` or
    ``layer4,fc:3:1e-3:sgd``."""
    if not isinstance(text, str):
        raise TypeError(f"a phase must be a string TRAIN:EPOCHS[:LR[:OPTIMIZER]], got {text!r}")
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise ValueError(
            f"bad phase {text!r}: expected TRAIN:EPOCHS[:LR[:OPTIMIZER]], e.g. 'lap:2:1e-4' "
            "or 'layer4,fc:3:1e-3:sgd'"
        )
    try:
        epochs = int(parts[1])
        lr = float(parts[2]) if len(parts) > 2 else 1e-3
    except ValueError:
        raise ValueError(
            f"bad phase {text!r}: EPOCHS must be an int and LR a number "
            "(TRAIN:EPOCHS[:LR[:OPTIMIZER]])"
        ) from None
    phase = PhaseConfig(epochs=epochs, lr=lr, train=parts[0])
    if len(parts) == 4:
        phase.optimizer = parts[3]
    phase.validate()
    return phase


@dataclass
class TrainConfig:
    """Everything a training run needs (``torchlap train`` options, one field each).

    Model: ``arch`` (a torchvision/timm name of :func:`torchlap.models.build_model`, or
    ``smallcnn``), ``lap`` (a preset, ``"auto"`` or ``"none"`` for the vanilla baseline),
    ``n_concepts`` (``None``: 1 concept present in the positive class for two classes, one
    concept per class otherwise), ``pretrained`` (torchvision weights name or local file).
    ``model``: ``"lap"`` (default: the classifier with the LAP layers of ``lap``), a BLA variant
    ``"bla"``, ``"bla-t"``, ``"bla-ph"``, ``"l2x-f"`` (paper 002: :func:`torchlap.models.blaify`
    on the vanilla network; BLA-PH trains only the BLA module in every phase) or ``"antehoc"``
    (paper 004: the vanilla network in an :class:`~torchlap.models.antehoc.AnteHocModel`,
    trained with both passes). The peers have no LAP layer: with them ``lap`` must be ``"none"``
    or left at its default ``"auto"`` (then ignored) and the supervision is ``none``.

    Losses (paper 000, section III.B): ``supervision`` ``weak`` (Eq. 5 concept discrimination
    with ``min_ar``/``max_ar``/``iar`` and the Eq. 6 concordance), ``expert`` (cross-entropy of
    the LAP maps against the boxes, on the ``expert_positive_fraction`` best-scored pixels
    inside them: 0.5 in the paper's appendix) or ``none`` (cross-entropy only). Loss weights
    default to the paper's (0.25 per LAP layer and per layer pair, see
    :func:`torchlap.train.run.paper_loss_weights`); ``loss_weights`` overrides them, as
    weights of :class:`torchlap.losses.InjectionLoss` (which weighs per-layer means).

    Data: ``data`` (``lesions``, ``concepts``, ``digits`` or an annotated folder), ``n_images``
    (built-in benchmarks: images over all three splits; ``None``: the benchmark's default),
    ``data_options`` (more keyword arguments of :func:`torchlap.data.load_dataset`).

    Training: ``phases`` (empty: one phase training everything for ``epochs`` at ``lr``),
    ``batch_size`` (the global batch: each of W processes takes ``batch_size / W``), ``seed``;
    execution: ``devices``, ``num_nodes``, ``strategy``, ``accelerator``, ``precision``
    (``auto``: 16-bit mixed precision on CUDA, 32-bit elsewhere), ``checkpoint_every_n_steps``
    (mid-epoch checkpoints; every epoch end always).
    """

    data: str
    out: str
    arch: str = "resnet18"
    lap: str = "auto"
    model: str = "lap"
    supervision: str = "weak"
    epochs: int = 10
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 1e-6
    schedule: str = "cosine"
    phases: list[PhaseConfig] = field(default_factory=list)
    image_size: int = 64
    batch_size: int = 32
    n_images: int | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    n_concepts: int | None = None
    concept_sets: dict[str, Any] | None = None
    min_ar: float = 0.1
    max_ar: float = 0.5
    iar: float = 0.1
    use_discriminative: bool = True
    expert_positive_fraction: float = 0.5
    concordance_threshold: float | None = None
    concordance_mode: str | None = None
    loss_weights: dict[str, float] | None = None
    seed: int = 0
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"
    precision: str = "auto"
    num_workers: int = 0
    checkpoint_every_n_steps: int | None = None
    progress_bar: bool | None = None
    overwrite: bool = False
    resume: bool = False

    # ----------------------------------------------------------------------------------------
    def resolved_phases(self) -> list[PhaseConfig]:
        """The phases to run: ``phases``, or one phase training everything."""
        if self.phases:
            return list(self.phases)
        return [
            PhaseConfig(
                epochs=self.epochs,
                lr=self.lr,
                train="all",
                optimizer=self.optimizer,
                weight_decay=self.weight_decay,
                schedule=self.schedule,
            )
        ]

    @property
    def uses_lap(self) -> bool:
        """False for the vanilla baseline (``lap="none"``) and the peers (``model != "lap"``)."""
        return self.model == "lap" and str(self.lap).lower() != "none"

    @property
    def effective_supervision(self) -> str:
        """``supervision``, or ``"none"`` when the model has no LAP layer."""
        return self.supervision if self.uses_lap else "none"

    def validate(self) -> None:
        """Check every field; raise ``ValueError``/``TypeError`` naming the bad one."""
        for name in ("data", "out", "arch", "lap"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise TypeError(f"{name} must be a non-empty string, got {value!r}")
        if self.model not in MODELS:
            raise ValueError(
                f"unknown model {self.model!r}; expected one of {', '.join(MODELS)} (lap: LAP "
                "layers; bla, bla-t, bla-ph, l2x-f: paper 002; antehoc: paper 004)"
            )
        if self.model != "lap" and str(self.lap).lower() not in ("auto", "none"):
            raise ValueError(
                f"--model {self.model} builds a model without LAP layers, but --lap is "
                f"{self.lap!r}: use --lap none (or leave --lap at its default)"
            )
        if self.supervision not in SUPERVISIONS:
            raise ValueError(
                f"unknown supervision {self.supervision!r}; expected one of {SUPERVISIONS}"
            )
        _check_positive_int(self.image_size, "image_size")
        _check_positive_int(self.batch_size, "batch_size")
        for name in ("n_images", "n_concepts", "checkpoint_every_n_steps"):
            value = getattr(self, name)
            if value is not None:
                _check_positive_int(value, name)
        _check_positive_int(self.num_nodes, "num_nodes")
        if not _is_int(self.num_workers) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {self.num_workers!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        if not isinstance(self.data_options, dict):
            raise TypeError(f"data_options must be a dict, got {self.data_options!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")
        if not isinstance(self.devices, (str, int)) or isinstance(self.devices, bool):
            raise TypeError(
                f"devices must be 'auto', a count or a comma list of ids, got {self.devices!r}"
            )
        # Eq. 5 ratios: k1 = ceil(MinAR HW) pixels pushed up, at most MaxAR HW of them active.
        _check_ratio(self.min_ar, "min_ar (MinAR)")
        _check_ratio(self.max_ar, "max_ar (MaxAR)")
        _check_ratio(self.iar, "iar (IAR)")
        _check_ratio(self.expert_positive_fraction, "expert_positive_fraction")
        if self.min_ar > self.max_ar:
            raise ValueError(
                f"MinAR ({self.min_ar}) must not exceed MaxAR ({self.max_ar}): a concept cannot "
                "need more active pixels than it may have"
            )
        if self.loss_weights is not None:
            if not isinstance(self.loss_weights, dict):
                raise TypeError(f"loss_weights must be a dict, got {self.loss_weights!r}")
            for key, value in self.loss_weights.items():
                if not _is_number(value) or not math.isfinite(value) or value < 0:
                    raise ValueError(f"loss weight {key!r} must be a number >= 0, got {value!r}")
        if self.concept_sets is not None and not isinstance(self.concept_sets, dict):
            raise TypeError(
                "concept_sets must be a dict as written by ConceptSets.to_dict(), "
                f"got {self.concept_sets!r}"
            )
        if self.phases:
            if not isinstance(self.phases, list):
                raise TypeError(f"phases must be a list of PhaseConfig, got {self.phases!r}")
            for phase in self.phases:
                if not isinstance(phase, PhaseConfig):
                    raise TypeError(f"phases must hold PhaseConfig objects, got {phase!r}")
        for index, phase in enumerate(self.resolved_phases()):
            try:
                phase.validate()
            except (TypeError, ValueError) as error:
                raise type(error)(f"phase {index + 1}: {error}") from None
            if self.model == "bla-ph" and phase.train_targets() != ["all"]:
                raise ValueError(
                    f"phase {index + 1} trains {phase.train!r}, but --model bla-ph trains only "
                    "the BLA module (frozen heads, paper 002 section 4.2): give phases with "
                    "TRAIN 'all' (read as the BLA module), or use --model bla-t"
                )
            if not self.uses_lap and "lap" in phase.train_targets():
                raise ValueError(
                    f"phase {index + 1} trains 'lap' but --lap none builds a model without LAP "
                    "layers; train 'all' or named modules instead"
                )
        if self.overwrite and self.resume:
            raise ValueError("--overwrite and --resume exclude each other: pick one")

    # ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (phases as dicts)."""
        data = dataclasses.asdict(self)
        data["phases"] = [phase.to_dict() for phase in self.phases]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        data = dict(data)
        phases = data.pop("phases", [])
        if not isinstance(phases, list):
            raise TypeError(f"'phases' must be a list, got {phases!r}")
        config = _from_dict(cls, data, "train config")
        config.phases = [
            phase if isinstance(phase, PhaseConfig) else PhaseConfig.from_dict(phase)
            for phase in phases
        ]
        return config

    def identity(self) -> dict[str, Any]:
        """The fields that identify a run (all but :data:`EXECUTION_FIELDS`)."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS}


def _from_dict(cls: type, data: Mapping[str, Any], what: str) -> Any:
    if not isinstance(data, Mapping):
        raise TypeError(f"a {what} must be a dict, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; accepted: {sorted(names)}")
    try:
        return cls(**data)
    except TypeError as error:
        raise TypeError(f"bad {what}: {error}") from None
