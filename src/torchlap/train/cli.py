"""``torchlap train``: the command-line face of :func:`torchlap.train.fit`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated, Any

import typer

import torchlap.train.run as train_run
from torchlap.cli_style import given_options, key_values, nonblank_path
from torchlap.data.api import check_data_option
from torchlap.io import loads_strict, read_file
from torchlap.logs import log_file
from torchlap.losses import ConceptSets
from torchlap.models.objectives import check_head_ratios
from torchlap.runs import CONFIG_FILE
from torchlap.train.config import PHASE_SETTINGS, PhaseConfig, TrainConfig, parse_phase
from torchlap.train.data_options import parse_data_options
from torchlap.train.folder import LOG_FILE, run_config_written

__all__ = ["config_from_options", "register_train", "train"]

logger = logging.getLogger(__name__)


def _freeze_choice(text: str) -> str | bool:
    """``--freeze-features`` as TrainConfig takes it: "auto", True or False."""
    choices = {"auto": "auto", "true": True, "false": False}
    if text.lower() not in choices:
        raise typer.BadParameter(f"--freeze-features takes auto, true or false, got {text!r}")
    return choices[text.lower()]


def _parse_ratios(text: str | None) -> dict[str, Any] | None:
    """``--ratios`` JSON ``{"0": [0.02, 0.2, 0.01], "2": [null, 0.1, null]}`` -> dict."""
    if text is None:
        return None
    try:
        ratios = loads_strict(text, "--ratios")
    except json.JSONDecodeError as error:
        raise ValueError(
            f"--ratios {text!r} must be JSON {{head: [MinAR, MaxAR, IAR]}}, e.g. "
            f'\'{{"0": [0.02, 0.2, 0.01], "2": [null, 0.1, null]}}\': {error}'
        ) from None
    try:
        return check_head_ratios(ratios)
    except (TypeError, ValueError) as error:
        raise ValueError(f"--ratios {text!r}: {error}") from None


def _refuse_unused_fillers(texts: list[str], values: dict[str, Any], given: set[str]) -> None:
    """``--lr`` and ``--optimizer`` fill the LR and OPTIMIZER a ``--phase`` leaves out: one of
    ``given`` while every phase sets its own would be ignored (as ``--momentum`` without an sgd
    phase is), so it is refused, naming the phases; so is ``--epochs`` with any ``--phase``."""
    # (option, its field in TRAIN:EPOCHS:LR:OPTIMIZER, the field's index, a phase without it)
    for name, field, index, kept in (
        ("lr", "LR", 2, "TRAIN:EPOCHS"),
        ("optimizer", "OPTIMIZER", 3, "TRAIN:EPOCHS:LR"),
    ):
        if not texts or name not in given or any(len(t.split(":")) <= index for t in texts):
            continue
        listed = ", ".join(f"{number} ({text!r})" for number, text in enumerate(texts, 1))
        raise ValueError(
            f"--{name} {values[name]!r} is used by no phase: every --phase sets its own {field} "
            f"(phase {listed}); leave --{name} out, or leave {field} out of a phase ({kept}) "
            f"for it to take --{name}"
        )
    if texts and "epochs" in given:  # EPOCHS is the one field every phase must set
        raise ValueError(
            f"--epochs {values['epochs']!r} is used by no phase: every --phase sets its own "
            "EPOCHS (TRAIN:EPOCHS[:LR[:OPTIMIZER]]); leave --epochs out"
        )


def config_from_options(*, given: Collection[str] | None = None, **options: Any) -> TrainConfig:
    """Build a :class:`TrainConfig` from the CLI's option values (parsed, validated).

    ``given``: the names of the options set on the command line (``None``: those whose value
    differs from the default); a given ``lr``, ``optimizer`` or ``epochs`` that no ``--phase``
    uses (each sets its own LR, OPTIMIZER or EPOCHS) is refused, except under ``resume`` (the
    run's config.json records them, and the run is checked against it).
    """
    # --weight-decay, --schedule and --momentum apply to every --phase (the phase syntax has no
    # field for them), --lr and --optimizer to a phase that leaves LR or OPTIMIZER out; a value
    # off its default without --phase sets the one default phase
    settings = {name: options[name] for name in ("lr", "optimizer", *PHASE_SETTINGS)}
    texts = options.pop("phase") or []
    phases: list[PhaseConfig] = [parse_phase(text, **settings) for text in texts]
    if given is None:
        given = {
            name
            for name in ("lr", "optimizer", "epochs")
            if options[name] != getattr(TrainConfig, name)
        }
    if not options["resume"]:  # a run made before the refusal resumes with its own command
        _refuse_unused_fillers(texts, options, set(given))
    weights = key_values(options.pop("loss_weight"), "--loss-weight")
    # each value parsed by its option's type; flag keys, non-data and unknown keys refused
    raw_options = key_values(options.pop("data_option"), "--data-option", parse=False)
    data_options = parse_data_options(options["data"], raw_options)
    concept_sets = _read_concept_sets(options.pop("concept_sets"), options.get("n_concepts"))
    options["use_discriminative"] = not options.pop("no_discriminative")
    options["freeze_features"] = _freeze_choice(options["freeze_features"])
    if options["balanced_batches"] is None:  # neither flag: the paper's batches for every run
        options["balanced_batches"] = True
    options["ratios"] = _parse_ratios(options.pop("ratios"))
    config = TrainConfig(
        phases=phases,
        loss_weights=weights or None,
        data_options=data_options,
        concept_sets=concept_sets,
        **options,
    )
    config.validate()
    return config


# the options of `torchlap train`, one TrainConfig field each (config_from_options)
_Data = Annotated[
    str,
    typer.Option(
        "--data",
        help="Built-in benchmark (lesions, concepts, digits) or annotated folder (recorded "
        "in config.json as its absolute path).",
    ),
]
_Out = Annotated[str, typer.Option("--out", help="Run folder to write (config, weights, metrics).")]
_Arch = Annotated[
    str, typer.Option("--arch", help="Architecture (torchvision/timm name, or smallcnn).")
]
_Lap = Annotated[
    str, typer.Option("--lap", help="LAP preset of the architecture, 'auto', or 'none' (vanilla).")
]
_Model = Annotated[
    str,
    typer.Option(
        "--model",
        help="lap (LAP layers of --lap), bla, bla-t, bla-ph, l2x-f (paper 002), antehoc "
        "(paper 004; the peers are built on the vanilla network) or bcos (a B-cos network of "
        "the bcos package, --arch one of its models or smallcnn; extra torchlap[bcos]).",
    ),
]
_Supervision = Annotated[
    str, typer.Option("--supervision", help="weak (Eq. 5 + Eq. 6), expert (boxes) or none.")
]
_Epochs = Annotated[
    int, typer.Option("--epochs", help="Epochs, 1 to 100000 (when no --phase is given).")
]
_Lr = Annotated[
    float,
    typer.Option(
        "--lr", help="Learning rate (without --phase; else of the phases that leave LR out)."
    ),
]
_Optimizer = Annotated[
    str,
    typer.Option(
        "--optimizer",
        help="adam, adamw or sgd (with --phase: of the phases that leave OPTIMIZER out).",
    ),
]
_WeightDecay = Annotated[
    float, typer.Option("--weight-decay", help="Weight decay (of every --phase too).")
]
_Momentum = Annotated[
    float,
    typer.Option(
        "--momentum",
        help="SGD's momentum, in [0, 1) (0: plain SGD); needs --optimizer sgd or an sgd "
        "--phase; applies to every --phase.",
        rich_help_panel="Schedule",
    ),
]
_Schedule = Annotated[
    str, typer.Option("--schedule", help="cosine or constant (of every --phase too).")
]
_Phase = Annotated[
    list[str] | None,
    typer.Option(
        "--phase",
        help="A phase TRAIN:EPOCHS[:LR[:OPTIMIZER]], repeatable, e.g. --phase lap:2:1e-4 "
        "--phase layer4,fc:3:1e-3:sgd (TRAIN: all, lap, or module names). Overrides --epochs; a "
        "phase without LR or OPTIMIZER takes --lr or --optimizer; --weight-decay, --momentum and "
        "--schedule apply to every phase.",
    ),
]
_ImageSize = Annotated[int, typer.Option("--image-size", help="Image side in pixels.")]
_BatchSize = Annotated[
    int, typer.Option("--batch-size", help="Global batch size (split over processes).")
]
_NImages = Annotated[
    int | None,
    typer.Option(
        "--n-images",
        help="Images to use. A built-in benchmark: the total over all splits (default 2000). "
        "A dataset folder: at most this many per split (train, val and test each), a "
        "class-stratified cut seeded by --seed (default: all).",
    ),
]
_DataOption = Annotated[
    list[str] | None,
    typer.Option(
        "--data-option",
        help="KEY=VALUE passed to load_dataset (repeatable): an option the dataset takes, e.g. "
        "num_classes=3 (concepts) or split_fractions=0.6,0.2,0.2; not n_images, image_size or "
        "seed (their own flags).",
    ),
]
_Pretrained = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        help="torchvision weights name (e.g. IMAGENET1K_V1), a .safetensors file, or a torchlap "
        "run folder (e.g. a vanilla run as the frozen network of --model bla-ph).",
    ),
]
_NConcepts = Annotated[
    int | None,
    typer.Option(
        "--n-concepts",
        help="Concept heads per LAP (default: the --concept-sets file's, else 1 for 2 classes, "
        "else C).",
    ),
]
_ConceptSets = Annotated[
    str | None,
    typer.Option(
        "--concept-sets", help="JSON file of ConceptSets.to_dict() (which class has which)."
    ),
]
_MinAr = Annotated[float, typer.Option("--min-ar", help="MinAR of Eq. 5, in (0, 1].")]
_MaxAr = Annotated[float, typer.Option("--max-ar", help="MaxAR of Eq. 5, in (0, 1].")]
_Iar = Annotated[float, typer.Option("--iar", help="IAR of Eq. 5, in (0, 1].")]
_Ratios = Annotated[
    str | None,
    typer.Option(
        "--ratios",
        help='Per-head [MinAR, MaxAR, IAR] as JSON, null = term off for that head, "*" = every '
        'head, e.g. \'{"0": [0.02, 0.2, 0.01], "2": [null, 0.1, null]}\' (the paper\'s CelebA '
        "common head); other heads use --min-ar/--max-ar/--iar.",
    ),
]
_HiddenChannels = Annotated[
    int | None,
    typer.Option(
        "--hidden-channels",
        help="Hidden channels of each LAP head (0: one 1x1 conv). Default: the --lap preset's "
        "paper value (8 for resnet18/inception_v3, 0 for resnet50-imagenet), else 8.",
    ),
]
_Aggregation = Annotated[
    str | None,
    typer.Option(
        "--aggregation",
        help="How LAP combines its concept heads: max, sum, mean or conv. Default: the preset's "
        "paper value (sum for resnet18/inception_v3, conv for resnet50-imagenet), else max.",
    ),
]
_HeadHidden = Annotated[
    str,
    typer.Option(
        "--head-hidden",
        help="How the concept heads of a LAP use the hidden channels (the paper does not say): "
        "shared (one set of --hidden-channels for all heads) or per_head (each head its own); "
        "needs hidden channels and more than one head.",
    ),
]
_Alpha = Annotated[
    float | None,
    typer.Option(
        "--alpha",
        help=(
            "Initial LAP sharpness alpha of Eq. 4 (trainable; default 1; >= 0; 0 gives the "
            "paper's N(V) = V + eps, and alpha stays 0: its gradient is 0 there)."
        ),
    ),
]
_ConcordanceWeight = Annotated[
    float | None,
    typer.Option(
        "--concordance-weight",
        help="Concordance (Eq. 6) weight per LAP pair. Default: 0.25 for weak supervision, "
        "0 for expert (the paper's appendix names no concordance term there).",
    ),
]
_KeepEpoch = Annotated[
    str,
    typer.Option(
        "--keep-epoch",
        help="best: keep the epoch with the best validation --select-metric (the paper); "
        "last: the last epoch.",
    ),
]
_SelectMetric = Annotated[
    str,
    typer.Option(
        "--select-metric",
        help="Validation value ranking epochs: balanced_accuracy, accuracy, loss (total) or "
        "cross_entropy (steadier than accuracy on a small validation split).",
    ),
]
_NoDiscriminative = Annotated[
    bool, typer.Option("--no-discriminative", help="Choose Eq. 5's pixels on the heads themselves.")
]
_CommonHeadSets = Annotated[
    str,
    typer.Option(
        "--common-head-sets",
        help="What chooses Eq. 5's pixel sets of a head present in every class: discriminative "
        "(the scorers, the paper's rule for every head) or own (the head's own probabilities); "
        "weak or expert supervision, without --no-discriminative.",
    ),
]
_LossWeight = Annotated[
    list[str] | None,
    typer.Option("--loss-weight", help="TERM=WEIGHT for InjectionLoss (repeatable)."),
]
_Seed = Annotated[int, typer.Option("--seed", help="Seed of everything (data order, init).")]
_BalancedBatches = Annotated[
    bool | None,
    typer.Option(
        "--balanced-batches/--no-balanced-batches",
        help="Training batches drawing the classes in equal shares (paper 000: 32 healthy and "
        "32 pneumonia samples, for all its models), epoch length unchanged, or random "
        "batches. Default: balanced.",
    ),
]
_ShuffleLabels = Annotated[
    bool,
    typer.Option(
        "--shuffle-labels",
        help="Data randomization test (Adebayo et al. 2018): train on permuted labels "
        "(val/test keep the real ones); compare its maps with the real run's.",
    ),
]
_FreezeFeatures = Annotated[
    str,
    typer.Option(
        "--freeze-features",
        help="bla, bla-t, l2x-f: hold the feature extractor F (the network before BLA) fixed: "
        "auto (as paper 002 when --pretrained is given, trained from scratch otherwise), "
        "true or false.",
    ),
]
_BcosNorm = Annotated[
    str | None,
    typer.Option(
        "--bcos-norm",
        help="--model bcos only: the B-cos network's norm, batch-uncentered (default of new "
        "runs) or position (the bcos package constructors' default).",
    ),
]
_Devices = Annotated[str, typer.Option("--devices", help="auto, a count, or ids '0,1'.")]
_NumNodes = Annotated[int, typer.Option("--num-nodes", help="Number of nodes (DDP).")]
_Strategy = Annotated[str, typer.Option("--strategy", help="Lightning strategy (auto, ddp, ...).")]
_Accelerator = Annotated[str, typer.Option("--accelerator", help="auto, cpu, gpu, ...")]
_Precision = Annotated[
    str, typer.Option("--precision", help="auto (16-mixed on CUDA), 32-true, 16-mixed, bf16-mixed.")
]
_NumWorkers = Annotated[int, typer.Option("--num-workers", help="DataLoader worker processes.")]
_CheckpointEveryNSteps = Annotated[
    int | None,
    typer.Option("--checkpoint-every", help="Also checkpoint every N steps (epoch ends always)."),
]
_ProgressBar = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Progress bar (default: on when a TTY)."),
]
_Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace the run in --out.")]
_Resume = Annotated[bool, typer.Option("--resume", help="Resume the run in --out.")]


def _read_concept_sets(concept_file: str | None, n_concepts: Any) -> dict[str, Any] | None:
    """``--concept-sets FILE`` read and its form checked (its classes are checked with the
    data), before a model is built; its concept count must be ``--n-concepts`` when both are
    given (without ``--n-concepts`` the run takes the file's)."""
    if concept_file is None:
        return None
    path = Path(concept_file)
    if path.is_dir():
        raise ValueError(f"--concept-sets {path} is a folder; pass the JSON file")
    if not path.is_file():
        raise FileNotFoundError(f"--concept-sets {path}: no such file")
    try:
        # (a BOM is fine, as in a CSV); an unreadable file named (read_file)
        text = read_file(path, "the --concept-sets file").decode("utf-8-sig")
        concept_sets = loads_strict(text, f"--concept-sets {path}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"--concept-sets {path} is not JSON ({error}); expected the file a run writes "
            "(ConceptSets.to_dict(): class -> concept indices)"
        ) from None
    try:
        sets = ConceptSets.from_dict(concept_sets)
    except (TypeError, ValueError) as error:
        raise ValueError(f"--concept-sets {path}: {error}") from None
    if n_concepts is not None and n_concepts != sets.n_concepts:
        raise ValueError(
            f"--concept-sets {path} holds {sets.n_concepts} concept(s) per LAP layer, but "
            f"--n-concepts is {n_concepts}: they must agree (leave --n-concepts out to take "
            "the file's)"
        )
    return concept_sets


def train(
    context: typer.Context,
    data: _Data,
    out: _Out,
    arch: _Arch = "resnet18",
    lap: _Lap = "auto",
    model: _Model = "lap",
    supervision: _Supervision = "weak",
    epochs: _Epochs = 10,
    lr: _Lr = 1e-3,
    optimizer: _Optimizer = "adam",
    weight_decay: _WeightDecay = 1e-6,
    momentum: _Momentum = 0.9,
    schedule: _Schedule = "cosine",
    phase: _Phase = None,
    image_size: _ImageSize = 64,
    batch_size: _BatchSize = 32,
    n_images: _NImages = None,
    data_option: _DataOption = None,
    pretrained: _Pretrained = None,
    n_concepts: _NConcepts = None,
    concept_sets: _ConceptSets = None,
    min_ar: _MinAr = 0.1,
    max_ar: _MaxAr = 0.5,
    iar: _Iar = 0.1,
    ratios: _Ratios = None,
    hidden_channels: _HiddenChannels = None,
    aggregation: _Aggregation = None,
    head_hidden: _HeadHidden = "shared",
    alpha: _Alpha = None,
    concordance_weight: _ConcordanceWeight = None,
    keep_epoch: _KeepEpoch = "best",
    select_metric: _SelectMetric = "balanced_accuracy",
    no_discriminative: _NoDiscriminative = False,
    common_head_sets: _CommonHeadSets = "discriminative",
    loss_weight: _LossWeight = None,
    seed: _Seed = 0,
    balanced_batches: _BalancedBatches = None,
    shuffle_labels: _ShuffleLabels = False,
    freeze_features: _FreezeFeatures = "auto",
    bcos_norm: _BcosNorm = None,
    devices: _Devices = "auto",
    num_nodes: _NumNodes = 1,
    strategy: _Strategy = "auto",
    accelerator: _Accelerator = "auto",
    precision: _Precision = "auto",
    num_workers: _NumWorkers = 0,
    checkpoint_every_n_steps: _CheckpointEveryNSteps = None,
    progress_bar: _ProgressBar = None,
    overwrite: _Overwrite = False,
    resume: _Resume = False,
) -> None:
    """Train a classifier (vanilla or LAP) with cross-entropy and knowledge injection.

    Writes model.safetensors, config.json and metrics.json into --out.
    torchlap.load_run(RUN_DIR) rebuilds the model from them, without pickle.
    RUN_DIR/checkpoints/ holds Lightning checkpoints: --resume only (loaded with
    weights_only=True: tensors and plain values, never code).
    RUN_DIR/train.log keeps every log line of the run.

    Example: `torchlap train --data lesions --out runs/bb-lap --lap resnet18 --supervision expert`

    Cost with the defaults (ResNet18, 10 epochs, 64 px, lesions): about 2 min on a 2-core CPU
    (the demo's 4 epochs take about 50 s).
    """
    options = dict(locals())  # first: the option values only
    _check_paths(data, out, pretrained, concept_sets)
    # errors reach the torchlap command's one-line handler (exit 2 input, 1 failure)
    config = config_from_options(given=given_options(options.pop("context")), **options)
    out_dir = Path(config.out)
    # RUN/train.log: every line of the run (Lightning's too), once torchlap owns the folder
    with log_file(out_dir / LOG_FILE, ready=_log_ready(out_dir, config.overwrite)):
        run_dir = train_run.fit(config)
    typer.echo(f"run saved to {run_dir} (test: {_test_summary(run_dir)})")


def _test_summary(run_dir: Path) -> str:
    """The run's test accuracy, balanced accuracy, sensitivity and specificity, from its
    metrics.json."""
    test = json.loads((run_dir / "metrics.json").read_text()).get("test") or {}
    return ", ".join(
        f"{k}={test[k]:.4f}"
        for k in ("accuracy", "balanced_accuracy", "sensitivity", "specificity")
        if k in test
    )


def _check_paths(data: str, out: str, pretrained: str | None, concept_sets: str | None) -> None:
    """The path options, before a run is built (ValueErrors: the command's handler, exit 2):
    none empty (an unset shell variable, not the current folder) or too long for the file
    system, and ``--data`` a built-in name or an existing folder."""
    for option, path in (("--data", data), ("--out", out), ("--pretrained", pretrained),
                         ("--concept-sets", concept_sets)):  # fmt: skip
        if path is not None:
            nonblank_path(path, option, "a path")
    check_data_option(data, "--data")


def _log_ready(out_dir: Path, overwrite: bool) -> Callable[[], bool]:
    """When the run's log file may open: once the folder holds a torchlap run (this one, or
    the one it resumes or starts again); under ``--overwrite`` once this run wrote its
    config.json (the old run, its log too, is gone then; a refused overwrite leaves the old
    log as it was)."""
    if overwrite:
        return lambda: run_config_written(out_dir)
    return (out_dir / CONFIG_FILE).is_file


def register_train(app: typer.Typer) -> None:
    """Add ``torchlap train`` to the ``torchlap`` command."""
    app.command("train")(train)
