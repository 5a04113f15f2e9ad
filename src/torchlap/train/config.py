"""Training configuration: :class:`TrainConfig` and its :class:`PhaseConfig` list, plain
dataclasses with a JSON round trip (``to_dict``/``from_dict``) and a ``validate`` method raising
``ValueError``/``TypeError`` that names the bad field and what is accepted. Phases follow paper
000 (section IV.B, appendix C): phase 1 trains only the LAP modules, everything else frozen;
phase 2 fine-tunes chosen modules (``layer4,fc``); each phase has its own epochs, learning rate,
optimizer, weight decay, momentum and schedule."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torchlap._checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_positive_float,
    check_positive_int,
    check_seed,
    is_plain_number,
)
from torchlap.launch import parse_devices
from torchlap.losses.functional import EXPERT_POSITIVE_FRACTION
from torchlap.losses.injection import DEFAULT_WEIGHTS
from torchlap.models.bcos import BCOS_NORMS
from torchlap.models.objectives import RATIO_FIELDS, unused_supervision_settings
from torchlap.models.presets import PRESETS
from torchlap.models.recipes import (
    RECIPES,
    check_freeze_features,
    features_frozen,
    model_choices,
    recipe_for,
)
from torchlap.train.data_options import check_data_options, resolve_data_source
from torchlap.train.lap_settings import KEEP_EPOCHS, SELECT_METRICS, check_lap_settings

__all__ = [
    "EXECUTION_FIELDS", "KEEP_EPOCHS", "MAX_EPOCHS", "MODELS", "OPTIMIZERS", "PHASE_SETTINGS",
    "PRECISIONS", "SCHEDULES", "SELECT_METRICS", "SUPERVISIONS", "PhaseConfig", "TrainConfig",
    "parse_phase"]  # fmt: skip

SUPERVISIONS = ("weak", "expert", "none")
#: the TrainConfig fields that configure LAP layers or their supervision (used by the LAP
#: recipe only); a model without LAP layers refuses them when they differ from the default
LAP_ONLY_SETTINGS = (
    "n_concepts", "concept_sets", "min_ar", "max_ar", "iar", "use_discriminative",
    "expert_positive_fraction", "concordance_threshold", "concordance_mode", "hidden_channels",
    "aggregation", "alpha", "ratios", "concordance_weight", "head_hidden", "common_head_sets",
)  # fmt: skip
# --model: the families of torchlap.models.recipes: LAP (paper 000), BLA (paper 002), ante-hoc
# (paper 004), B-cos (Böhle et al. 2022, the `bcos` package: --arch names one of its models)
MODELS = model_choices()
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")
#: the settings every phase has, which TrainConfig also has for its one default phase
PHASE_SETTINGS = ("weight_decay", "schedule", "momentum")
PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed")
MAX_EPOCHS = 100_000  # epochs of a phase or --epochs: beyond, a typo (not a cost limit)
#: the most of --batch-size, --n-concepts and --hidden-channels: beyond, a typo (a value past
#: 2**63 failed inside torch after config.json was written, a huge head count hung building)
MAX_WIDTH = 65_536
#: the most DataLoader worker processes: each is a process of its own (100000 forked until the
#: machine gave out)
MAX_NUM_WORKERS = 256

# Fields that say how a run is executed, not what it computes: they may differ between the
# config.json of a run folder and a --resume of it (the rest identifies the run).
EXECUTION_FIELDS = frozenset({
    "out", "overwrite", "resume", "devices", "num_nodes", "strategy", "accelerator", "precision",
    "num_workers", "progress_bar", "checkpoint_every_n_steps",
})  # fmt: skip


@dataclass
class PhaseConfig:
    """One training phase (paper 000, appendix C: LAP-only, then fine-tuning).

    ``train``: which parameters learn in this phase: ``"all"``, ``"lap"`` (every LAP module,
    the rest frozen) or a comma list of module names of the classifier (``"layer4,fc"``); the
    word ``lap`` may be part of the list (``"lap,fc"``). Frozen batch-norm layers keep their
    running statistics (they run in eval mode). ``momentum``: SGD's, in [0, 1) (others ignore it).
    """

    epochs: int
    lr: float = 1e-3
    train: str = "all"
    optimizer: str = "adam"
    weight_decay: float = 1e-6
    schedule: str = "cosine"
    momentum: float = 0.9

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` on a bad field (epochs: 1 to :data:`MAX_EPOCHS`)."""
        check_int(self.epochs, "phase epochs", minimum=1, maximum=MAX_EPOCHS)
        check_positive_float(self.lr, "phase learning rate")
        if not isinstance(self.train, str) or not self.train_targets():
            raise ValueError(
                f"phase 'train' must be 'all', 'lap' or a comma list of module names "
                f"(e.g. 'layer4,fc'), got {self.train!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        check_number(self.weight_decay, "weight_decay", minimum=0.0)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected one of {SCHEDULES}")
        said = "a number in [0, 1) (SGD's momentum; 0: plain SGD)"
        if check_number(self.momentum, "momentum", minimum=0, maximum=1, accepted=said) == 1:
            raise ValueError(f"momentum must be {said}, got {self.momentum!r}")

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


def parse_phase(
    text: str, *, lr: float = 1e-3, optimizer: str = "adam", **settings: Any
) -> PhaseConfig:
    """Parse the CLI form ``TRAIN:EPOCHS[:LR[:OPTIMIZER]]``, e.g. ``lap:2:1e-4`` or
    ``layer4,fc:3:1e-3:sgd``, into a phase; ``lr``, ``optimizer`` fill the fields left out and
    ``settings`` (:data:`PHASE_SETTINGS`: ``weight_decay``, ``schedule``, ``momentum``) are the
    phase's (``torchlap train`` passes its ``--lr``, ``--optimizer``, ``--weight-decay``,
    ``--schedule`` and ``--momentum``); checked as :meth:`PhaseConfig.validate`."""
    if not isinstance(text, str):
        raise TypeError(f"a phase must be a string TRAIN:EPOCHS[:LR[:OPTIMIZER]], got {text!r}")
    # the defaults are checked even when the text gives its own: a bad value is never ignored
    check_positive_float(lr, "lr")
    check_choice(optimizer, "optimizer", OPTIMIZERS)
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise ValueError(
            f"bad phase {text!r}: expected TRAIN:EPOCHS[:LR[:OPTIMIZER]], e.g. 'lap:2:1e-4' "
            "or 'layer4,fc:3:1e-3:sgd'"
        )
    lr_text = parts[2] if len(parts) > 2 else "0"
    if not is_plain_number(parts[1], integer=True) or not is_plain_number(lr_text):
        raise ValueError(
            f"bad phase {text!r}: EPOCHS must be an int and LR a number, in ASCII digits "
            "(TRAIN:EPOCHS[:LR[:OPTIMIZER]])"
        )
    epochs, lr = int(parts[1]), (float(lr_text) if len(parts) > 2 else lr)
    unknown = sorted(set(settings) - set(PHASE_SETTINGS))
    if unknown:
        raise TypeError(f"unknown phase setting(s) {unknown}; accepted: {list(PHASE_SETTINGS)}")
    optimizer = parts[3] if len(parts) == 4 else optimizer
    phase = PhaseConfig(epochs, lr, parts[0], optimizer, **settings)
    phase.validate()
    return phase


@dataclass
class TrainConfig:
    """Everything a training run needs (``torchlap train`` options, one field each).

    Model: ``arch`` (a torchvision/timm name of :func:`torchlap.models.build_model`, or
    ``smallcnn``), ``lap`` (a preset, ``"auto"`` or ``"none"`` for the vanilla baseline),
    ``n_concepts`` (``None``: the count of ``concept_sets`` when given, else 1 concept present
    in the positive class for two classes, one concept per class otherwise), ``pretrained``
    (torchvision weights name or local file).
    ``model``: ``"lap"`` (default: the classifier with the LAP layers of ``lap``), a BLA variant
    ``"bla"``, ``"bla-t"``, ``"bla-ph"``, ``"l2x-f"`` (paper 002: :func:`torchlap.models.blaify`
    on the vanilla network; BLA-PH trains only the BLA module in every phase, on the trained
    network ``pretrained`` names, which it needs; ``freeze_features``: ``"auto"`` (default)
    holds F, the network before BLA, fixed when ``pretrained`` is given, as paper 002, True or
    False for bla, bla-t, l2x-f) or ``"antehoc"`` (paper 004: the vanilla network in an
    :class:`~torchlap.models.antehoc.AnteHocModel`, trained with both passes). The peers have
    no LAP layer: ``lap`` must be ``"none"`` or its default ``"auto"`` (then ignored) and the
    supervision is ``none``. ``model="bcos"``: a B-cos network of the ``bcos`` package (``arch``
    one of its model names), trained with its binary cross-entropy on one-hot targets;
    ``bcos_norm`` picks its norm layers (:data:`torchlap.models.bcos.BCOS_NORMS`; ``None``: the
    default of new runs, ``DEFAULT_TRAIN_NORM``; a B-cos ``config.json`` written before the
    option existed reads as ``"position"``, the norm it was built with).

    Losses (paper 000, section III.B): ``supervision`` ``weak`` (Eq. 5 concept discrimination
    with ``min_ar``/``max_ar``/``iar`` and the Eq. 6 concordance), ``expert`` (Appendix A: Eq. 5
    with the boxes choosing the pixel sets, the ``expert_positive_fraction`` (0.5) best-scored
    inside pixels pushed up; no concordance unless ``concordance_weight`` is given) or
    ``none`` (cross-entropy only); a setting the chosen mode does not use is refused
    (:func:`torchlap.models.objectives.unused_supervision_settings`). Loss weights default to
    the paper's (0.25 per LAP layer, and 0.25 per layer pair for the weak concordance; a preset
    may set its own, :func:`torchlap.models.recipes.paper_loss_weights`); ``loss_weights``
    overrides them, as weights of :class:`torchlap.losses.InjectionLoss` (per-layer means).

    LAP layers: ``hidden_channels``, ``aggregation`` and ``alpha`` (initial value) of every LAP;
    ``None`` takes the ``--lap`` preset's paper value (:data:`torchlap.models.PRESETS`
    ``paper_options``), else the layer's default (8, ``"max"``, 1.0); ``head_hidden``:
    ``"shared"`` (default) or ``"per_head"``, each head its own hidden channels
    (:class:`~torchlap.layers.ConceptScorer`; refused without them or with one head). ``ratios``
    maps a head index (a string, or ``"*"`` for every head) to ``[MinAR, MaxAR, IAR]``, ``None``
    switching that term off for that head (the paper's CelebA common head: ``{"2": [None, 0.1,
    None]}``); other heads use ``min_ar``/``max_ar``/``iar``. When ``ratios`` is ``None`` and
    the three are at their defaults, a preset's paper ratios apply (``resnet50-imagenet``: MinAR
    = IAR = 0.01, no MaxAR). ``concordance_weight``: the weight per pair of consecutive LAP
    layers (``None``: the paper's 0.25 for weak supervision, 0 for expert, whose appendix names
    no concordance). ``common_head_sets``: what chooses Eq. 5's pixel sets of a head present in
    every class, ``"discriminative"`` (default) or ``"own"``
    (:class:`~torchlap.losses.InjectionLoss`; needs weak or expert supervision and the
    discriminative scorers).

    Model selection: ``keep_epoch`` ``"best"`` (the paper: the epoch with the best
    ``select_metric`` on the validation split, ties to the lower validation cross-entropy;
    ``model.safetensors`` holds its weights, ``metrics.json`` says which) or ``"last"``.

    Data: ``data`` (``lesions``, ``concepts``, ``digits`` or an annotated folder; recorded as
    given for a built-in, as its absolute path for a folder: :meth:`with_resolved_data`),
    ``n_images`` (built-in benchmarks: images over all three splits; ``None``: the default),
    ``data_options`` (more keyword arguments of :func:`torchlap.data.load_dataset`: only those
    the dataset takes, of their types, none with a flag of its own, nor ``split``/``transform``;
    :mod:`torchlap.train.data_options`). ``shuffle_labels``: the data randomization test
    (Adebayo et al. 2018): training labels permuted (seeded by ``seed``); val/test keep theirs.

    Training: ``phases`` (empty: one phase training everything for ``epochs`` at ``lr``, with
    ``optimizer``, ``weight_decay``, ``momentum`` (SGD's, in [0, 1); off its default 0.9 it
    needs an sgd phase) and ``schedule``; a given phase has its own, which a top-level value
    off its default must equal: ``torchlap train`` copies those flags into each ``--phase``),
    ``batch_size`` (global: W processes take ``batch_size / W`` each), ``seed``,
    ``balanced_batches`` (``True``, default: each batch draws the classes equally, the rest in
    turn, as paper 000 App. A trains all its models; ``False``: random; ``"auto"``, the default
    before 2026-12-07 that older runs record: balanced only with weak or expert supervision);
    execution: ``devices``, ``num_nodes``, ``strategy``, ``accelerator``, ``precision``
    (``auto``: 16-bit mixed on CUDA, 32-bit elsewhere), ``checkpoint_every_n_steps``.
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
    momentum: float = 0.9
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
    expert_positive_fraction: float = EXPERT_POSITIVE_FRACTION
    concordance_threshold: float | None = None
    concordance_mode: str | None = None
    loss_weights: dict[str, float] | None = None
    hidden_channels: int | None = None
    aggregation: str | None = None
    alpha: float | None = None
    ratios: dict[str, list[float | None]] | None = None
    concordance_weight: float | None = None
    head_hidden: str = "shared"
    common_head_sets: str = "discriminative"
    keep_epoch: str = "best"
    select_metric: str = "balanced_accuracy"
    seed: int = 0
    shuffle_labels: bool = False
    freeze_features: bool | str = "auto"
    bcos_norm: str | None = None
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"
    precision: str = "auto"
    num_workers: int = 0
    checkpoint_every_n_steps: int | None = None
    balanced_batches: bool | str = True
    progress_bar: bool | None = None
    overwrite: bool = False
    resume: bool = False

    def resolved_phases(self) -> list[PhaseConfig]:
        """The phases to run: ``phases``, or one phase training everything."""
        settings = {name: getattr(self, name) for name in PHASE_SETTINGS}
        return list(self.phases) or [
            PhaseConfig(self.epochs, self.lr, "all", self.optimizer, **settings)
        ]

    @property
    def family(self) -> str:
        """The model family (a key of :data:`torchlap.models.recipes.RECIPES`) of ``model`` and
        ``lap``; raises ``ValueError`` for an unknown ``model``."""
        return recipe_for(self.model, self.lap).name

    @property
    def uses_lap(self) -> bool:
        """False for the vanilla baseline (``lap="none"``) and the peers (``model != "lap"``)."""
        return self.model in model_choices() and RECIPES[self.family].uses_lap

    @property
    def effective_supervision(self) -> str:
        """``supervision``, or ``"none"`` when the model has no LAP layer."""
        return self.supervision if self.uses_lap else "none"

    @property
    def uses_balanced_batches(self) -> bool:
        """``balanced_batches`` resolved ("auto": with weak or expert LAP supervision)."""
        if isinstance(self.balanced_batches, str) and self.balanced_batches == "auto":
            return self.effective_supervision in ("weak", "expert")
        return bool(self.balanced_batches)

    def validate(self) -> None:
        """Check every field; raise ``ValueError``/``TypeError`` naming the bad one."""
        self._validate_flags()
        for name in ("data", "out", "arch", "lap"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise TypeError(f"{name} must be a non-empty string, got {value!r}")
        if self.model not in model_choices():  # (the registry: MODELS and any added family)
            raise ValueError(
                f"unknown model {self.model!r}; expected one of {', '.join(model_choices())} "
                "(lap: LAP layers; bla, bla-t, bla-ph, l2x-f: paper 002; antehoc: paper 004; "
                "bcos: B-cos)"
            )
        if not recipe_for(self.model).uses_lap and str(self.lap).lower() not in ("auto", "none"):
            raise ValueError(
                f"--model {self.model} builds a model without LAP layers, but --lap is "
                f"{self.lap!r}: use --lap none (or leave --lap at its default)"
            )
        self._validate_lap_only_settings()
        self.freeze_features = check_freeze_features(self.freeze_features, self.family)
        if self.supervision not in SUPERVISIONS:
            raise ValueError(
                f"unknown supervision {self.supervision!r}; expected one of {SUPERVISIONS}"
            )
        # below 4 px the training crop (80-100% of the image) can leave a mask without a row
        check_int(self.image_size, "image_size (--image-size)", minimum=4)
        check_int(self.batch_size, "batch_size", minimum=1, maximum=MAX_WIDTH)
        if not self.phases:  # the one default phase: name the options the user gave
            check_int(self.epochs, "epochs (--epochs)", minimum=1, maximum=MAX_EPOCHS)
            check_positive_float(self.lr, "lr (--lr)")
        for name in ("n_images", "checkpoint_every_n_steps"):
            if getattr(self, name) is not None:
                check_positive_int(getattr(self, name), name)
        for name, low in (("n_concepts", 1), ("hidden_channels", 0)):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, minimum=low, maximum=MAX_WIDTH)
        check_positive_int(self.num_nodes, "num_nodes")
        check_int(self.num_workers, "num_workers", minimum=0, maximum=MAX_NUM_WORKERS)
        check_seed(self.seed)
        if not isinstance(self.data_options, dict):
            raise TypeError(f"data_options must be a dict, got {self.data_options!r}")
        check_data_options(self.data, self.data_options)
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")
        parse_devices(self.devices, allow_auto=True)
        self._validate_losses()
        self._validate_supervision_settings()
        self._validate_phases()
        self._validate_bcos_norm()
        if self.overwrite and self.resume:
            raise ValueError("--overwrite and --resume exclude each other: pick one")

    def _validate_flags(self) -> None:
        """The bool fields are bools (``bool("no")`` is True: a string is never read as one);
        ``progress_bar`` may be ``None``, ``balanced_batches`` ``"auto"``."""
        for name in ("use_discriminative", "shuffle_labels", "overwrite", "resume"):
            setattr(self, name, check_bool(getattr(self, name), name))
        if self.progress_bar is not None:
            self.progress_bar = check_bool(self.progress_bar, "progress_bar (or None: auto)")
        if not (isinstance(self.balanced_batches, str) and self.balanced_batches == "auto"):
            self.balanced_batches = check_bool(self.balanced_batches, "balanced_batches or 'auto'")

    def _validate_supervision_settings(self) -> None:
        """Refuse the supervision settings that ``supervision`` does not use (a model without
        LAP layers refuses them all: :meth:`_validate_lap_only_settings`), and BLA-PH without
        the trained network it explains."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        unused = unused_supervision_settings(self, defaults) if self.uses_lap else []
        if unused:
            raise ValueError(
                f"--supervision {self.supervision} does not use these settings: "
                f"{'; '.join(unused)}; leave them out, or choose the supervision that uses them"
            )
        if self.model == "bla-ph" and self.pretrained is None:
            raise ValueError(
                "--model bla-ph trains the BLA module of a trained network held fixed (paper "
                "002, section 3.2: the post-hoc BLA explains h = F o L as it is); without "
                "--pretrained that network is random: pass --pretrained (a torchlap run folder, "
                "e.g. a vanilla run, or a weights file), or train everything with --model bla-t"
            )

    def _validate_lap_only_settings(self) -> None:
        """Settings of LAP layers and their supervision, given for a model without LAP layers
        (``--lap none`` or a peer), are refused: they would be dropped without a word."""
        if self.uses_lap:
            return
        fields = [f for f in dataclasses.fields(self) if f.name in LAP_ONLY_SETTINGS]
        given = [f.name for f in fields if getattr(self, f.name) != f.default]
        if self.supervision == "expert":  # weak is the default, so only expert is a choice
            given.insert(0, "supervision")
        if given:
            model = "--lap none" if self.model == "lap" else f"--model {self.model}"
            options = ", ".join(f"{name}={getattr(self, name)!r}" for name in given)
            raise ValueError(
                f"{model} builds a model without LAP layers, but {options} configure LAP layers "
                "or their supervision and would be ignored: leave them out (or train a LAP model)"
            )

    def _validate_bcos_norm(self) -> None:
        """``bcos_norm``: one of the B-cos norms, and only with ``model="bcos"``."""
        if self.bcos_norm is None:
            return
        if self.bcos_norm not in BCOS_NORMS:
            raise ValueError(
                f"unknown --bcos-norm {self.bcos_norm!r}; expected one of {', '.join(BCOS_NORMS)}"
            )
        if self.model != "bcos":
            raise ValueError(
                f"--bcos-norm {self.bcos_norm} sets the norm of a B-cos network, but --model is "
                f"{self.model!r}: use it with --model bcos, or leave it out"
            )

    def _validate_losses(self) -> None:
        """The ratios, LAP options, loss weights and concept sets."""
        # Eq. 5 ratios: k1 = ceil(MinAR HW) pixels pushed up, at most MaxAR HW of them active.
        check_fraction(self.min_ar, "min_ar (MinAR)")
        check_fraction(self.max_ar, "max_ar (MaxAR)")
        check_fraction(self.iar, "iar (IAR)")
        check_fraction(self.expert_positive_fraction, "expert_positive_fraction")
        if self.min_ar > self.max_ar:
            raise ValueError(
                f"MinAR ({self.min_ar}) must not exceed MaxAR ({self.max_ar}): a concept cannot "
                "need more active pixels than it may have"
            )
        check_lap_settings(self)
        if self.loss_weights is not None:
            if not isinstance(self.loss_weights, dict):
                raise TypeError(f"loss_weights must be a dict, got {self.loss_weights!r}")
            unknown = sorted(set(self.loss_weights) - {*DEFAULT_WEIGHTS, "cross_entropy"})
            if unknown:  # (here, before the model and its loss are built)
                raise ValueError(
                    f"unknown loss weights (--loss-weight) {unknown}; known terms: "
                    f"{sorted({*DEFAULT_WEIGHTS, 'cross_entropy'})}"
                )
            for key, value in self.loss_weights.items():
                check_number(value, f"loss weight {key!r}", minimum=0.0)
        if self.concept_sets is not None and not isinstance(self.concept_sets, dict):
            sets = self.concept_sets
            raise TypeError(f"concept_sets must be a dict of ConceptSets.to_dict(), got {sets!r}")

    def _validate_phases(self) -> None:
        """Every phase, whether the model family can train it, and the top-level
        :data:`PHASE_SETTINGS` (checked as a phase's, and against the given phases)."""
        if not isinstance(self.phases, list) or not all(
            isinstance(phase, PhaseConfig) for phase in self.phases
        ):
            raise TypeError(f"phases must be a list of PhaseConfig objects, got {self.phases!r}")
        PhaseConfig(1, **{name: getattr(self, name) for name in PHASE_SETTINGS}).validate()
        for name in PHASE_SETTINGS:  # given phases have their own: a value given here must agree
            value, default = getattr(self, name), getattr(PhaseConfig, name)
            other = [i for i, phase in enumerate(self.phases) if getattr(phase, name) != value]
            if value != default and other:
                flag, theirs = "--" + name.replace("_", "-"), getattr(self.phases[other[0]], name)
                raise ValueError(
                    f"{name}={value!r} ({flag}) is not phase {other[0] + 1}'s ({theirs!r}): each "
                    f"phase has its own {name}; set it on the phases (parse_phase(text, {name}=...)"
                    f" or PhaseConfig), or leave {name} at its default {default!r} (torchlap "
                    f"train copies {flag} into every --phase)"
                )
        phases = self.resolved_phases()
        if self.momentum != PhaseConfig.momentum and all(p.optimizer != "sgd" for p in phases):
            raise ValueError(
                f"momentum={self.momentum!r} (--momentum) is SGD's, but no phase uses sgd: add "
                "--optimizer sgd (or a phase TRAIN:EPOCHS:LR:sgd), or leave --momentum out"
            )
        for index, phase in enumerate(phases):
            try:
                phase.validate()
            except (TypeError, ValueError) as error:
                raise type(error)(f"phase {index + 1}: {error}") from None
            problem = RECIPES[self.family].phase_problem(phase)
            if problem is not None:
                raise ValueError(f"phase {index + 1} trains {phase.train!r}, but {problem}")
            if not self.uses_lap and "lap" in phase.train_targets():
                raise ValueError(
                    f"phase {index + 1} trains 'lap' but --lap none builds a model without LAP "
                    "layers; train 'all' or named modules instead"
                )

    def lap_options(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(options, preset)``: the LAP options to build with (``hidden_channels``,
        ``aggregation``, ``alpha``: the user's, else the ``--lap`` preset's paper values;
        ``head_hidden`` when it is not the default ``"shared"``) and the
        preset's paper options (empty when ``lap`` is not a preset)."""
        preset = dict(PRESETS[self.lap].paper_options) if self.lap in PRESETS else {}
        options: dict[str, Any] = {}
        for name in ("hidden_channels", "aggregation", "alpha"):
            value = preset.get(name) if getattr(self, name) is None else getattr(self, name)
            if value is not None:
                options[name] = value
        if self.head_hidden != "shared":  # (the layer's default, left out as the others are)
            options["head_hidden"] = self.head_hidden
        return options, preset

    def head_ratios(
        self, n_concepts: int
    ) -> tuple[list[float | None], list[float | None], list[float | None]]:
        """Per-head ``(min_ar, max_ar, iar)`` lists for :class:`torchlap.losses.InjectionLoss`.

        ``ratios`` entries (or, when ``ratios`` is ``None`` and ``min_ar``/``max_ar``/``iar``
        are at their defaults, the ``--lap`` preset's paper ratios) over ``min_ar``/``max_ar``/
        ``iar``, a named head's over ``"*"``'s. A head index beyond ``n_concepts`` raises.
        """
        ratios = self.ratios
        defaults = tuple(TrainConfig.__dataclass_fields__[n].default for n in RATIO_FIELDS)
        if ratios is None and tuple(getattr(self, n) for n in RATIO_FIELDS) == defaults:
            ratios = self.lap_options()[1].get("ratios")
        table = [[self.min_ar, self.max_ar, self.iar] for _ in range(n_concepts)]
        for key, values in sorted((ratios or {}).items(), key=lambda item: item[0] != "*"):
            heads = range(n_concepts) if key == "*" else [int(key)]
            if key != "*" and not int(key) < n_concepts:
                last = n_concepts - 1
                raise ValueError(f"ratios names head {key}; the LAP layers have heads 0 to {last}")
            for head in heads:
                table[head] = list(values)
        for head, (low, high, _) in enumerate(table):
            if low is not None and high is not None and low > high:
                raise ValueError(
                    f"head {head}: MinAR ({low}) must not exceed MaxAR ({high}) (check --ratios "
                    "against --min-ar/--max-ar)"
                )
        min_ar, max_ar, iar = ([row[i] for row in table] for i in range(3))
        return min_ar, max_ar, iar

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (phases as dicts)."""
        data = dataclasses.asdict(self)
        data["phases"] = [phase.to_dict() for phase in self.phases]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        data = dict(data)
        if data.get("model") == "bcos":  # a run from before --bcos-norm: the position norm
            data.setdefault("bcos_norm", "position")
        data.setdefault("balanced_batches", False)  # runs from before the option: random batches
        if data.get("model") in ("bla", "bla-t", "l2x-f"):  # from before --freeze-features:
            data.setdefault("freeze_features", False)  # every parameter trained
        phases = data.pop("phases", [])
        if phases and "momentum" not in data:  # before --momentum the phases ignored these two
            data.pop("schedule", None), data.pop("weight_decay", None)
        if not isinstance(phases, list):
            raise TypeError(f"'phases' must be a list, got {phases!r}")
        config = _from_dict(cls, data, "train config")
        config.phases = [
            phase if isinstance(phase, PhaseConfig) else PhaseConfig.from_dict(phase)
            for phase in phases
        ]
        return config

    def with_resolved_data(self) -> TrainConfig:
        """A copy whose ``data`` is recorded so that any directory reads it back: a built-in
        name as it is, an existing folder as its absolute path (a name that is neither is
        kept, for the data loader's error to name it as given)."""
        return dataclasses.replace(self, data=resolve_data_source(self.data))

    def identity(self) -> dict[str, Any]:
        """The fields that identify a run (all but :data:`EXECUTION_FIELDS`; ``balanced_batches``
        and ``freeze_features`` as what they resolve to, so ``"auto"`` equals the bool it
        means)."""
        data = {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS}
        data["balanced_batches"] = self.uses_balanced_batches
        data["freeze_features"] = self.uses_lap or features_frozen(
            self.freeze_features, self.family, self.pretrained is not None
        )  # (LAP runs: no F to hold fixed; True, so that every LAP identity compares equal)
        return data


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
